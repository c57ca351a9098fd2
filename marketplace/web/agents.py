"""The agent keys page (`/me/agents`): make a key for an AI agent (its secret shown once, with a
copy button), see what each agent spent and bought, revoke a key. Plain forms: it works without
JavaScript; the same rules as the API (accounts.agent_keys). A wallet that is not the user's own
takes two steps: the form comes back with the message for the agent's wallet to sign (and the
commands that sign it) and a field for the signature."""
from datetime import timedelta
from decimal import Decimal, InvalidOperation
import shlex

from django.http import Http404, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.csrf import ensure_csrf_cookie

from marketplace.accounts import agent_keys
from marketplace.catalog.models import CATEGORIES
from marketplace.web.views import TOKEN_DECIMALS, _sign_in_prompt, explorer_link, format_usdc

PURCHASES_SHOWN = 20
DEFAULT_DAYS = 30


class FormError(Exception):
    def __init__(self, field, message):
        super().__init__(message)
        self.field, self.message = field, message


def _usdc(text: str, field: str) -> int:
    """A USDC amount typed by a person ("2.5") in base units."""
    try:
        value = Decimal((text or "").strip())
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite() or value <= 0 or value != value.quantize(Decimal(1).scaleb(-TOKEN_DECIMALS)):
        raise FormError(field, f"Give an amount in USDC above 0, with at most {TOKEN_DECIMALS} decimals.")
    return int(value.scaleb(TOKEN_DECIMALS))


def _terms(post) -> dict:
    """The form's fields as agent_keys.create takes them; FormError for one it cannot read."""
    try:
        days = int(post.get("expires_in_days", ""))
    except ValueError:
        raise FormError("expires_at", "Give the number of days the key lives.") from None
    if days < 1:
        raise FormError("expires_at", "The expiry must be in the future: at least one day.")
    if days > agent_keys.MAX_LIFETIME.days:
        raise FormError("expires_at", f"A key lives at most {agent_keys.MAX_LIFETIME.days} days.")
    return {
        "name": post.get("name", ""),
        "wallet": post.get("wallet", "").strip(),
        "max_per_purchase": _usdc(post.get("max_per_purchase"), "max_per_purchase"),
        "daily_cap": _usdc(post.get("daily_cap"), "daily_cap"),
        "expires_at": timezone.now() + timedelta(days=days),
        "allowed_categories": post.getlist("allowed_categories"),
        "allowed_publishers": [line.strip() for line in post.get("allowed_publishers", "").splitlines() if line.strip()],
    }


def sign_commands(message: str) -> dict:
    """Commands that sign `message` with the agent's key (in AGENT_PRIVATE_KEY, as
    scripts/agent_example.py reads it) where the key is kept: Python with eth_account, and
    Foundry's cast. The message has no quotes or backslashes (agent_keys.challenge_message)."""
    python = ("python - <<'EOF'\n"
              "import os\n"
              "from eth_account import Account\n"
              "from eth_account.messages import encode_defunct\n"
              f'message = """{message}"""\n'
              'signed = Account.sign_message(encode_defunct(text=message), os.environ["AGENT_PRIVATE_KEY"])\n'
              'print("0x" + bytes(signed.signature).hex())\n'
              "EOF")
    cast = f'cast wallet sign --private-key "$AGENT_PRIVATE_KEY" {shlex.quote(message)}'
    return {"python": python, "cast": cast}


def _proof_step(request, terms: dict, nonce: str):
    """The challenge the form shows for the wallet to sign: the one it carried while it is still
    open for this wallet, else a new one."""
    challenge = agent_keys.open_challenge(request.user, terms["wallet"], nonce)
    if challenge is None:
        challenge = agent_keys.issue_challenge(request.user, terms["wallet"], site=request.get_host())
    return {"obj": challenge, **sign_commands(challenge.message)}


def _key_view(key, spending: dict, now) -> dict:
    status = "revoked" if key.revoked_at else ("live" if key.expires_at > now else "expired")
    names = dict(CATEGORIES)
    rows = list(agent_keys.purchases(key)[:PURCHASES_SHOWN])
    return {
        "obj": key, "status": status,
        "max_text": format_usdc(key.max_per_purchase), "cap_text": format_usdc(key.daily_cap),
        "used_text": format_usdc(spending["used"]), "remaining_text": format_usdc(spending["remaining"]),
        "refunded_text": format_usdc(spending["refunded"]), "purchase_count": spending["purchases"],
        "used_share": min(100, round(100 * spending["used"] / int(key.daily_cap))) if int(key.daily_cap) else 0,
        "categories": [names.get(c, c) for c in key.allowed_categories],
        "purchases": [{"obj": s, "amount_text": format_usdc(s.amount), "refunded_text": format_usdc(s.refunded),
                       "tx_url": explorer_link("tx", s.tx_hash)} for s in rows],
    }


@ensure_csrf_cookie
def my_agents(request):
    """GET: the keys and their spending; POST: make a key (the answer shows its secret once)."""
    if request.method not in ("GET", "HEAD", "POST"):
        return HttpResponseNotAllowed(["GET", "POST"])
    if not request.user.is_authenticated:
        return _sign_in_prompt(request, "Your agents", audience="buyers")
    created, proof, errors, form, status = None, None, {}, {}, 200
    if request.method == "POST":
        form = {"name": request.POST.get("name", ""), "wallet": request.POST.get("wallet", ""),
                "max_per_purchase": request.POST.get("max_per_purchase", ""),
                "daily_cap": request.POST.get("daily_cap", ""),
                "expires_in_days": request.POST.get("expires_in_days", ""),
                "allowed_categories": request.POST.getlist("allowed_categories"),
                "allowed_publishers": request.POST.get("allowed_publishers", ""),
                "wallet_signature": request.POST.get("wallet_signature", "").strip()}
        nonce = request.POST.get("nonce", "").strip()
        terms = None
        try:
            terms = agent_keys.checked_terms(**_terms(request.POST))
            if not agent_keys.proof_needed(request.user, terms["wallet"]):  # the session proves it
                created = agent_keys.create(request.user, **terms)
            elif form["wallet_signature"]:
                created = agent_keys.create(request.user, nonce=nonce, wallet_signature=form["wallet_signature"],
                                            **terms)
            else:  # the first step, or the second without the signature
                proof = _proof_step(request, terms, nonce)
                if nonce:
                    errors["proof"] = "Paste the wallet's signature of the message below."
        except FormError as exc:
            errors[exc.field] = exc.message
        except agent_keys.AgentKeyRefused as exc:
            if exc.code in agent_keys.PROOF_REFUSALS:
                errors["proof"] = exc.message
            else:
                errors[exc.field or "form"] = exc.message
        if errors.get("proof") and proof is None and terms is not None:
            try:
                proof = _proof_step(request, terms, nonce)
            except agent_keys.AgentKeyRefused as exc:  # a key made for the wallet meanwhile
                errors[exc.field or "form"] = exc.message
        status = 200 if created or (proof and not errors) else 400
    now = timezone.now()
    keys = list(agent_keys.keys_of(request.user))
    spending = agent_keys.spending(keys, now=now)
    response = render(request, "web/agents.html", {
        "keys": [_key_view(k, spending[k.pk], now) for k in keys],
        "created": created, "proof": proof, "errors": errors, "form": form if not created else {},
        "categories": CATEGORIES, "default_days": DEFAULT_DAYS, "header": agent_keys.HEADER,
        "revoked": request.GET.get("revoked", ""), "released": request.GET.get("released", ""),
    }, status=status)
    if created:
        response["Cache-Control"] = "no-store"  # the secret is in this page, and only in it
    return response


def revoke_agent(request, pk):
    """POST: revoke one of the signed-in user's keys at once."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if not request.user.is_authenticated:
        return _sign_in_prompt(request, "Your agents", audience="buyers")
    key = agent_keys.keys_of(request.user).filter(pk=pk).first()
    if key is None:
        raise Http404("You have no agent key with this id.")
    agent_keys.revoke(key)
    return HttpResponseRedirect(f"/me/agents?revoked={key.pk}#key-{key.pk}")


def release_wallet(request, pk):
    """POST: let the wallet of one of the signed-in user's ended keys pay as anyone again (a live
    key's is refused: revoke it first)."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if not request.user.is_authenticated:
        return _sign_in_prompt(request, "Your agents", audience="buyers")
    key = agent_keys.keys_of(request.user).filter(pk=pk).first()
    if key is None:
        raise Http404("You have no agent key with this id.")
    try:
        agent_keys.release_wallet(key)
    except agent_keys.AgentKeyRefused as exc:
        return HttpResponse(exc.message, status=exc.status, content_type="text/plain; charset=utf-8")
    return HttpResponseRedirect(f"/me/agents?released={key.pk}#key-{key.pk}")
