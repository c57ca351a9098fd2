"""The website's step of binding a node: the page the node's link opens (`datamarket-node bind`),
where the signed-in wallet signs the Bind the device signed, or unbinds a device of its own."""
import re
import time

from django.conf import settings
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie
from eth_utils import is_address, to_checksum_address

from .models import Device, PendingBinding

NONCE = re.compile(r"^0x[0-9a-fA-F]{64}$")
SIGNATURE = re.compile(r"^0x[0-9a-fA-F]{130}$")


def _link(request) -> dict | None:
    """The node's signed Bind from the query string, or None when it is not one."""
    q = request.GET
    device, wallet, nonce, issued, sig = (q.get(k, "") for k in ("device", "wallet", "nonce", "issued", "sig"))
    if not (is_address(device) and is_address(wallet) and NONCE.match(nonce) and issued.isascii() and issued.isdigit()
            and SIGNATURE.match(sig)):
        return None
    return {"device": to_checksum_address(device), "wallet": to_checksum_address(wallet), "nonce": nonce,
            "issued_at": int(issued), "device_signature": sig}


@ensure_csrf_cookie
def bind_page(request):
    if not request.user.is_authenticated or not request.user.address:
        return render(request, "web/sign_in_prompt.html", {"page_title": "Binding a node", "audience": "contributors"})
    link = _link(request)
    device_param = request.GET.get("device", "")
    expired = bool(link) and link["issued_at"] < time.time() - settings.REWARD_BIND_WINDOW
    devices = list(Device.objects.filter(contributor__wallet=request.user.address).order_by("created_at"))
    pending = {p.device_id: p for p in PendingBinding.objects.filter(device__in=devices)}
    return render(request, "web/node_bind.html", {
        "link": link,
        "broken_link": bool(request.GET.get("sig")) and link is None,
        "expired": expired,
        "wrong_wallet": bool(link) and link["wallet"] != request.user.address,
        "unbind_device": to_checksum_address(device_param) if request.GET.get("unbind") and is_address(device_param)
        else None,
        "devices": [(d, pending.get(d.pk)) for d in devices],
        "chain_id": settings.CHAIN_ID,
        "max_devices": settings.REWARD_MAX_DEVICES_PER_WALLET,
        "bind_window_minutes": settings.REWARD_BIND_WINDOW // 60,
    })
