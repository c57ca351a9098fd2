"""The wallet-ban pages for moderators: `/moderation/bans` (the active bans, the ban-evasion
evidence, a wallet look-up) and `/moderation/wallets/<address>` (a wallet's bans and evidence,
with the forms to ban and lift). The same checks and actions as the API (bans_api.py, bans.py)."""
from django.shortcuts import redirect, render
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_http_methods, require_safe
from rest_framework.exceptions import ValidationError

from . import bans
from .bans_api import BanRequest, LiftRequest
from .roles import MODERATOR, role_required
from .views import _error_text


@require_safe
@role_required(MODERATOR, "Wallet bans")
def bans_page(request):
    """The active bans, newest first, and the wallets that share a payout, device or network
    with a banned one. `?address=` goes to that wallet's page."""
    error = ""
    if request.GET.get("address"):
        try:
            return redirect(f"/moderation/wallets/{bans.checksummed(request.GET['address'])}")
        except bans.BanRefused as refused:
            error = refused.message
    return render(request, "moderation/bans.html", {
        "bans": bans.active_bans(), "suspects": bans.evasion_suspects(), "error": error,
        "reasons": bans.REASONS, "scope_words": bans.SCOPE_WORDS, "address": request.GET.get("address", ""),
    }, status=400 if error else 200)


@require_http_methods(["GET", "HEAD", "POST"])
@ensure_csrf_cookie
@role_required(MODERATOR, "A wallet")
def wallet_page(request, address):
    """A wallet: its bans (active and lifted), the evidence linking it to a banned wallet or
    others to it; POST `action=ban` (scope, reason, statement, internal_note) or `action=lift`
    (ban, statement)."""
    try:
        address = bans.checksummed(address)
    except bans.BanRefused as refused:
        return render(request, "moderation/wallet.html", {"error": refused.message, "address": address,
                                                          "invalid": True}, status=400)
    error, form, status = "", {}, 200
    if request.method == "POST":
        form = request.POST.dict()
        try:
            if form.get("action") == "lift":
                data = LiftRequest(data={"statement": form.get("statement", "")})
                data.is_valid(raise_exception=True)
                try:
                    ban_id = int(form.get("ban", ""))
                except ValueError:
                    raise bans.BanRefused("invalid", "Choose the ban to lift.", status=400) from None
                bans.lift(ban_id=ban_id, statement=data.validated_data["statement"], moderator=request.user)
            elif form.get("action") == "ban":
                data = BanRequest(data={**{k: form.get(k, "") for k in ("scope", "reason", "statement",
                                                                         "internal_note")}, "address": address})
                data.is_valid(raise_exception=True)
                bans.ban(**data.validated_data, moderator=request.user)
            else:
                raise bans.BanRefused("invalid", "Choose to ban or to lift.", status=400)
        except bans.BanRefused as refused:
            error, status = refused.message, refused.status
        except ValidationError as exc:
            error, status = _error_text(exc), 400
        else:
            return redirect(request.path)
    rows = bans.wallet_bans(address)
    banned_scopes = {b.scope for b in rows if b.active}
    open_scopes = [scope for scope in bans.SCOPES if scope not in banned_scopes]
    chosen = form.get("scope") if form.get("scope") in open_scopes else (open_scopes or [None])[0]
    return render(request, "moderation/wallet.html", {
        "address": address, "bans": rows, "active": [b for b in rows if b.active],
        "lifted": [b for b in rows if not b.active],
        "banned_scopes": banned_scopes, "chosen_scope": chosen, "scopes": bans.SCOPE_WORDS,
        "reasons": bans.REASONS, "suspects": bans.evasion_suspects(banned=address),
        "suspected": bans.wallet_suspected(address), "error": error, "form": form,
        "max_statement": bans.MAX_STATEMENT, "max_note": bans.MAX_NOTE,
    }, status=status)
