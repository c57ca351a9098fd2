"""Contributor abuse for moderators: the open flags on devices and wallets with their evidence and
what each holds back, and the two decisions (`rewards.flags.decide`): clear (the held amounts are
paid in the next epoch, the device gets back the quality the flag took) or confirm (they return
to the pool). The decision is recorded as `flag.clear` / `flag.confirm` by the receiver of
`rewards.signals.flag_decided` (receivers.py), in the deciding transaction: not here, so it is
recorded once whichever way it was taken (this console or the admin)."""
from django.db.models import Count, Q, Sum

from marketplace import api
from marketplace.rewards import flags
from marketplace.rewards.models import Flag, HeldAmount

DECISIONS = {"clear": Flag.Status.CLEARED, "confirm": Flag.Status.CONFIRMED}
DECISION_CODES = sorted(DECISIONS)  # the API's choices, in this order (FlagDecisionEnum)
NOTE_MAX = 2000
PAGE = 100


class Refused(api.Refused):
    """A flag decision that cannot be taken."""


def _with_holdings(rows: list[Flag]) -> list[dict]:
    ids = [f.pk for f in rows]
    held = dict(HeldAmount.objects.filter(flag_id__in=ids, status=HeldAmount.Status.HELD)
                .values("flag_id").annotate(total=Sum("amount")).values_list("flag_id", "total"))
    wallets = {f.wallet for f in rows}
    others = dict(Flag.objects.filter(wallet__in=wallets).values("wallet")
                  .annotate(n=Count("id", filter=Q(status=Flag.Status.CONFIRMED))).values_list("wallet", "n"))
    return [{"flag": f, "held": int(held.get(f.pk) or 0), "confirmed_before": others.get(f.wallet, 0)} for f in rows]


def open_flags(*, kind: str = "") -> list[dict]:
    """The open flags, oldest first, with their device, the amounts they hold and how many of the
    wallet's flags were confirmed before."""
    rows = Flag.objects.filter(status=Flag.Status.OPEN).select_related("device__contributor").order_by("id")
    if kind:
        rows = rows.filter(kind=kind)
    return _with_holdings(list(rows[:PAGE]))


def recent_decisions(limit: int = 20) -> list[Flag]:
    return list(Flag.objects.exclude(status=Flag.Status.OPEN).select_related("device")
                .order_by("-decided_at", "-id")[:limit])


def decide(*, flag_id: int, decision: str, by, note: str = "") -> Flag:
    """Clear or confirm one open flag. 404 no such flag, 409 decided already, 400 a bad decision."""
    if decision not in DECISIONS:
        raise Refused("invalid_decision", "Decide `clear` or `confirm`.", status=400)
    if len(note) > NOTE_MAX:
        raise Refused("invalid_note", f"The note is at most {NOTE_MAX} characters.", status=400)
    flag = Flag.objects.filter(pk=flag_id).first()
    if flag is None:
        raise Refused("not_found", f"No flag #{flag_id}.", status=404)
    if not flags.decide([flag_id], DECISIONS[decision], by, note=note.strip()):
        flag.refresh_from_db()
        raise Refused("already_decided", f"Flag #{flag_id} was {flag.status} already by {flag.decided_by or 'someone'}"
                      f"{' at ' + flag.decided_at.strftime('%Y-%m-%d %H:%M UTC') if flag.decided_at else ''}.")
    flag.refresh_from_db()
    return flag
