"""Agent keys and budgets: the API keys users give their AI agents, and the ledger that keeps
each key's payments within its limits.

A key is bound to the wallet the agent pays from, and since a registered wallet's payments need
the key, registering a wallet that is not the owner's own needs its holder's agreement: a
signature of a challenge the server issued (`issue_challenge`), checked when the key is made.
The paid URL asks `key_for_payment` which key a
payment goes with (a payment from a registered wallet without its key is refused), then
`reserve`s the price before it settles, and `release`s, `hold`s or `spend`s it after. Refund
shares of disputed orders come back through the chain indexer (`on_refund_events`).

The cap counts what was reserved or spent in the last 24 hours, each payment by the time it was
reserved and net of the refunds of its order, and every held payment (its settlement timed out
and is not resolved: it may still make an order), whatever its age, until it is resolved: a
refund returns room to the budget while its payment is still counted (after that, the payment no
longer counts anyway), so the room never exceeds the cap. Amounts are integers in the token's
base units.

A key binds its wallet until its owner releases the wallet, whether the key is live or ended: a
payment from the wallet of a revoked or expired key is refused (`key_revoked`, `key_expired`),
with or without the key, until the owner releases it (`release_wallet`). An owner revoking a
runaway agent's key wants its payments stopped, and the agent holds the wallet's own key: were
the wallet freed, it would go on paying, with no limits at all.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
import hashlib
import re
import secrets

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, DecimalField, Q, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from eth_account.messages import encode_defunct
from eth_utils import is_address, is_checksum_address, to_checksum_address

from marketplace.api import Refused

from .models import MONEY, AgentKey, AgentRefund, AgentSpend, AgentWalletChallenge, User
from .services import ChainUnreachable, signed_by

HEADER = "X-Agent-Key"
#: The window the daily cap covers.
WINDOW = timedelta(hours=24)
#: Secrets start with this, so that a leaked one is recognisable (secret scanners, logs).
SECRET_PREFIX = "dmk_"
#: Characters of the secret kept in clear for recognition (the prefix and 8 random ones).
SHOWN = len(SECRET_PREFIX) + 8
MAX_NAME = 80
#: A key lives at most this long; a longer-lived agent gets a new key.
MAX_LIFETIME = timedelta(days=366)
MAX_ALLOWED = 50  # categories or publishers one key may list
COUNTED = (AgentSpend.State.RESERVED, AgentSpend.State.HELD, AgentSpend.State.SPENT)
_SECRET = re.compile(r"^dmk_[A-Za-z0-9_-]{43}$")


class AgentKeyRefused(Refused):
    """A key or a payment made with one that is refused: 401 for a key that does not open
    anything, 402 for a payment over the key's limits, 403 for one the key does not allow, 400
    for bad input when creating one (`field` names it), 409 for a wallet already registered;
    for the wallet's proof, 400 when it is missing, 401 when it is not the wallet's or expired,
    409 when its challenge was used, 503 when the chain cannot check a contract wallet's."""

    default_status = 403


def _money(value) -> int:
    return int(value)


def _units(amount: int) -> str:
    """Amounts in refusals are base units: the key may pay in any token, whatever its decimals."""
    return f"{amount} base units"


def checksummed(value: str, *, field: str = "wallet") -> str:
    """The address checksummed; refused (400) when it is not one, or when mixed case carries a
    wrong checksum (a typo the checksum exists to catch)."""
    value = value if isinstance(value, str) else ""
    hex_part = value[2:]
    mixed = hex_part != hex_part.lower() and hex_part != hex_part.upper()
    if not (len(value) == 42 and is_address(value)) or (mixed and not is_checksum_address(value)):
        raise AgentKeyRefused("invalid_address", "Not a wallet address (0x and 40 hex digits, checksummed "
                              "if mixed case).", status=400, field=field)
    return to_checksum_address(value)


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# Keys ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreatedKey:
    key: AgentKey
    secret: str  # shown once: only its hash is stored


def _categories() -> dict[str, str]:
    from marketplace.catalog.models import CATEGORIES  # a constant: accounts needs no catalog model

    return dict(CATEGORIES)


def checked_terms(*, name: str, wallet: str, max_per_purchase: int, daily_cap: int, expires_at: datetime,
                  allowed_categories=(), allowed_publishers=(), now=None) -> dict:
    """A key's terms, normalised (the name stripped, addresses checksummed, lists without
    repeats), or a refusal of the first bad one (400, with the field). The page checks them
    before it asks the wallet to sign."""
    now = now or timezone.now()
    name = (name or "").strip()
    if not name or len(name) > MAX_NAME:
        raise AgentKeyRefused("invalid_name", f"Name the agent in 1 to {MAX_NAME} characters.", status=400,
                              field="name")
    wallet = checksummed(wallet)
    max_per_purchase, daily_cap = int(max_per_purchase), int(daily_cap)
    if max_per_purchase < 1 or daily_cap < 1:
        raise AgentKeyRefused("invalid_amount", "Amounts are at least 1 base unit.", status=400,
                              field="max_per_purchase" if max_per_purchase < 1 else "daily_cap")
    if max_per_purchase > daily_cap:
        raise AgentKeyRefused("max_over_cap", "The most one purchase may cost cannot be more than the cap per "
                              "24 hours.", status=400, field="max_per_purchase")
    if expires_at <= now:
        raise AgentKeyRefused("expiry_in_past", "The expiry must be in the future.", status=400, field="expires_at")
    if expires_at > now + MAX_LIFETIME:
        raise AgentKeyRefused("expiry_too_far", f"A key lives at most {MAX_LIFETIME.days} days: pick an earlier "
                              "expiry.", status=400, field="expires_at")
    categories = list(dict.fromkeys(allowed_categories or ()))
    known = _categories()
    unknown = [c for c in categories if c not in known]
    if unknown:
        raise AgentKeyRefused("unknown_category", f"Unknown category {unknown[0]!r}: use one of "
                              f"{', '.join(known)}.", status=400, field="allowed_categories")
    publishers = list(dict.fromkeys(checksummed(p, field="allowed_publishers") for p in allowed_publishers or ()))
    if len(categories) > MAX_ALLOWED or len(publishers) > MAX_ALLOWED:
        raise AgentKeyRefused("too_many", f"List at most {MAX_ALLOWED} categories and {MAX_ALLOWED} publishers.",
                              status=400, field="allowed_categories" if len(categories) > MAX_ALLOWED
                              else "allowed_publishers")
    return {"name": name, "wallet": wallet, "max_per_purchase": max_per_purchase, "daily_cap": daily_cap,
            "expires_at": expires_at, "allowed_categories": categories, "allowed_publishers": publishers}


def create(owner: User, *, nonce: str | None = None, wallet_signature: str | None = None, now=None,
           **terms) -> CreatedKey:
    """Make a key for one of `owner`'s agents, paying from `wallet`, and its secret (returned
    here once, never stored). Refuses bad terms (400, with the field); a wallet that is not the
    owner's own without the wallet's signature of a challenge issued to the owner for it
    (`nonce`, `wallet_signature`; see `check_proof`); and a wallet that already has a live key
    (409: `wallet_has_key` when it is one of the owner's keys, to revoke first, before the
    proof is asked for; `wallet_registered` when another user's key binds it, live or ended and
    not released, told only to the wallet's holder). The owner's own ended keys of the wallet
    are released: the new key binds it. A proof sent for the owner's own wallet is checked too. The challenge is used
    only when the key is made."""
    now = now or timezone.now()
    terms = checked_terms(now=now, **terms)
    wallet = terms["wallet"]
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        # One creation per wallet at a time, so that two cannot both find it free.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"agent-key-wallet:{wallet}"])
        bound = _bound(AgentKey.objects.filter(wallet=wallet))
        live = _live(bound, now).first()
        if live is not None and live.owner_id == owner.pk:
            raise _has_key(live)
        challenge = None
        if nonce or wallet_signature or proof_needed(owner, wallet):
            challenge = check_proof(owner, wallet, nonce=nonce, wallet_signature=wallet_signature, now=now)
        if live is not None or bound.exclude(owner=owner).exists():
            raise AgentKeyRefused("wallet_registered", "Another account has registered this wallet for its agent.",
                                  status=409, field="wallet")
        bound.update(wallet_released_at=now)  # the owner's ended keys: the new key binds the wallet now
        key = AgentKey.objects.create(owner=owner, prefix=secret[:SHOWN], secret_hash=secret_hash(secret),
                                      created_at=now, **terms)
        if challenge is not None:
            challenge.used_at = now
            challenge.save(update_fields=["used_at"])
    return CreatedKey(key, secret)


def _has_key(live: AgentKey) -> AgentKeyRefused:
    return AgentKeyRefused("wallet_has_key", f"This wallet already has a live key, {live.name!r} "
                           f"({live.prefix}…): revoke it first.", status=409, field="wallet")


# The wallet's proof ----------------------------------------------------------------------------

#: How long a challenge may be signed: time to run a command where the agent's key is kept.
CHALLENGE_TTL = timedelta(minutes=15)
#: Challenges one user may have open at once; asking for another drops the oldest.
OPEN_CHALLENGES = 10
#: A used or expired challenge is kept this long, so that a replayed or late proof is told so.
SPENT_CHALLENGE_KEPT = timedelta(hours=1)
PROOF_REFUSALS = ("missing_proof", "bad_proof", "expired_proof", "nonce_used", "chain_unavailable")


def proof_needed(owner: User, wallet: str) -> bool:
    """Whether registering `wallet` (checksummed) for `owner` needs the wallet's signature: not
    for the owner's own address, which their signed-in session already proves."""
    return not (owner.address and owner.address == wallet)


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def challenge_message(*, site: str, account: str, wallet: str, nonce: str, issued_at: datetime,
                      expires_at: datetime) -> str:
    """The EIP-191 text the agent's wallet signs: what signing it does, in words, then the
    values it is bound to. No quotes or backslashes, so that it can be pasted into a shell's
    single quotes or a Python string."""
    return (
        f"Register this wallet for an AI agent of the account {account} on {site}.\n\n"
        f"Signing lets that account make an agent key for this wallet: payments from this wallet on {site} "
        "will then need the key and keep within its limits. Signing moves no funds and costs no gas.\n\n"
        f"Wallet: {wallet}\n"
        f"Account: {account}\n"
        f"Chain ID: {settings.CHAIN_ID}\n"
        f"Nonce: {nonce}\n"
        f"Issued At: {_utc(issued_at)}\n"
        f"Expiration Time: {_utc(expires_at)}"
    )


def issue_challenge(owner: User, wallet: str, *, site: str, now=None) -> AgentWalletChallenge:
    """A new challenge for `wallet` to sign to agree to be registered to one of `owner`'s agent
    keys on `site` (the host the owner sees): single use, bound to both, for CHALLENGE_TTL.
    Refuses a wallet that is not an address (400) or that already has one of the owner's
    live keys (409). The owner's spent challenges go, and the oldest open ones beyond
    OPEN_CHALLENGES, so that asking again and again stores no more."""
    wallet = checksummed(wallet)
    now = now or timezone.now()
    live = _live(AgentKey.objects.filter(wallet=wallet, owner=owner), now).first()
    if live is not None:
        raise _has_key(live)
    nonce = secrets.token_hex(16)
    expires_at = now + CHALLENGE_TTL
    with transaction.atomic():
        mine = AgentWalletChallenge.objects.filter(owner=owner)
        mine.filter(expires_at__lt=now - SPENT_CHALLENGE_KEPT).delete()
        oldest = (mine.filter(used_at__isnull=True, expires_at__gt=now).order_by("-created_at", "-pk")
                  .values_list("pk", flat=True)[OPEN_CHALLENGES - 1:])
        mine.filter(pk__in=list(oldest)).delete()
        return AgentWalletChallenge.objects.create(
            owner=owner, wallet=wallet, nonce=nonce, created_at=now, expires_at=expires_at,
            message=challenge_message(site=site, account=owner.address or owner.username, wallet=wallet,
                                      nonce=nonce, issued_at=now, expires_at=expires_at))


def open_challenge(owner: User, wallet: str, nonce: str | None, *, now=None) -> AgentWalletChallenge | None:
    """The challenge `nonce` names while it can still be signed for `owner` and `wallet`
    (checksummed): unused and not expired; else None."""
    if not nonce:
        return None
    return AgentWalletChallenge.objects.filter(nonce=str(nonce), owner=owner, wallet=wallet, used_at__isnull=True,
                                               expires_at__gt=now or timezone.now()).first()


def check_proof(owner: User, wallet: str, *, nonce: str | None, wallet_signature: str | None,
                now=None) -> AgentWalletChallenge:
    """The challenge `nonce` names, locked, once `wallet_signature` is `wallet`'s EIP-191
    signature of its message (an EIP-1271 contract wallet's: whatever it accepts) and the
    challenge was issued to `owner` for `wallet`, is unused and has not expired; else a
    refusal. Call it in the transaction that uses the challenge."""
    now = now or timezone.now()
    if not nonce or not wallet_signature:
        raise AgentKeyRefused("missing_proof", "This wallet is not your own: registering it needs its signature. "
                              "Ask for a challenge for it, sign its message with the wallet and send the signature "
                              "with the challenge's nonce.", status=400)
    challenge = AgentWalletChallenge.objects.select_for_update().filter(nonce=str(nonce)).first()
    if challenge is None or challenge.owner_id != owner.pk or challenge.wallet != wallet:
        raise AgentKeyRefused("bad_proof", "This challenge was not issued to you for this wallet: ask for a new one.",
                              status=401)
    if challenge.used_at is not None:
        raise AgentKeyRefused("nonce_used", "This challenge was already used to make a key: ask for a new one.",
                              status=409)
    if challenge.expires_at <= now:
        minutes = int(CHALLENGE_TTL.total_seconds() // 60)
        raise AgentKeyRefused("expired_proof", f"This challenge expired: ask for a new one and send its signature "
                              f"within {minutes} minutes.", status=401)
    try:
        raw = bytes.fromhex(str(wallet_signature).strip().removeprefix("0x"))
        signed = bool(raw) and signed_by(wallet, encode_defunct(text=challenge.message), raw)
    except ValueError:
        signed = False
    except ChainUnreachable:
        raise AgentKeyRefused("chain_unavailable", "The chain cannot be reached to check this contract wallet's "
                              "signature; try again soon.", status=503) from None
    if not signed:
        raise AgentKeyRefused("bad_proof", f"This is not {wallet}'s signature of the challenge's message (sign its "
                              "exact text with personal_sign, EIP-191).", status=401)
    return challenge


def delete_spent_challenges(now=None) -> int:
    """Delete challenges that expired a while ago (run by beat; they can never be used)."""
    now = now or timezone.now()
    deleted, _ = AgentWalletChallenge.objects.filter(expires_at__lt=now - SPENT_CHALLENGE_KEPT).delete()
    return deleted


def revoke(key: AgentKey, *, now=None) -> AgentKey:
    """Revoke at once: the next payment with it, or from its wallet without it, is refused
    (`reserve` reads it under its row lock, so a payment already past `key_for_payment` is
    refused too) until the owner releases the wallet. Idempotent."""
    with transaction.atomic():
        key = AgentKey.objects.select_for_update().get(pk=key.pk)
        if key.revoked_at is None:
            key.revoked_at = now or timezone.now()
            key.save(update_fields=["revoked_at"])
    return key


def release_wallet(key: AgentKey, *, now=None) -> AgentKey:
    """The owner lets the wallet of an ended (revoked or expired) key pay as anyone again, with
    no key and no limits. Refused (409 `key_live`) while the key is live: revoke it first.
    Idempotent."""
    now = now or timezone.now()
    with transaction.atomic():
        key = AgentKey.objects.select_for_update().get(pk=key.pk)
        if key.is_live(now):
            raise AgentKeyRefused("key_live", "This key is live: revoke it before releasing its wallet.", status=409)
        if key.wallet_released_at is None:
            key.wallet_released_at = now
            key.save(update_fields=["wallet_released_at"])
    return key


def _live(keys, now):
    return keys.filter(revoked_at__isnull=True, expires_at__gt=now)


def _bound(keys):
    """The keys that bind their wallets: live ones, and ended ones whose wallets were not released."""
    return keys.filter(wallet_released_at__isnull=True)


def _check_usable(key: AgentKey, now) -> None:
    if key.revoked_at is not None:
        raise AgentKeyRefused("key_revoked", "This agent key was revoked by its owner.", status=401)
    if key.expires_at <= now:
        raise AgentKeyRefused("key_expired", "This agent key has expired: its owner can make a new one.", status=401)


def key_for_payment(raw_key: str | None, payer: str) -> AgentKey | None:
    """The key a payment from `payer` is made with: None when no key was sent and no key binds
    `payer` (an ordinary payer); else the key, or a refusal: the wallet of a revoked or expired
    key that its owner did not release pays with no key at all."""
    now = timezone.now()
    payer = to_checksum_address(payer)
    if raw_key is None or raw_key == "":
        bound = _bound(AgentKey.objects.filter(wallet=payer))
        if _live(bound, now).exists():
            raise AgentKeyRefused("key_required", f"This wallet is registered to an agent key: send the key in "
                                  f"the {HEADER} header.", status=403)
        ended = bound.order_by("-created_at", "-pk").first()
        if ended is not None:
            ended_how = "revoked" if ended.revoked_at is not None else "expired"
            raise AgentKeyRefused(f"key_{ended_how}", f"This wallet's agent key has {ended_how}: its payments are "
                                  "refused until the key's owner releases the wallet (or makes a new key).",
                                  status=403)
        return None
    key = None
    if isinstance(raw_key, str) and _SECRET.match(raw_key.strip()):
        key = AgentKey.objects.filter(secret_hash=secret_hash(raw_key.strip())).first()
    if key is None:
        raise AgentKeyRefused("unknown_key", f"The {HEADER} header names no agent key.", status=401)
    _check_usable(key, now)
    if key.wallet != payer:
        raise AgentKeyRefused("wrong_wallet", f"This agent key pays from {key.wallet}, not from {payer}.", status=403)
    return key


# The ledger ------------------------------------------------------------------------------------


def _counting(now) -> Q:
    """The payments that count against a cap now: reserved or spent in the last 24 hours, and held
    ones whatever their age (a held payment may still make an order until it is resolved)."""
    return Q(state__in=COUNTED, created_at__gt=now - WINDOW) | Q(state=AgentSpend.State.HELD)


def _window(key_id: int, now):
    """The key's payments that count now, oldest first, each with the refunds of its order."""
    return (AgentSpend.objects.filter(_counting(now), key_id=key_id)
            .annotate(refunded=Coalesce(Sum("refunds__amount"), Value(0), output_field=DecimalField(**MONEY)))
            .order_by("created_at", "pk"))



def _counted(spend) -> int:
    return max(0, _money(spend.amount) - _money(spend.refunded))


def used(key: AgentKey, *, now=None) -> int:
    """What the key has used of its cap in the 24 hours before `now`."""
    return sum(_counted(s) for s in _window(key.pk, now or timezone.now()))


def reserve(key: AgentKey, *, payment_ref: str, amount: int, listing_id: int, publisher: str,
            category: str) -> None:
    """Count `amount` against the key's limits for the payment `payment_ref`, or refuse it.
    One transaction holding the key's row lock, so racing payments are counted one after the
    other and together never pass the cap. The same `payment_ref` again with the same amount
    and listing is a no-op (released before: counted again, if it fits); with other terms it
    is refused (409)."""
    amount, listing_id = int(amount), int(listing_id)
    now = timezone.now()
    with transaction.atomic():
        key = AgentKey.objects.select_for_update().get(pk=key.pk)
        _check_usable(key, now)
        existing = AgentSpend.objects.select_for_update().filter(payment_ref=payment_ref).first()
        if existing is not None:
            if (existing.key_id, _money(existing.amount), _money(existing.listing_id)) != (key.pk, amount, listing_id):
                raise AgentKeyRefused("payment_ref_conflict", "This payment was reserved before with other terms.",
                                      status=409)
            if existing.state != AgentSpend.State.RELEASED:
                return
        _check_limits(key, amount=amount, publisher=publisher, category=category, now=now)
        if existing is not None:
            existing.state, existing.created_at = AgentSpend.State.RESERVED, now
            existing.save(update_fields=["state", "created_at", "updated_at"])
        else:
            try:
                with transaction.atomic():
                    AgentSpend.objects.create(key=key, payment_ref=payment_ref, listing_id=listing_id, amount=amount,
                                              created_at=now)
            except IntegrityError:  # the same reference reserved with another key meanwhile
                raise AgentKeyRefused("payment_ref_conflict", "This payment was reserved before with other terms.",
                                      status=409) from None
        key.last_used_at = now
        key.save(update_fields=["last_used_at"])


def _check_limits(key: AgentKey, *, amount: int, publisher: str, category: str, now) -> None:
    if amount > _money(key.max_per_purchase):
        raise AgentKeyRefused("over_purchase_max", f"This key pays at most {_units(_money(key.max_per_purchase))} "
                              f"for one purchase; this one costs {_units(amount)}.", status=402)
    if key.allowed_categories and category not in key.allowed_categories:
        raise AgentKeyRefused("category_not_allowed", f"This key buys only in the categories "
                              f"{', '.join(key.allowed_categories)}, not {category!r}.", status=403)
    if key.allowed_publishers:
        try:
            publisher = to_checksum_address(publisher)
        except (TypeError, ValueError):
            pass
        if publisher not in key.allowed_publishers:
            raise AgentKeyRefused("publisher_not_allowed", "This key does not buy from this dataset's publisher.",
                                  status=403)
    window = list(_window(key.pk, now))
    cap = _money(key.daily_cap)
    in_use = sum(_counted(s) for s in window)
    if in_use + amount <= cap:
        return
    left = max(0, cap - in_use)
    frees = None
    for spend in window:  # oldest first: room frees as each payment leaves the window
        if spend.state == AgentSpend.State.HELD:
            continue  # counts until it is resolved, not for a time
        left += _counted(spend)
        if left >= amount:
            frees = spend.created_at + WINDOW
            break
    when = f" Room for it frees up at {frees.isoformat(timespec='seconds')}." if frees else ""
    raise AgentKeyRefused("over_daily_cap", f"This key may spend {_units(cap)} in any 24 hours; "
                          f"{_units(max(0, cap - in_use))} is left and this purchase costs "
                          f"{_units(amount)}.{when}", status=402)


def _move(payment_ref: str, state: str, *, only_from, **fields) -> None:
    with transaction.atomic():
        spend = AgentSpend.objects.select_for_update().filter(payment_ref=payment_ref).first()
        if spend is None or spend.state not in only_from:
            return
        spend.state = state
        for name, value in fields.items():
            setattr(spend, name, value)
        spend.save(update_fields=["state", "updated_at", *fields])


def unusable_key(payment_ref: str, *, now=None) -> str:
    """Why the payment reserved under `payment_ref` must not be settled any more: its key was
    revoked or has expired since ("" when it is live, or for a payment made without a key, or one
    spent or released already)."""
    spend = (AgentSpend.objects.select_related("key").filter(
        payment_ref=payment_ref, state__in=(AgentSpend.State.RESERVED, AgentSpend.State.HELD)).first())
    if spend is None:
        return ""
    key = spend.key
    if key.revoked_at is not None:
        return f"the agent key {key.prefix}… was revoked by its owner before the payment was sent"
    if key.expires_at <= (now or timezone.now()):
        return f"the agent key {key.prefix}… expired before the payment was sent"
    return ""


def release(payment_ref: str) -> None:
    """The settlement was refused or reverted: the payment no longer counts. A spent one stays
    spent (an order exists); unknown references are ignored."""
    _move(payment_ref, AgentSpend.State.RELEASED, only_from=(AgentSpend.State.RESERVED, AgentSpend.State.HELD))


def hold(payment_ref: str) -> None:
    """The settlement timed out and is not resolved: the payment keeps counting until it is
    spent or released, however long that takes (not only for 24 hours)."""
    _move(payment_ref, AgentSpend.State.HELD, only_from=(AgentSpend.State.RESERVED,))


def spend(payment_ref: str, *, chain_id: int, order_id: int | None, tx_hash: str) -> None:
    """The settlement made order `order_id` in transaction `tx_hash`: spent for good (a refund
    of that order comes back through the indexer; one it has already read, for a settlement
    that was held a long time, is taken here). With no order id (a settlement confirmed whose
    OrderCreated was not stored) it is spent all the same, and no refund can be matched to it."""
    _move(payment_ref, AgentSpend.State.SPENT,
          only_from=(AgentSpend.State.RESERVED, AgentSpend.State.HELD, AgentSpend.State.RELEASED),
          chain_id=int(chain_id), order_id=None if order_id is None else int(order_id), tx_hash=(tx_hash or "").lower())
    spent = AgentSpend.objects.filter(payment_ref=payment_ref, state=AgentSpend.State.SPENT,
                                      order_id__isnull=False).first()
    if spent is not None:
        from marketplace.chain.models import ChainEvent

        refunds = ChainEvent.objects.filter(chain_id=spent.chain_id, name__in=REFUND_EVENTS,
                                            args__orderId=str(int(spent.order_id)))
        _record_refunds(list(refunds), {(spent.chain_id, int(spent.order_id)): [spent]})


# What the owner sees ---------------------------------------------------------------------------


def keys_of(owner: User):
    return AgentKey.objects.filter(owner=owner).order_by("-created_at", "-pk")


def spending(keys, *, now=None) -> dict[int, dict]:
    """Per key id: `used` (in the last 24 hours and held, net of refunds), `remaining` of the cap, and
    `purchases` (spent payments, ever) and `refunded` (ever)."""
    now = now or timezone.now()
    keys = list(keys)
    ids = [k.pk for k in keys]
    totals = {row["key_id"]: row for row in AgentSpend.objects.filter(key_id__in=ids).values("key_id").annotate(
        purchases=Count("pk", filter=Q(state=AgentSpend.State.SPENT)))}
    refunded = dict(AgentRefund.objects.filter(spend__key_id__in=ids).values("spend__key_id")
                    .annotate(total=Sum("amount")).values_list("spend__key_id", "total"))
    in_use = {k: 0 for k in ids}
    for spend_row in (AgentSpend.objects.filter(_counting(now), key_id__in=ids)
                      .annotate(refunded=Coalesce(Sum("refunds__amount"), Value(0),
                                                  output_field=DecimalField(**MONEY)))):
        in_use[spend_row.key_id] += _counted(spend_row)
    return {k.pk: {"used": in_use[k.pk], "remaining": max(0, _money(k.daily_cap) - in_use[k.pk]),
                   "purchases": totals.get(k.pk, {}).get("purchases", 0),
                   "refunded": _money(refunded.get(k.pk) or 0)} for k in keys}


def purchases(key: AgentKey):
    """The key's payments, newest first, each with `refunded` (the refunds of its order)."""
    return (key.spends.annotate(refunded=Coalesce(Sum("refunds__amount"), Value(0),
                                                  output_field=DecimalField(**MONEY)))
            .order_by("-pk"))


# Refunds, from the chain indexer ----------------------------------------------------------------

REFUND_EVENTS = ("DisputeResolved", "DisputeExpired")


def on_refund_events(events) -> None:
    """A range's `DisputeResolved` and `DisputeExpired` events: the refund share of an order an
    agent paid for with a key goes back to the key's budget, one row per event."""
    refunds = [e for e in events if int(e.args.get("refund", 0)) > 0]
    if not refunds:
        return
    spends = {}
    for row in AgentSpend.objects.filter(state=AgentSpend.State.SPENT, chain_id__in={e.chain_id for e in refunds},
                                         order_id__in={int(e.args["orderId"]) for e in refunds}):
        spends.setdefault((row.chain_id, int(row.order_id)), []).append(row)
    if spends:
        _record_refunds(refunds, spends)


def _record_refunds(events, spends: dict) -> None:
    """A refund row for each of `events` (chain events or ChainEvent rows) whose order is one
    of `spends` (by chain id and order id). The order is the spend's only when the spend's
    settlement transaction created it on the event's market: order ids start again on a new
    market."""
    from marketplace.chain.models import ChainEvent

    rows = []
    for event in events:
        refund, order_id = int(event.args.get("refund", 0)), int(event.args["orderId"])
        candidates = spends.get((event.chain_id, order_id))
        if refund <= 0 or not candidates:
            continue
        created_in = set(ChainEvent.objects.filter(
            chain_id=event.chain_id, address=event.address, name="OrderCreated", args__orderId=str(order_id))
            .values_list("tx_hash", flat=True))
        rows += [AgentRefund(spend=s, amount=refund, chain_id=event.chain_id, tx_hash=event.tx_hash,
                             log_index=event.log_index, block_number=event.block_number)
                 for s in candidates if s.tx_hash in created_in]
    AgentRefund.objects.bulk_create(rows, ignore_conflicts=True)


def on_rollback(chain_id: int, ancestor: int, orphaned) -> None:
    """Refunds of orphaned blocks go (each is one event; its spend counts in full again)."""
    AgentRefund.objects.filter(chain_id=chain_id, block_number__gt=ancestor).delete()


def on_chain_reset(sender, chain_id, **kwargs) -> None:
    """Refund rows are chain-derived; the payments themselves are the server's own record."""
    AgentRefund.objects.filter(chain_id=chain_id).delete()
