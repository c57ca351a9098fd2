"""Verify the audit log's hash chain: every entry's hash recomputed, every prev_hash checked; then
the hashes logged outside the table (`--log FILE`, lines `audit <id> <hash>`) or given by hand
(`--entry ID:HASH`) compared with the table. Exits 1 naming the first entry that fails."""
import re

from django.core.management.base import BaseCommand, CommandError

from marketplace.moderation import audit
from marketplace.moderation.models import AuditEntry

LOG_LINE = re.compile(r"\baudit (\d+) ([0-9a-f]{64})\b")


class Command(BaseCommand):
    help = "Verify the moderation audit log's hash chain (and, optionally, hashes kept outside the database)."

    def add_arguments(self, parser):
        parser.add_argument("--log", action="append", default=[], metavar="FILE",
                            help="a log holding `audit <id> <hash>` lines (the marketplace.audit logger's)")
        parser.add_argument("--entry", action="append", default=[], metavar="ID:HASH",
                            help="an entry's id and hash kept elsewhere (e.g. the last one seen)")

    def handle(self, *args, log, entry, **options):
        expected = {}
        for text in entry:
            match = re.fullmatch(r"(\d+):([0-9a-f]{64})", text.strip())
            if not match:
                raise CommandError(f"--entry {text!r}: give ID:HASH (the hash as 64 lower-case hex digits)")
            expected[int(match[1])] = match[2]
        for path in log:
            try:
                with open(path, encoding="utf-8", errors="replace") as lines:
                    for line in lines:
                        for match in LOG_LINE.finditer(line):
                            expected[int(match[1])] = match[2]
            except OSError as exc:
                raise CommandError(f"cannot read {path}: {exc.strerror}") from None
        count, (last_id, last_hash), problem = audit.verify()
        if problem is not None:
            raise CommandError(f"the audit log is broken at entry {problem.entry_id}: {problem.message}")
        stored = dict(AuditEntry.objects.filter(pk__in=list(expected)).values_list("id", "hash")) if expected else {}
        for entry_id in sorted(expected):
            if entry_id not in stored:
                raise CommandError(f"the audit log is broken at entry {entry_id}: it was recorded outside the "
                                   "database but is not in the table")
            if stored[entry_id] != expected[entry_id]:
                raise CommandError(f"the audit log is broken at entry {entry_id}: its hash was recorded as "
                                   f"{expected[entry_id]} outside the database, the table has {stored[entry_id]} "
                                   "(the chain was rewritten from there on)")
        outside = f"; {len(expected)} hash(es) kept outside the database match" if expected else ""
        head = f", the last #{last_id} {last_hash}" if last_id else ""
        self.stdout.write(f"audit log intact: {count} entries{head}{outside}")
