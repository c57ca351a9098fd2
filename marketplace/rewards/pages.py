"""The contributor's dashboard (`/me/rewards`), its earnings export and settings, and the public
network page (`/rewards`): server-rendered, working without JavaScript except the claim, which
the wallet sends (static/rewards.js)."""
import csv

from django.conf import settings
from django.http import HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.csrf import ensure_csrf_cookie

from marketplace.web.views import explorer_link, format_usdc

from . import dashboard, selectors
from .models import Contributor, Epoch
from .scoring import Weights


def _wallet(request) -> str:
    user = request.user
    return (user.address or "") if user.is_authenticated else ""


def _contributor(wallet: str, *, create: bool = False) -> Contributor | None:
    if create:
        return Contributor.objects.get_or_create(wallet=wallet)[0]
    return Contributor.objects.filter(wallet=wallet).first()


def _bars(values: list[int], *, height: int = 120) -> list[int]:  # the chart's bars, in SVG units
    """Bar heights in pixels for a chart of `values` (the largest fills it)."""
    top = max(values, default=0)
    return [round(v * height / top) if top else 0 for v in values]


@ensure_csrf_cookie
def my_rewards(request):
    """Devices and their state, uptime and points over time, epochs with amounts and held amounts,
    what can be claimed now (with its proof and the claim button), referrals, settings."""
    wallet = _wallet(request)
    if not wallet:
        return render(request, "web/sign_in_prompt.html", {"page_title": "Your rewards", "audience": "contributors"})
    contributor = _contributor(wallet)
    days = dashboard.uptime_days(wallet)
    points = dashboard.points_by_epoch(wallet)
    claim = selectors.proof(wallet)
    epochs = selectors.wallet_epochs(wallet, limit=50)
    referral_link = None
    if contributor is not None:
        referral_link = request.build_absolute_uri(f"/rewards?ref={contributor.referral_code}")
    return render(request, "web/rewards.html", {
        "wallet": wallet,
        "contributor": contributor,
        "devices": dashboard.devices(wallet),
        "today": dashboard.today_figures(wallet),
        "days": [{**d, "bar": b, "label": d["day"].isoformat(), "short": d["day"].strftime("%d")}
                 for d, b in zip(days, _bars([d["slots"] for d in days]))],
        "points": [{**p, "bar": b, "label": f"epoch {p['epoch']}", "short": p["epoch"]}
                   for p, b in zip(points, _bars([p["points"] for p in points]))],
        "epochs": [{**e, **{k + "_text": format_usdc(e[k]) for k in ("amount", "revenue", "released", "held")},
                    "cumulative_text": format_usdc(e["cumulative"]) if e["cumulative"] is not None else "—"}
                   for e in epochs],
        "claim": claim,
        "claim_texts": {k: format_usdc(claim[k]) for k in ("cumulative", "claimed", "claimable")},
        "held_total": format_usdc(selectors.held_total(wallet)),
        "referral_link": referral_link,
        "referrals": dashboard.referrals(contributor),
        "ref_code": request.GET.get("ref", ""),
        "weights": Weights.from_settings().as_dict(),
        "slot_seconds": settings.REWARD_SLOT_SECONDS,
        "distributor_url": explorer_link("address", claim["distributor"]) if claim["distributor"] else None,
        "error": request.session.pop("rewards_error", ""),
        "saved": request.GET.get("saved", "") in ("referral", "settings"),
    })


def my_rewards_settings(request):
    """POST: the leaderboard opt-out, or the referral code of who referred this wallet."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    wallet = _wallet(request)
    if not wallet:
        return HttpResponse("Sign in with your wallet first.", status=401, content_type="text/plain")
    contributor = _contributor(wallet, create=True)
    if "ref" in request.POST:
        try:
            dashboard.set_referrer(contributor, request.POST["ref"][:40])
        except dashboard.ReferralRefused as refused:
            request.session["rewards_error"] = str(refused)  # shown once, never from the URL
            return HttpResponseRedirect("/me/rewards#referrals")
        return HttpResponseRedirect("/me/rewards?saved=referral#referrals")
    contributor.leaderboard_opt_out = request.POST.get("leaderboard_opt_out") == "on"
    contributor.save(update_fields=["leaderboard_opt_out"])
    return HttpResponseRedirect("/me/rewards?saved=settings#settings")


EARNINGS_COLUMNS = ("epoch", "starts_at", "ends_at", "state", "uptime_slots", "job_points", "points",
                    "referral_points", "amount", "revenue", "released", "held", "cumulative")


def my_earnings_csv(request):
    """Every epoch the wallet earned in, one row each; amounts in the token's base units (6
    decimals: 1500000 is 1.5 USDC), points x 10,000 as the close counts them."""
    wallet = _wallet(request)
    if not wallet:
        return HttpResponse("Sign in with your wallet first.", status=401, content_type="text/plain")
    windows = {e.number: e for e in Epoch.objects.filter(amounts__wallet=wallet)}
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%d")
    response["Content-Disposition"] = f'attachment; filename="rewards-{wallet}-{stamp}.csv"'
    writer = csv.writer(response)
    writer.writerow(EARNINGS_COLUMNS)
    for row in selectors.wallet_epochs(wallet, limit=100_000):
        epoch = windows[row["epoch"]]
        writer.writerow([row["epoch"], epoch.starts_at.isoformat(), epoch.ends_at.isoformat(), row["state"],
                         row["uptime_slots"], row["job_points"], row["points"], row["referral_points"],
                         row["amount"], row["revenue"], row["released"], row["held"], row["cumulative"] or ""])
    return response


def network_page(request):
    """The public leaderboard and the network's figures; a referral link lands here too."""
    figures = dashboard.network()
    board = dashboard.leaderboard()
    return render(request, "web/network.html", {
        "figures": figures,
        "leaderboard": [{**r, "earned_text": format_usdc(r["earned"])} for r in board],
        "current_pool": format_usdc(figures["last_epoch"].pool) if figures["last_epoch"] else "0",
        "ref_code": request.GET.get("ref", "")[:40],
        "weights": Weights.from_settings().as_dict(),
        "epoch_minutes": settings.REWARD_EPOCH_SECONDS // 60,
        "signed_in": bool(_wallet(request)),
    })
