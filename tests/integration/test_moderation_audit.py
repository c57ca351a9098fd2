"""The moderation foundation against the real PostgreSQL: the audit log chains its entries by
hash, refuses every change (UPDATE, DELETE, TRUNCATE) but the owner's explicit reset, and
check_audit names the first entry an attacker with table rights changed; moderators search it,
publishers see the entries about their datasets without reporters or notes; notifications; the
roles' 401/403; and the catalog's and the rewards' decisions recorded as entries."""
import hashlib
import json
import logging
import uuid

from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.test import Client
import pytest

from marketplace.accounts.models import User
from marketplace.catalog import revisions, services
from marketplace.catalog.models import DatasetRevision
from marketplace.moderation import audit, selectors
from marketplace.moderation.api import entry_json, paged
from marketplace.moderation.models import AuditEntry, AuditWord, Notification
from marketplace.moderation.notifications import notify
from marketplace.rewards import flags
from marketplace.rewards.models import Flag

pytestmark = pytest.mark.django_db
PAYOUT = "0x" + "ab" * 20


def user(name, *roles, **extra):
    person = User.objects.create_user(name, password="a-long-password-1", **extra)
    for role in roles:
        Group.objects.get(name=role).user_set.add(person)
    return person


def client_of(person, **options):
    client = Client(**options)
    client.force_login(person)
    return client


@pytest.fixture
def moderator():
    return user("mod", "moderator")


@pytest.fixture
def moderator_client(moderator):
    return client_of(moderator)


def entry(action="dataset.approve", target_type="dataset", target_id=1, **fields):
    return audit.record(action=action, target_type=target_type, target_id=target_id, **fields)


def dataset_of(owner, title="Rainfall by town"):
    return services.create_dataset(owner=owner, title=title, license="CC0-1.0", payout_address=PAYOUT)


# The chain ------------------------------------------------------------------------------------


def test_entries_chain_by_hash_and_an_outside_verifier_can_recompute_each_hash():
    first = entry(statement="Über: ok", details={"revision": 7, "listings": [{"id": "9"}]}, actor="0xAbC")
    second = entry(action="wallet.ban", target_type="wallet", target_id="0xdead", reason="spam")
    assert first.prev_hash == audit.GENESIS and second.prev_hash == first.hash and second.id > first.id
    with connection.cursor() as cursor:  # as a verifier reading the table would, without our code
        cursor.execute("SELECT id, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), "
                       "actor, actor_id, actor_role, action, target_type, target_id, reason, statement, "
                       "internal_note, reporter, details::text, prev_hash, hash FROM moderation_auditentry "
                       "ORDER BY id")
        rows = cursor.fetchall()
    for row in rows:
        names = ["id", "created_at", "actor", "actor_id", "actor_role", "action", "target_type", "target_id",
                 "reason", "statement", "internal_note", "reporter", "details", "prev_hash"]
        values = dict(zip(names, row[:14]))
        values["details"] = json.loads(values["details"])
        text = json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert hashlib.sha256(text.encode()).hexdigest() == row[14]


def test_an_unknown_action_or_a_float_in_details_is_refused():
    with pytest.raises(ValueError, match="unknown audit action"):
        entry(action="dataset.vanish")
    with pytest.raises(ValueError, match="not hashed exactly"):
        entry(details={"share": 0.5})
    assert not AuditEntry.objects.exists()


def test_the_hash_is_logged_after_the_commit_and_never_for_a_rollback(caplog, django_capture_on_commit_callbacks):
    caplog.set_level(logging.INFO, logger="marketplace.audit")
    with django_capture_on_commit_callbacks(execute=True):
        kept = entry()
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            entry(target_id=2)
            raise RuntimeError("the decision failed")
    lines = [r.getMessage() for r in caplog.records if r.name == "marketplace.audit"]
    assert lines == [f"audit {kept.id} {kept.hash}"]
    assert list(AuditEntry.objects.values_list("id", flat=True)) == [kept.id]


# Append-only ----------------------------------------------------------------------------------


def refused(sql, *setup):
    with pytest.raises(DatabaseError, match="append-only") as caught:
        with transaction.atomic(), connection.cursor() as cursor:
            for statement in setup:
                cursor.execute(statement)
            cursor.execute(sql)
    return caught


def test_update_delete_and_truncate_are_refused():
    kept = entry()
    refused("UPDATE moderation_auditentry SET statement = 'rewritten'")
    refused("DELETE FROM moderation_auditentry")
    refused("TRUNCATE moderation_auditentry")
    with pytest.raises(DatabaseError, match="append-only"):
        with transaction.atomic():
            AuditEntry.objects.filter(pk=kept.pk).update(statement="rewritten")
    with pytest.raises(DatabaseError, match="append-only"):
        with transaction.atomic():
            kept.delete()
    assert AuditEntry.objects.get().statement == "" and AuditEntry.objects.get().hash == kept.hash


def test_the_reset_setting_lets_only_the_owner_truncate_and_never_update_or_delete():
    entry()
    role = f"audit_writer_{uuid.uuid4().hex[:12]}"
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE ROLE {role} NOLOGIN")
            cursor.execute(f"GRANT ALL ON moderation_auditentry TO {role}")
        # A role with every table right, but not the owner: refused even with the setting.
        refused("TRUNCATE moderation_auditentry", f"SET LOCAL ROLE {role}",
                "SET LOCAL moderation.audit_reset = 'on'")
        refused("DELETE FROM moderation_auditentry", "SET LOCAL moderation.audit_reset = 'on'")
        assert AuditEntry.objects.count() == 1
        with transaction.atomic(), connection.cursor() as cursor:  # the owner's explicit reset
            cursor.execute("SET LOCAL moderation.audit_reset = 'on'")
            cursor.execute("TRUNCATE moderation_auditentry")
            assert not AuditEntry.objects.exists()
        transaction.set_rollback(True)  # the role goes with it


@pytest.mark.django_db(transaction=True)
def test_entries_of_a_committed_transaction_are_emptied_by_the_test_flush():
    """pytest-django empties every table after this test with TRUNCATE: tests/conftest.py's flush
    sets the reset explicitly (a refusal would fail this test's teardown and every later one)."""
    entry()
    assert AuditEntry.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_entries_appended_at_once_from_many_connections_form_one_chain():
    """The advisory lock: without it two transactions would read the same last hash and fork the
    chain (check_audit would name the second)."""
    import threading

    from django.db import connections

    barrier = threading.Barrier(4)
    failures = []

    def append(n):
        try:
            barrier.wait(10)
            for i in range(15):
                with transaction.atomic():
                    entry(target_id=f"{n}-{i}")
        except Exception as exc:  # reported below, in the test's thread
            failures.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=append, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures
    count, _, problem = audit.verify()
    assert count == 60 and problem is None


def test_a_transactional_test_before_this_one_left_nothing_and_the_roles_are_back():
    assert not AuditEntry.objects.exists() and not AuditWord.objects.exists()
    assert set(Group.objects.filter(name__in=["moderator", "arbiter"]).values_list("name", flat=True)) == {
        "moderator", "arbiter"}


# check_audit ----------------------------------------------------------------------------------


def as_attacker(sql, params=()):
    """A change by someone with table rights who also disables the triggers (the owner)."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE moderation_auditentry DISABLE TRIGGER USER")
        cursor.execute(sql, params)
        cursor.execute("ALTER TABLE moderation_auditentry ENABLE TRIGGER USER")


def check(*args):
    from io import StringIO

    out = StringIO()
    call_command("check_audit", *args, stdout=out)
    return out.getvalue()


def test_check_audit_passes_an_intact_log():
    entries = [entry(target_id=i) for i in range(5)]
    assert f"5 entries, the last #{entries[-1].id} {entries[-1].hash}" in check()


def test_check_audit_names_an_entry_changed_in_place():
    entries = [entry(target_id=i, statement="Spam.") for i in range(4)]
    as_attacker("UPDATE moderation_auditentry SET statement = 'Nothing wrong.' WHERE id = %s", [entries[2].id])
    with pytest.raises(CommandError, match=f"broken at entry {entries[2].id}: .*does not match its hash"):
        check()


def test_check_audit_names_the_entry_after_a_removed_one():
    entries = [entry(target_id=i) for i in range(4)]
    as_attacker("DELETE FROM moderation_auditentry WHERE id = %s", [entries[1].id])
    with pytest.raises(CommandError, match=f"broken at entry {entries[2].id}: .*previous"):
        check()


def test_check_audit_sees_a_whole_chain_rewritten_against_the_hashes_logged_outside(tmp_path):
    entries = [entry(target_id=i, statement="Spam.") for i in range(3)]
    log = tmp_path / "audit.log"
    log.write_text("".join(f"2026-12-06 10:00:00,000 INFO marketplace.audit: audit {e.id} {e.hash}\n"
                           for e in entries))
    assert "3 hash(es) kept outside the database match" in check("--log", str(log))
    # Rewrite entry 2 and re-hash it and every later one: the chain is consistent again...
    as_attacker("UPDATE moderation_auditentry SET statement = 'Nothing wrong.' WHERE id = %s", [entries[1].id])
    previous = entries[0].hash
    for row in AuditEntry.objects.order_by("id").values(*audit.FIELDS)[1:]:
        row = {**row, "prev_hash": previous, "statement": row["statement"]}
        previous = audit.entry_hash(row)
        as_attacker("UPDATE moderation_auditentry SET prev_hash = %s, hash = %s WHERE id = %s",
                    [row["prev_hash"], previous, row["id"]])
    assert "3 entries" in check()
    # ...but not with what was logged when the entries were made.
    with pytest.raises(CommandError, match=f"broken at entry {entries[1].id}: its hash was recorded"):
        check("--log", str(log))
    with pytest.raises(CommandError, match=f"broken at entry {entries[2].id}"):
        check("--entry", f"{entries[2].id}:{entries[2].hash}")


# Roles ----------------------------------------------------------------------------------------


def test_the_role_groups_carry_the_permissions_their_work_needs():
    arbiter = user("arb", "arbiter", is_staff=True)
    mod = user("mod2", "moderator", is_staff=True)
    assert arbiter.has_perm("orders.resolve_dispute") and not arbiter.has_perm("catalog.change_datasetrevision")
    assert mod.has_perm("catalog.change_datasetrevision") and mod.has_perm("rewards.change_flag")
    assert not mod.has_perm("orders.resolve_dispute")


def test_the_audit_api_is_401_anonymous_403_without_the_role_and_open_to_moderators(moderator_client):
    entry()
    anonymous = Client().get("/api/v1/moderation/audit")
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "not_signed_in"
    for person in (user("pub"), user("arb", "arbiter"), user("staff", is_staff=True)):
        answer = client_of(person).get("/api/v1/moderation/audit")
        assert answer.status_code == 403 and answer.json()["error"]["code"] == "forbidden", person
    assert len(moderator_client.get("/api/v1/moderation/audit").json()["results"]) == 1


def test_the_review_queue_checks_the_same_role(moderator_client):
    assert Client().get("/api/v1/moderation/revisions").status_code == 401
    staff_only = client_of(user("staff", is_staff=True))
    assert staff_only.get("/api/v1/moderation/revisions").json()["error"]["code"] == "forbidden"
    assert moderator_client.get("/api/v1/moderation/revisions").status_code == 200


def test_the_audit_page_is_the_sign_in_page_anonymous_and_403_without_the_role(moderator_client):
    entry(statement="Counterfeit data.")
    assert "Connect your wallet" in Client().get("/moderation/audit").content.decode()
    page = client_of(user("pub")).get("/moderation/audit")
    assert page.status_code == 403 and "For moderators only" in page.content.decode()
    page = moderator_client.get("/moderation/audit")
    assert page.status_code == 200 and "Counterfeit data." in page.content.decode()
    assert 'href="/moderation/audit"' in moderator_client.get("/me/datasets").content.decode()
    assert 'href="/moderation/audit"' not in client_of(user("pub2")).get("/me/datasets").content.decode()


# Search ---------------------------------------------------------------------------------------


def test_moderators_search_by_words_action_target_and_actor(moderator_client):
    entry(statement="Sells stolen medical records", actor="alice")
    entry(action="wallet.ban", target_type="wallet", target_id="0xbad", reason="fraud", actor="bob")
    entry(target_id=42, internal_note="second complaint", reporter="carol")

    def ids(**params):
        answer = moderator_client.get("/api/v1/moderation/audit", params)
        assert answer.status_code == 200, answer.json()
        return [e["target_id"] for e in answer.json()["results"]]

    assert ids() == ["42", "0xbad", "1"]
    assert ids(q="MEDICAL records") == ["1"]
    assert ids(q="complaint") == ["42"] and ids(q="carol") == ["42"]
    assert ids(action="wallet.ban") == ["0xbad"]
    assert ids(target="dataset:42") == ["42"] and ids(target="wallet") == ["0xbad"]
    assert ids(actor="bob") == ["0xbad"] and ids(actor="nobody") == []


def test_pages_are_50_newest_first_and_before_goes_back(moderator_client):
    made = [entry(target_id=i) for i in range(120)]
    first = moderator_client.get("/api/v1/moderation/audit").json()
    assert [e["id"] for e in first["results"]] == [e.id for e in reversed(made[70:])]
    second = moderator_client.get("/api/v1/moderation/audit", {"before": first["next_before"]}).json()
    third = moderator_client.get("/api/v1/moderation/audit", {"before": second["next_before"]}).json()
    assert [e["id"] for e in third["results"]] == [e.id for e in reversed(made[:20])]
    assert third["next_before"] is None
    assert first["results"][0]["created_at"].endswith("Z") and first["results"][0]["hash"] == made[-1].hash


# The word index (AuditWord, migration 0009) ------------------------------------------------------

TRICKY = [  # case, punctuation, hyphens, e-mails, URLs, paths, addresses, versions, non-ASCII
    dict(statement="Sells STOLEN medical-records; see: http://leak.example/dump?id=3", actor="Alice"),
    dict(statement="Self-test fail (v1.2.3), it's Über-wrong!", reporter="0xAbCdEf0123456789abcdef0123456789ABCDEF01"),
    dict(action="wallet.ban", target_type="wallet", target_id="0xDEAD", reason="fraud",
         internal_note="mail bob@Example.org /var/tmp/x.csv"),
    dict(statement="medical records, not stolen", actor="bob", reason="spam"),
    dict(statement="", internal_note="Records: MEDICAL.", actor="alice"),
]


def word_rows():
    with connection.cursor() as cursor:
        cursor.execute("SELECT entry_id, word FROM moderation_auditword ORDER BY 1, 2")
        return cursor.fetchall()


def test_each_entry_s_words_are_indexed_by_its_own_insert_exactly_as_the_search_column_has_them():
    made = [entry(**fields) for fields in TRICKY]
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, word FROM moderation_auditentry, unnest(tsvector_to_array(search)) AS word "
                       "ORDER BY 1, 2")
        expected = cursor.fetchall()
    assert word_rows() == expected
    words = {word for entry_id, word in expected if entry_id == made[0].id}
    assert {"alice", "stolen", "medical-records", "medical", "records", "leak.example"} <= words
    assert "STOLEN" not in words and "see:" not in words
    # Rows inserted at once (one statement, as a COPY would) have theirs too: the trigger reads them
    # all from the statement's transition table.
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO moderation_auditentry (created_at, actor, actor_role, action, target_type, "
                       "target_id, reason, statement, internal_note, reporter, details, prev_hash, hash) "
                       "SELECT now(), '', 'system', 'chain.confirmed', 'transaction', n::text, '', 'Bulk ' || n, "
                       "'', '', '{}', '', md5(n::text) FROM generate_series(1, 3) AS n RETURNING id")
        bulk = sorted(row[0] for row in cursor.fetchall())
    assert [row for row in word_rows() if row[0] in bulk] == sorted(
        [(entry_id, word) for entry_id, n in zip(bulk, "123") for word in ("bulk", n)])


def as_app_role(cursor):
    """In this transaction, act as a role with only what the app needs: SELECT and INSERT on the
    log, SELECT on the words (the role goes when the transaction rolls back)."""
    cursor.execute("CREATE ROLE audit_app_test")
    cursor.execute("GRANT SELECT, INSERT ON moderation_auditentry TO audit_app_test")
    cursor.execute("GRANT SELECT ON moderation_auditword TO audit_app_test")
    cursor.execute("GRANT USAGE ON SCHEMA public TO audit_app_test")
    cursor.execute("SET LOCAL ROLE audit_app_test")


def test_the_word_index_is_read_only_for_the_app_s_role_and_its_rows_are_never_changed_by_the_log():
    """The trigger writes as the table's owner (SECURITY DEFINER), so a role with only SELECT on the
    words and INSERT on the log still appends (docs/moderation.md, the database role)."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            as_app_role(cursor)
            cursor.execute("INSERT INTO moderation_auditentry (created_at, actor, actor_role, action, target_type, "
                           "target_id, reason, statement, internal_note, reporter, details, prev_hash, hash) "
                           "VALUES (now(), 'x', 'system', 'chain.confirmed', 'transaction', '7', '', 'Granted', "
                           "'', '', '{}', '', 'h') RETURNING id")
            [entry_id] = cursor.fetchone()
            cursor.execute("SELECT word FROM moderation_auditword WHERE entry_id = %s ORDER BY word", [entry_id])
            assert [row[0] for row in cursor.fetchall()] == ["7", "granted", "x"]
            with pytest.raises(DatabaseError, match="permission denied"), transaction.atomic():
                cursor.execute("INSERT INTO moderation_auditword VALUES ('forged', %s)", [entry_id])
        transaction.set_rollback(True)  # the role goes with it


def test_a_temporary_table_of_the_word_index_s_name_diverts_no_word():
    """The trigger runs with its owner's rights: were its names looked up in the caller's
    temporary schema, a role could catch the owner's insert in a table of its own (and, with a
    trigger on it, run anything as the owner). The words go to the real index however the caller's
    session is set up."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            as_app_role(cursor)
            cursor.execute("CREATE TEMP TABLE moderation_auditword (word text, entry_id bigint)")
            cursor.execute("GRANT INSERT ON pg_temp.moderation_auditword TO PUBLIC")
            cursor.execute("SET LOCAL search_path = pg_temp, public")
            cursor.execute("INSERT INTO public.moderation_auditentry (created_at, actor, actor_role, action, "
                           "target_type, target_id, reason, statement, internal_note, reporter, details, prev_hash, "
                           "hash) VALUES (now(), 'x', 'system', 'chain.confirmed', 'transaction', '7', '', "
                           "'Diverted', '', '', '{}', '', 'h') RETURNING id")
            [entry_id] = cursor.fetchone()
            cursor.execute("SELECT count(*) FROM pg_temp.moderation_auditword")
            assert cursor.fetchone()[0] == 0
            cursor.execute("SELECT word FROM public.moderation_auditword WHERE entry_id = %s ORDER BY word", [entry_id])
            assert [row[0] for row in cursor.fetchall()] == ["7", "diverted", "x"]
        transaction.set_rollback(True)  # the role and the table go with it


QUERIES = ["medical", "MEDICAL Records", "records, medical!", "stolen", "medical-records", "Medical-Records",
           "records stolen", "alice", "ALICE bob", "über-wrong", "über", "v1.2.3", "it's", "s",
           "leak.example", "http://leak.example/dump?id=3", "bob@example.org", "/var/tmp/x.csv", "0xdead",
           "0xabcdef0123456789abcdef0123456789abcdef01", "fraud", "spam", "nothing", "!!!", "  ,; ",
           "medical medical records records", "self test fail it s uber wrong v1", "a b c d e f g",
           "self-test fail v1.2.3 it's über-wrong"]


@pytest.mark.parametrize("before", [None, "third"])
def test_word_search_matches_exactly_what_plainto_tsquery_matches(before):
    """Whole words without case, every word of q, through the word index: the same entries in the
    same order as `search @@ plainto_tsquery('simple', q)`, with and without the other filters."""
    made = [entry(**fields) for fields in TRICKY * 3]
    bound = made[len(made) // 3 * 2].id if before else None
    for q in QUERIES:
        for filters in ({}, {"actor": "alice"}, {"action": "wallet.ban"}, {"target_type": "dataset"}):
            sql = ("SELECT id FROM moderation_auditentry WHERE search @@ plainto_tsquery('simple', %s)"
                   + "".join(f" AND {column} = %s" for column in filters)
                   + (" AND id < %s" if bound else "") + " ORDER BY id DESC LIMIT 4")
            with connection.cursor() as cursor:
                cursor.execute(sql, [q, *filters.values(), *([bound] if bound else [])])
                expected = [row[0] for row in cursor.fetchall()]
            found = selectors.audit_entries(q=q, before=bound, limit=4, **filters)
            assert [row["id"] for row in found] == expected, (q, filters)
    assert [row["id"] for row in selectors.audit_entries(q="Medical")] == [
        e.id for e in reversed(made) if e.statement.startswith(("Sells", "medical")) or "MEDICAL" in e.internal_note]


def test_a_page_of_entries_is_the_json_drf_rendered_byte_for_byte(moderator_client):
    """The API writes the page's JSON itself (api.json_page): the same bytes as DRF's Response."""
    from rest_framework.renderers import JSONRenderer

    publisher = user("pub")
    mine = dataset_of(publisher)
    moderator = User.objects.get(username="mod")
    entry(target_id=mine.pk, statement="Line\u2028separator\u2029 and “quotes” and Ünïcode and \"escapes\"\n",
          actor=moderator, details={"listings": [{"id": "9", "price": 12}], "ok": True, "none": None, "z": "ä"},
          reporter="0xabc", internal_note="tab\there")
    entry(action="wallet.ban", target_type="wallet", target_id="0xdead", reason="fraud")
    with connection.cursor() as cursor:  # times the database writes as text (selectors.UTC_ISO) as iso_time would
        for when in ("2026-01-02 03:04:05+00", "2026-01-02 03:04:05.0001+00", "2026-07-02 23:59:59.99+02"):
            cursor.execute("INSERT INTO moderation_auditentry (created_at, actor, actor_role, action, target_type, "
                           "target_id, reason, statement, internal_note, reporter, details, prev_hash, hash) "
                           "VALUES (%s, '', 'system', 'chain.confirmed', 'dataset', %s, '', '', '', '', '{}', '', "
                           "%s)", [when, mine.pk, when])
    answer = moderator_client.get("/api/v1/moderation/audit")
    rows = selectors.audit_entries()
    assert answer.content == JSONRenderer().render(paged(rows, [entry_json(row) for row in rows]))
    assert [e["created_at"] for e in answer.json()["results"][:3]] == [
        "2026-07-02T21:59:59.990000Z", "2026-01-02T03:04:05.000100Z", "2026-01-02T03:04:05Z"]
    assert answer["Content-Type"] == "application/json" and "\\u2028" in answer.content.decode()
    assert answer.json()["results"][4]["details"]["listings"] == [{"id": "9", "price": 12}]
    assert answer.json()["results"][4]["actor_id"] == moderator.pk
    mine_answer = client_of(publisher).get("/api/v1/me/audit")
    rows = selectors.publisher_entries(publisher)
    assert mine_answer.content == JSONRenderer().render(paged(rows, [entry_json(row) for row in rows]))
    assert len(rows) == 4 and "internal_note" not in rows[0]


@pytest.mark.parametrize("params, field", [
    ({"before": "abc"}, "before"), ({"before": "0"}, "before"), ({"before": str(2**70)}, "before"),
    ({"q": "x" * 201}, "q"), ({"action": "dataset.vanish"}, "action"), ({"target": ":42"}, "target"),
    ({"target": "dataset:"}, "target"),
])
def test_bad_parameters_get_a_400_naming_the_field(moderator_client, params, field):
    answer = moderator_client.get("/api/v1/moderation/audit", params)
    assert answer.status_code == 400 and field in answer.json()["error"]["fields"]


def test_an_unknown_parameter_is_refused(moderator_client):
    answer = moderator_client.get("/api/v1/moderation/audit", {"acton": "wallet.ban"})
    assert answer.status_code == 400 and "acton" in answer.json()["error"]["message"]


def test_the_page_says_what_is_wrong_with_a_bad_before(moderator_client):
    page = moderator_client.get("/moderation/audit", {"before": "yesterday"})
    assert page.status_code == 400 and "before" in page.content.decode()


# Publishers -----------------------------------------------------------------------------------


def test_publishers_see_the_entries_about_their_datasets_without_reporters_or_notes():
    publisher, other = user("pub"), user("other")
    mine, theirs = dataset_of(publisher), dataset_of(other, "Someone else's")
    entry(target_id=mine.pk, statement="Misleading title.", reporter="carol", internal_note="third report",
          actor="mod-alice", details={"dataset": mine.slug})
    entry(target_id=theirs.pk, statement="Not yours.")
    entry(action="wallet.ban", target_type="wallet", target_id=str(mine.pk))
    answer = client_of(publisher).get("/api/v1/me/audit")
    assert answer.status_code == 200
    [seen] = answer.json()["results"]
    assert seen["statement"] == "Misleading title." and seen["target_id"] == str(mine.pk)
    assert not {"reporter", "internal_note", "actor", "actor_id"} & set(seen)
    assert Client().get("/api/v1/me/audit").status_code == 401
    page = client_of(publisher).get("/me/audit").content.decode()
    assert "Misleading title." in page and "carol" not in page and "third report" not in page
    assert "mod-alice" not in page and "Not yours." not in page


# Notifications --------------------------------------------------------------------------------


def test_notifications_are_listed_newest_first_and_marked_read():
    person, other = user("pub"), user("other")
    first = notify(person, kind="dataset.approve", text="Approved.", link="/me/datasets")
    second = notify(person, kind="dataset.reject", text="Rejected.")
    theirs = notify(other, kind="dataset.reject", text="Not yours.")
    client = client_of(person)
    listed = client.get("/api/v1/me/notifications").json()
    assert [n["text"] for n in listed["results"]] == ["Rejected.", "Approved."] and listed["unread"] == 2
    marked = client.post("/api/v1/me/notifications/read", {"ids": [first.pk, theirs.pk]},
                         content_type="application/json").json()
    assert marked == {"marked": 1, "unread": 1}
    assert [n["text"] for n in client.get("/api/v1/me/notifications", {"unread": "1"}).json()["results"]] == [
        "Rejected."]
    theirs.refresh_from_db()
    assert theirs.read_at is None
    assert client.post("/api/v1/me/notifications/read", {}, content_type="application/json").json() == {
        "marked": 1, "unread": 0}
    second.refresh_from_db()
    assert second.read_at is not None
    assert Client().get("/api/v1/me/notifications").status_code == 401
    bad = client.post("/api/v1/me/notifications/read", {"ids": ["one"]}, content_type="application/json")
    assert bad.status_code == 400


# The decisions wired through the log ----------------------------------------------------------


def test_a_catalog_decision_is_recorded_and_the_publisher_is_notified(moderator):
    publisher = user("pub")
    dataset = dataset_of(publisher)
    revision = DatasetRevision.objects.create(dataset=dataset, kind="details", created_by=publisher,
                                              changes=revisions.public_text(dataset))
    revisions.decide(revision, decision=revisions.Decision.REQUEST_CHANGES, moderator=moderator,
                     reason="Say where the figures come from.")
    [recorded] = AuditEntry.objects.all()
    assert (recorded.action, recorded.target_type, recorded.target_id) == ("dataset.request_changes", "dataset",
                                                                           str(dataset.pk))
    assert recorded.actor == "mod" and recorded.actor_id == moderator.pk and recorded.actor_role == "moderator"
    assert recorded.statement == "Say where the figures come from."
    assert recorded.details == {"revision": revision.pk, "kind": "details", "dataset": dataset.slug,
                                "whole_dataset": True}
    [told] = Notification.objects.filter(recipient=publisher)
    assert told.kind == "dataset.request_changes" and "Say where the figures come from." in told.text
    assert told.link == f"/me/datasets/{dataset.slug}/edit"
    revisions.decide(revision, decision=revisions.Decision.APPROVE, moderator=moderator)
    assert AuditEntry.objects.latest("id").action == "dataset.approve"
    # A decision refused as stale records nothing.
    with pytest.raises(revisions.StaleDecision):
        revisions.decide(revision, decision=revisions.Decision.REJECT, moderator=moderator, reason="Late.")
    assert AuditEntry.objects.count() == 2 and Notification.objects.filter(recipient=publisher).count() == 2


def test_a_decision_through_the_api_is_recorded_once_and_visible_to_its_publisher():
    publisher = user("pub")
    staff = client_of(user("staff", "moderator", is_staff=True))
    dataset = dataset_of(publisher)
    revision = DatasetRevision.objects.create(dataset=dataset, kind="details", created_by=publisher,
                                              changes=revisions.public_text(dataset))
    answer = staff.post(f"/api/v1/moderation/revisions/{revision.pk}/decision",
                        {"decision": "reject", "reason": "Not a dataset."}, content_type="application/json")
    assert answer.status_code == 200, answer.json()
    [seen] = client_of(publisher).get("/api/v1/me/audit").json()["results"]
    assert seen["action"] == "dataset.reject" and seen["statement"] == "Not a dataset."
    assert seen["details"]["revision"] == revision.pk


def test_flag_decisions_are_recorded():
    cleared = Flag.objects.create(kind=Flag.Kind.CANARY, wallet="0x" + "11" * 20, note="looked fine")
    confirmed = Flag.objects.create(kind=Flag.Kind.SERVER, wallet="0x" + "22" * 20)
    assert flags.decide([cleared.pk], Flag.Status.CLEARED, "mod") == 1
    assert flags.decide([confirmed.pk, cleared.pk], Flag.Status.CONFIRMED, "mod") == 1  # cleared stays
    recorded = list(AuditEntry.objects.order_by("id").values_list("action", "target_id", "actor", "internal_note"))
    assert recorded == [("flag.clear", str(cleared.pk), "mod", "looked fine"),
                        ("flag.confirm", str(confirmed.pk), "mod", "")]
    assert AuditEntry.objects.get(action="flag.confirm").details["wallet"] == "0x" + "22" * 20


def test_the_admin_shows_the_log_read_only():
    kept = entry(statement="Shown in the admin.")
    admin = client_of(User.objects.create_superuser("root", password="a-long-password-1"))
    assert admin.get("/admin/moderation/auditentry/?action=dataset.approve").status_code == 200
    assert "Shown in the admin." in admin.get(f"/admin/moderation/auditentry/{kept.pk}/change/").content.decode()
    assert admin.post(f"/admin/moderation/auditentry/{kept.pk}/delete/", {"post": "yes"}).status_code == 403
    assert AuditEntry.objects.filter(pk=kept.pk).exists()


def test_the_decisions_page_marks_every_notification_read():
    person = user("pub")
    notify(person, kind="dataset.approve", text="Approved.")
    client = client_of(person)
    assert "1 unread" in client.get("/me/audit").content.decode()
    assert client.post("/me/audit").status_code == 302
    assert not Notification.objects.filter(recipient=person, read_at__isnull=True).exists()
    assert "Connect your wallet" in Client().get("/me/audit").content.decode()


def test_a_delisting_is_recorded_and_told_to_the_publisher(moderator):
    publisher = user("pub")
    dataset = dataset_of(publisher)
    result = services.delist([dataset], moderator=moderator)
    assert result.updated == 1
    [recorded] = AuditEntry.objects.all()
    assert (recorded.action, recorded.target_id, recorded.actor) == ("dataset.delist", str(dataset.pk), "mod")
    assert recorded.details == {"dataset": dataset.slug, "on_chain": False}
    [told] = Notification.objects.filter(recipient=publisher)
    assert told.kind == "dataset.delist" and "no longer for sale." in told.text


# Access through the admin (attack review): staff is not a role --------------------------------


def test_staff_without_the_moderator_role_cannot_decide_in_the_admin():
    from django.contrib.auth.models import Permission

    publisher = user("pubx")
    dataset = services.create_dataset(owner=publisher, title="Y", license="CC0-1.0", payout_address=PAYOUT)
    revision = DatasetRevision.objects.create(dataset=dataset, kind="details", created_by=publisher,
                                              changes=revisions.public_text(dataset))
    flag = Flag.objects.create(kind=Flag.Kind.CANARY, wallet="0x" + "11" * 20)
    nobody = user("nobody", is_staff=True)  # staff, no role, no permission
    viewer = user("viewer", is_staff=True)  # may see flags and revisions, holds no role
    viewer.user_permissions.add(*Permission.objects.filter(codename__in=["view_flag", "change_flag",
                                                                         "view_datasetrevision",
                                                                         "change_datasetrevision"]))
    for person in (nobody, viewer):
        client = client_of(person)
        client.post("/admin/catalog/datasetrevision/", {"action": "reject", "_selected_action": [revision.pk],
                                                         "revision": [revision.pk], "reason": "nope", "confirmed": "1"})
        client.post("/admin/rewards/flag/", {"action": "clear", "_selected_action": [flag.pk]})
    revision.refresh_from_db()
    flag.refresh_from_db()
    assert revision.status == DatasetRevision.Status.PENDING and flag.status == Flag.Status.OPEN
    assert not AuditEntry.objects.exists()
    assert client_of(nobody).get("/admin/catalog/datasetrevision/").status_code == 403

    moderator = user("mod-admin", "moderator", is_staff=True)
    answer = client_of(moderator).post("/admin/rewards/flag/", {"action": "clear", "_selected_action": [flag.pk]})
    assert answer.status_code == 302
    flag.refresh_from_db()
    entry = AuditEntry.objects.get(action="flag.clear")
    assert flag.status == Flag.Status.CLEARED and flag.decided_by == "mod-admin"
    assert (entry.actor, entry.actor_id, entry.actor_role) == ("mod-admin", moderator.pk, "moderator")


def test_delisting_a_delisted_dataset_records_and_tells_nothing_more():
    moderator, publisher = user("mod", "moderator"), user("pub")
    dataset = services.create_dataset(owner=publisher, title="X", license="CC0-1.0", payout_address=PAYOUT)
    services.delist([dataset], moderator=moderator)
    services.delist([dataset], moderator=moderator)
    assert AuditEntry.objects.filter(action="dataset.delist").count() == 1
    assert Notification.objects.filter(recipient=publisher, kind="dataset.delist").count() == 1
