"""Binding a device (a node's key) to a wallet, and letting it go.

A binding carries two signatures over the same EIP-712 `Bind(device, wallet, nonce, issuedAt)`:
the device key's (the node holds it) and the wallet's (on the website, or a key the node was
given at a hidden prompt or in a keystore). Neither alone binds: a wallet cannot claim a device it
does not run, and a device cannot pay a wallet that did not agree.

A device bound to another wallet moves at once only with that wallet's `Unbind` signature;
otherwise the rebinding waits REWARD_REBIND_COOLDOWN as a pending row, which the old wallet can
cancel by binding the device again. Every change is one transaction that locks the device row
first (then the contributor row, for the device cap), so two bindings of one device at once are
serialised: a device is never bound to two wallets.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
import re
import secrets
import time

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import is_address, to_checksum_address

from marketplace.accounts.bans import CONTRIBUTE, refuse_if_banned
from marketplace.accounts.services import ChainUnreachable, signed_by
from marketplace.api import APIError

from . import signing
from .models import BindingEvent, BindingNonce, Contributor, Device, PendingBinding

NONCE = re.compile(r"^0x[0-9a-fA-F]{64}$")


def typed_data(kind: str, *, device: str, wallet: str, nonce: str, issued_at: int) -> dict:
    """The EIP-712 data of a Bind or Unbind on this server's chain (signing.binding_typed_data)."""
    return signing.binding_typed_data(kind, chain_id=settings.CHAIN_ID, device=device, wallet=wallet,
                                      nonce=nonce, issued_at=issued_at)


@dataclass
class Signed:
    """One signed Bind or Unbind as the API received it."""

    device: str
    wallet: str
    nonce: str
    issued_at: int
    signature: str


@dataclass
class Outcome:
    status: str  # "bound", "pending" or "unbound"
    device: Device
    wallet: str
    effective_at: datetime | None = None


def _address(value: str, field: str) -> str:
    if not isinstance(value, str) or not is_address(value):
        raise APIError("invalid", f"The {field} is not an address.", status=400)
    return to_checksum_address(value)


def _check_fresh(issued_at: int, *, window: int) -> None:
    now = int(time.time())
    if issued_at > now + settings.REWARD_CLOCK_SKEW:
        raise APIError("clock_skew", "The binding is dated in the future: check this machine's clock.", status=400)
    if issued_at < now - window:
        raise APIError("binding_expired", f"The binding was signed more than {window} seconds ago: start again "
                       "from the node (datamarket-node bind).", status=400)


def _signable(kind: str, signed: Signed):
    if not NONCE.match(signed.nonce or ""):
        raise APIError("invalid", "The nonce is 32 bytes, 0x-hex.", status=400)
    return encode_typed_data(full_message=typed_data(kind, device=signed.device, wallet=signed.wallet,
                                                     nonce=signed.nonce, issued_at=signed.issued_at))


def _check_wallet_signature(kind: str, signed: Signed) -> None:
    try:
        raw = bytes.fromhex(signed.signature.removeprefix("0x"))
        ok = signed_by(signed.wallet, _signable(kind, signed), raw)
    except ValueError:
        ok = False
    except ChainUnreachable:
        raise APIError("chain_unavailable", "The chain cannot be reached to check this contract wallet's "
                       "signature; try again soon.", status=503) from None
    if not ok:
        raise APIError("bad_wallet_signature", f"The {kind} is not signed by the wallet {signed.wallet}.",
                       status=401)


def _check_device_signature(signed: Signed, device_signature: str) -> None:
    try:
        signer = Account.recover_message(_signable("Bind", signed), signature=device_signature)
    except APIError:
        raise
    except Exception:  # noqa: BLE001 - eth_account refuses malformed signatures with several errors
        signer = None
    if signer != signed.device:
        raise APIError("bad_device_signature", "The Bind is not signed by the device key.", status=401)


def _use_nonce(nonce: str) -> None:
    try:
        with transaction.atomic():
            BindingNonce.objects.create(nonce=nonce.lower())
    except IntegrityError:
        raise APIError("nonce_used", "This signed binding was used already: start again from the node.",
                       status=409) from None


def _locked_device(address: str) -> Device:
    device, _ = Device.objects.get_or_create(address=address)
    return Device.objects.select_for_update().get(pk=device.pk)


def _attach(device: Device, wallet: str) -> Contributor:
    """Bind a locked, unbound-or-other device to `wallet`, within the device cap (the contributor
    row is locked while its devices are counted, so two bindings cannot both take the last place)."""
    contributor, _ = Contributor.objects.get_or_create(wallet=wallet)
    contributor = Contributor.objects.select_for_update().get(pk=contributor.pk)
    bound = Device.objects.filter(contributor=contributor).exclude(pk=device.pk).count()
    if bound >= settings.REWARD_MAX_DEVICES_PER_WALLET:
        raise APIError("too_many_devices", f"The wallet {wallet} has {bound} devices bound, the most allowed "
                       f"({settings.REWARD_MAX_DEVICES_PER_WALLET}): unbind one first.", status=409)
    device.contributor = contributor
    if not device.nonce:
        device.nonce = "0x" + secrets.token_hex(32)
    device.save(update_fields=["contributor", "nonce"])
    PendingBinding.objects.filter(device=device).delete()
    return contributor


def bind(*, bind: Signed, device_signature: str, window: int, ip: str | None = None,
         unbind: Signed | None = None) -> Outcome:
    """Bind `bind.device` to `bind.wallet` on both signatures. A device bound to another wallet
    moves at once with that wallet's `unbind` signature, else after the cooldown (a pending row).
    `window` is how old the Bind may be (the website's person-paced step gets longer than a
    node's own)."""
    bind.device = _address(bind.device, "device")
    bind.wallet = _address(bind.wallet, "wallet")
    refuse_if_banned(bind.wallet, CONTRIBUTE)
    _check_fresh(bind.issued_at, window=window)
    _check_device_signature(bind, device_signature)
    _check_wallet_signature("Bind", bind)
    if unbind is not None:
        unbind.device, unbind.wallet = bind.device, _address(unbind.wallet, "old wallet")
        _check_fresh(unbind.issued_at, window=window)
        _check_wallet_signature("Unbind", unbind)
    with transaction.atomic():
        _use_nonce(bind.nonce)
        device = _locked_device(bind.device)
        current = device.contributor.wallet if device.contributor_id else None
        if current == bind.wallet:
            # The holder binding again keeps the device: a pending move away is cancelled.
            if PendingBinding.objects.filter(device=device).delete()[0]:
                BindingEvent.objects.create(device=device, wallet=bind.wallet, action=BindingEvent.Action.CANCELLED,
                                            via=BindingEvent.Via.SIGNATURES, ip=ip)
            return Outcome("bound", device, bind.wallet)
        if current is None:
            _attach(device, bind.wallet)
            BindingEvent.objects.create(device=device, wallet=bind.wallet, action=BindingEvent.Action.BOUND,
                                        via=BindingEvent.Via.SIGNATURES, ip=ip)
            return Outcome("bound", device, bind.wallet)
        if unbind is not None:
            if unbind.wallet != current:
                raise APIError("not_bound_to_wallet", f"The device is bound to {current}, not {unbind.wallet}: "
                               "the Unbind must be signed by the wallet it is bound to.", status=409)
            _use_nonce(unbind.nonce)
            _attach(device, bind.wallet)
            BindingEvent.objects.create(device=device, wallet=bind.wallet, previous_wallet=current,
                                        action=BindingEvent.Action.REBOUND, via=BindingEvent.Via.OLD_WALLET, ip=ip)
            return Outcome("bound", device, bind.wallet)
        # Without the old wallet: the move waits, and the old wallet sees it coming.
        cap = settings.REWARD_MAX_DEVICES_PER_WALLET
        if Device.objects.filter(contributor__wallet=bind.wallet).count() >= cap:
            raise APIError("too_many_devices", f"The wallet {bind.wallet} has the most devices allowed "
                           f"({settings.REWARD_MAX_DEVICES_PER_WALLET}): unbind one first.", status=409)
        effective_at = timezone.now() + timedelta(seconds=settings.REWARD_REBIND_COOLDOWN)
        PendingBinding.objects.update_or_create(device=device, defaults={"wallet": bind.wallet,
                                                                         "effective_at": effective_at})
        BindingEvent.objects.create(device=device, wallet=bind.wallet, previous_wallet=current,
                                    action=BindingEvent.Action.PENDING, via=BindingEvent.Via.SIGNATURES, ip=ip)
        return Outcome("pending", device, bind.wallet, effective_at)


def unbind(*, device: str, wallet: str, via: str, signed: Signed | None = None, window: int = 0,
           ip: str | None = None) -> Outcome:
    """Unbind a device from `wallet`: on the wallet's Unbind signature (`signed`), or, with
    `via` = session, for the wallet signed in on the website (the caller checked the session).
    A pending rebinding of the device goes too: an unbound device binds afresh."""
    device = _address(device, "device")
    wallet = _address(wallet, "wallet")
    if signed is not None:
        signed.device, signed.wallet = device, wallet
        _check_fresh(signed.issued_at, window=window)
        _check_wallet_signature("Unbind", signed)
    with transaction.atomic():
        if signed is not None:
            _use_nonce(signed.nonce)
        found = (Device.objects.select_for_update(of=("self",)).filter(address=device)
                 .select_related("contributor").first())
        if found is None:
            raise APIError("unknown_device", "No device has this address.", status=404)
        if found.contributor_id is None or found.contributor.wallet != wallet:
            raise APIError("not_bound_to_wallet", f"The device is not bound to {wallet}.", status=409)
        found.contributor = None
        found.save(update_fields=["contributor"])
        PendingBinding.objects.filter(device=found).delete()
        BindingEvent.objects.create(device=found, wallet=wallet, action=BindingEvent.Action.UNBOUND, via=via, ip=ip)
        return Outcome("unbound", found, wallet)


def apply_due_bindings(*, now: datetime | None = None) -> int:
    """Carry out the pending rebindings whose cooldown has passed; one transaction each. A move
    the new wallet's device cap now refuses stays pending (and is tried again)."""
    now = now or timezone.now()
    done = 0
    for pending_id in PendingBinding.objects.filter(effective_at__lte=now).values_list("pk", flat=True):
        with transaction.atomic():
            pending = PendingBinding.objects.filter(pk=pending_id, effective_at__lte=now).first()
            if pending is None:
                continue
            device = Device.objects.select_for_update(of=("self",)).select_related("contributor").get(
                pk=pending.device_id)
            previous = device.contributor.wallet if device.contributor_id else ""
            wallet = pending.wallet
            try:
                with transaction.atomic():
                    _attach(device, wallet)
            except APIError:
                continue
            BindingEvent.objects.create(device=device, wallet=wallet, previous_wallet=previous,
                                        action=BindingEvent.Action.REBOUND, via=BindingEvent.Via.COOLDOWN)
            done += 1
    return done
