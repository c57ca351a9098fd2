"""Sign-In with Ethereum (EIP-4361): issue single-use nonces, verify signed messages, bind a
Django session to the checksummed address. Profiles: display name and avatar."""
from datetime import timedelta
import secrets
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth.hashers import make_password
from django.db import transaction
from django.utils import timezone
from eth_utils import to_checksum_address
from eth_account import Account
from eth_account.messages import _hash_eip191_message, encode_defunct
from siwe import SiweMessage

from marketplace.chain.client import get_web3
from marketplace.limits.services import consume

from . import avatars, backends
from .models import Avatar, SignInNonce, User


def wallet_user(address: str, **defaults) -> User:
    """The account of a (checksummed) wallet address, created on first use. Wallet users sign in
    by signature only, so they get no usable password. Two first sign-ins of one wallet at the
    same moment get the same account: get_or_create inserts in a savepoint and, when the other
    insert wins the unique index, reads that row instead."""
    user, _ = User.objects.get_or_create(
        address=address, defaults={"username": address, "password": make_password(None), **defaults})
    return user


class SignInError(Exception):
    """A sign-in attempt that must be refused; `code` is stable, `message` is for people."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


SESSION_NONCES = "siwe_nonces"
SESSION_NONCES_KEPT = 5  # a few sign-ins started in other tabs of the same browser stay usable


def issue_nonce(request) -> SignInNonce:
    """A new single-use nonce, bound to the request's browser session: only
    a sign-in from that same session can use it, so no other site can sign a visitor in to an
    account of its choosing (login CSRF) with a message it had signed itself."""
    now = timezone.now()
    nonce = SignInNonce.objects.create(
        nonce=secrets.token_hex(16), expires_at=now + timedelta(seconds=settings.SIWE_NONCE_TTL)
    )
    issued = [n for n in request.session.get(SESSION_NONCES, []) if isinstance(n, str)]
    request.session[SESSION_NONCES] = [*issued, nonce.nonce][-SESSION_NONCES_KEPT:]
    return nonce


# An expired nonce is kept this long, so that a late sign-in is told it expired, not that it is unknown.
EXPIRED_NONCE_KEPT = timedelta(hours=1)


def delete_expired_nonces() -> int:
    """Delete nonces that expired a while ago (run by beat; they can never be used again)."""
    deleted, _ = SignInNonce.objects.filter(expires_at__lt=timezone.now() - EXPIRED_NONCE_KEPT).delete()
    return deleted


SIGN_IN_STATEMENT = "Sign in to Datamarket."


def sign_in_message(request, *, address: str, nonce: SignInNonce) -> str:
    """The EIP-4361 message a wallet signs to sign in here (for clients that do not build it)."""
    return SiweMessage(
        domain=request.get_host(),
        address=to_checksum_address(address),
        statement=SIGN_IN_STATEMENT,
        uri=request.build_absolute_uri("/").rstrip("/"),
        version="1",
        chain_id=settings.CHAIN_ID,
        nonce=nonce.nonce,
        issued_at=nonce.created_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z",
        expiration_time=nonce.expires_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z",
    ).prepare_message()


def _origin(uri):
    parts = urlsplit(uri)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


EIP1271_ABI = [{
    "name": "isValidSignature", "type": "function", "stateMutability": "view",
    "inputs": [{"name": "hash", "type": "bytes32"}, {"name": "signature", "type": "bytes"}],
    "outputs": [{"name": "", "type": "bytes4"}],
}]
EIP1271_MAGIC_VALUE = bytes.fromhex("1626ba7e")


class ChainUnreachable(Exception):
    """The chain could not be asked whether a contract wallet accepts a signature."""


def signed_by(address: str, signable, raw: bytes) -> bool:
    """Whether `signable` (eth_account's SignableMessage: EIP-191 text or EIP-712 data) is signed
    by `address`: an ECDSA signature from a key, or, for a contract wallet, whatever its EIP-1271
    isValidSignature accepts (signatures of any length). Raises ChainUnreachable."""
    if len(raw) == 65:
        try:
            if Account.recover_message(signable, signature=raw) == address:
                return True
        except Exception:  # not a valid ECDSA signature: maybe a contract wallet's
            pass
    w3 = get_web3()
    try:
        code = w3.eth.get_code(address)
    except Exception:
        raise ChainUnreachable from None
    if not code:
        return False
    try:
        contract = w3.eth.contract(address=address, abi=EIP1271_ABI)
        return contract.functions.isValidSignature(_hash_eip191_message(signable), raw).call() == EIP1271_MAGIC_VALUE
    except Exception:
        return False


def signature_is_valid(address: str, message: str, signature: str) -> bool:
    """An EIP-191 signature of `message` by `address` (see signed_by).

    (The siwe package's own check rejects signatures longer than 65 bytes before it asks the
    contract, so it is not used for this.)"""
    try:
        return signed_by(address, encode_defunct(text=message), bytes.fromhex(signature.removeprefix("0x")))
    except ChainUnreachable:
        raise SignInError(
            "chain_unavailable", "The chain cannot be reached to check this wallet's signature; try again soon."
        ) from None


def sign_in(request, *, message: str, signature: str) -> User:
    """Verify a signed SIWE message for this site and log the request's session in."""
    try:
        parsed = SiweMessage.from_message(message)
    except Exception:
        raise SignInError("malformed_message", "This is not a valid Sign-In with Ethereum message.") from None
    expected_domain = request.get_host()
    if parsed.domain != expected_domain:
        raise SignInError("wrong_domain", f"The message is for {parsed.domain}, not {expected_domain}.")
    if _origin(parsed.uri) != _origin(request.build_absolute_uri("/")):
        raise SignInError("wrong_uri", f"The message's URI {parsed.uri} is not this site.")
    if parsed.chain_id != settings.CHAIN_ID:
        raise SignInError("wrong_chain", f"Sign in on chain {settings.CHAIN_ID}, not chain {parsed.chain_id}.")
    with transaction.atomic():
        # A 402's sign-in-with-x nonce (one naming a resource) signs in to that resource only.
        nonce = SignInNonce.objects.select_for_update().filter(nonce=parsed.nonce, resource="").first()
        if nonce is None:
            raise SignInError("unknown_nonce", "This sign-in request was not issued by this site; start again.")
        if parsed.nonce not in request.session.get(SESSION_NONCES, []):
            raise SignInError("nonce_not_from_this_session", "This sign-in request was not started in this browser "
                              "session (its cookies were lost, or another site started it); start again.")
        if nonce.used_at is not None:
            raise SignInError("nonce_used", "This sign-in request was already used; start again.")
        if nonce.expires_at <= timezone.now():
            raise SignInError("nonce_expired", "This sign-in request expired; start again.")
        now = timezone.now()
        if parsed.expiration_time is not None and now >= parsed.expiration_time._datetime:
            raise SignInError("message_expired", "The signed message has expired; start again.")
        if parsed.not_before is not None and now < parsed.not_before._datetime:
            raise SignInError("message_not_yet_valid", "The signed message is not valid yet.")
        address = to_checksum_address(parsed.address)
        if not signature_is_valid(address, message, signature):
            raise SignInError("bad_signature", "The signature does not match the message's address.")
        # Nonces count per wallet here, when used: only the wallet's own signature spends its allowance.
        consume("nonce", wallet=address.lower())
        nonce.used_at = now
        nonce.save(update_fields=["used_at"])
        user = wallet_user(address)
        if not user.is_active:
            raise SignInError("account_disabled", "This account is disabled.")
        login(request, user, backend=backends.PATH)
    return user


# Profiles ----------------------------------------------------------------------------------------


def update_profile(user: User, *, display_name: str | None = None) -> User:
    """Change what is given (a PATCH); nothing given changes nothing."""
    if display_name is not None:
        user.display_name = display_name.strip()
        user.save(update_fields=["display_name"])
    return user


def set_avatar(user: User, upload: bytes) -> User:
    """Replace `user`'s avatar with `upload`, re-encoded (raises avatars.AvatarRejected)."""
    image = avatars.normalise(upload)
    digest = avatars.digest(image)
    with transaction.atomic():
        Avatar.objects.update_or_create(user=user, defaults={"image": image, "digest": digest,
                                                             "content_type": avatars.CONTENT_TYPE})
        user.avatar_digest = digest
        user.save(update_fields=["avatar_digest"])
    return user


def remove_avatar(user: User) -> User:
    """Back to the generated placeholder (nothing to do when there is no avatar)."""
    with transaction.atomic():
        Avatar.objects.filter(user=user).delete()
        user.avatar_digest = ""
        user.save(update_fields=["avatar_digest"])
    return user
