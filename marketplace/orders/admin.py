"""The dispute queue in the Django admin (until the moderation console), and read-only pages of
dispute statements and credits: disputed orders by deadline, each with both parties' statements, the buyer's download log and the time left, and a
resolution with the buyer's refund share.

Resolving never waits on the chain. When the operator key holds ARBITER_ROLE the decision is an
operator action for the single sender (`chain.sender`); otherwise the page prepares the
`resolve(orderId, refundBps)` transaction for the arbiter's own wallet. Either way the order's new
state arrives through the chain indexer, and both sides see it on their pages."""
from datetime import timedelta
import json
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.contrib import admin, messages
from django.db import transaction
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from marketplace.chain.client import get_web3, operator_account
from marketplace.chain.contracts import DataMarket
from marketplace.chain.models import OperatorAction
from marketplace.outbox.services import enqueue
from marketplace.web.views import format_usdc

from . import selectors
from .models import CreditEntry, DisputeStatement, Download, Order, StrayTransfer
from .signals import dispute_decided, dispute_deciding

NEAR_DEADLINE = timedelta(days=2)  # a dispute this close to its deadline is flagged


class DisputeFilter(admin.SimpleListFilter):
    title = "disputes"
    parameter_name = "dispute"

    def lookups(self, request, model_admin):
        return [("open", "Disputed, waiting for an arbiter"), ("near", f"Deadline within {NEAR_DEADLINE.days} days"),
                ("expired", "Deadline passed (anyone may refund in full)")]

    def queryset(self, request, queryset):
        now = timezone.now()
        disputed = queryset.filter(status=Order.Status.DISPUTED)
        if self.value() == "open":
            return disputed.filter(dispute_deadline__gt=now).order_by("dispute_deadline")
        if self.value() == "near":
            return disputed.filter(dispute_deadline__gt=now, dispute_deadline__lte=now + NEAR_DEADLINE)
        if self.value() == "expired":
            return disputed.filter(dispute_deadline__lte=now)
        return queryset


def operator_is_arbiter() -> bool:
    """Whether the operator key holds ARBITER_ROLE on the market, as the chain says (as configured
    when the chain cannot be asked)."""
    from marketplace.chain.services import deployed_address

    try:
        operator = operator_account().address
    except Exception:
        return False
    market = deployed_address(settings.CHAIN_ID, "DataMarket")
    try:
        return DataMarket(get_web3(), market).has_role("ARBITER_ROLE", operator)
    except Exception:
        return not settings.CHAIN_ARBITER or settings.CHAIN_ARBITER.lower() == operator.lower()


def parse_refund_share(text: str) -> int:
    """A refund share in percent (0 to 100, at most two decimals) as basis points. ValueError."""
    try:
        percent = Decimal(text.strip().rstrip("%"))
    except (InvalidOperation, AttributeError):
        raise ValueError("Give the buyer's refund share as a percentage, e.g. 100, 50 or 12.5.") from None
    if not percent.is_finite() or not 0 <= percent <= 100 or (percent * 100) != (percent * 100).to_integral_value():
        raise ValueError("The refund share is a percentage from 0 to 100 with at most two decimals.")
    return int(percent * 100)


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    """Chain-derived: read only. The dispute queue is the "Disputed, waiting for an arbiter" filter."""

    list_display = ("order_id", "status", "what", "buyer", "amount_shown", "release_at", "deadline")
    list_filter = (DisputeFilter, "status")
    search_fields = ("buyer", "tx_hash")
    ordering = ("-block_number", "-log_index")
    readonly_fields = ["what", "amount_shown", "deadline", "statements", "download_log", "resolutions",
                       *[field.name for field in Order._meta.fields]]
    actions = ["resolve"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="dataset")
    def what(self, order):
        (_, version), = selectors.with_versions([order])
        return f"{version.dataset.title} v{version.number}" if version else f"listing #{order.listing_id}"

    @admin.display(description="amount")
    def amount_shown(self, order):
        return format_usdc(order.amount)

    @admin.display(description="deadline")
    def deadline(self, order):
        if order.status != Order.Status.DISPUTED or order.dispute_deadline is None:
            return "—"
        left = order.dispute_deadline - timezone.now()
        if left <= timedelta(0):
            return format_html('<strong style="color:#b00">passed {}</strong>', order.dispute_deadline)
        text = f"{left.days} d {left.seconds // 3600} h left"
        if left <= NEAR_DEADLINE:
            return format_html('<strong style="color:#b00">{} (near)</strong>', text)
        return text

    @admin.display(description="statements")
    def statements(self, order):
        rows = selectors.statements([order]).get(selectors.statement_key(order), [])
        if not rows:
            return "Neither party has written a statement."
        return format_html_join("", "<div><strong>{} ({})</strong>, {}:<pre style=\"white-space:pre-wrap\">{}</pre>"
                                "</div>", ((s.get_role_display(), s.author, s.created_at, s.text) for s in rows))

    @admin.display(description="buyer's downloads")
    def download_log(self, order):
        (_, version), = selectors.with_versions([order])
        if version is None:
            return "—"
        rows = Download.objects.filter(buyer=order.buyer, version=version).order_by("-started_at")[:50]
        if not rows:
            return "The buyer has not downloaded the file."
        return format_html("<table><tr><th>started</th><th>status</th><th>range</th><th>bytes</th><th>finished"
                           "</th></tr>{}</table>", format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td>"
                                                                    "<td>{}</td><td>{}</td></tr>",
                                                                    ((d.started_at, d.status, d.range or "whole",
                                                                      f"{d.bytes_served:,} of {version.size:,}",
                                                                      d.finished_at or "cut short") for d in rows)))

    @admin.display(description="resolutions sent")
    def resolutions(self, order):
        actions = OperatorAction.objects.filter(chain_id=order.chain_id, order_id=order.order_id,
                                                kind=OperatorAction.Kind.RESOLVE).order_by("-id")
        if not actions:
            return "—"
        return format_html_join("", "<div>{}: refund {} %, {} {} {}</div>",
                                ((a.created_at, a.payload.get("refund_bps", 0) / 100, a.status, a.tx_hash,
                                  a.error) for a in actions))

    def has_resolve_dispute_permission(self, request):
        return request.user.has_perm("orders.resolve_dispute")

    @admin.action(description="Resolve the dispute (refund share)", permissions=["resolve_dispute"])
    def resolve(self, request, queryset):
        orders = list(queryset[:2])
        if len(orders) != 1:
            self.message_user(request, "Resolve one dispute at a time: select exactly one order.", messages.ERROR)
            return None
        order = orders[0]
        problem = self._unresolvable(order)
        if problem:
            self.message_user(request, problem, messages.ERROR)
            return None
        context = {**self.admin_site.each_context(request), "title": f"Resolve the dispute of order {order.order_id}",
                   "order": order, "what": self.what(order), "amount": format_usdc(order.amount),
                   "deadline": self.deadline(order), "statements": self.statements(order),
                   "download_log": self.download_log(order), "share": request.POST.get("share", ""),
                   "note": request.POST.get("note", ""), "action": "resolve"}
        if not request.POST.get("confirmed"):
            return TemplateResponse(request, "admin/orders/resolve.html", context)
        try:
            refund_bps = parse_refund_share(request.POST.get("share", ""))
        except ValueError as exc:
            return TemplateResponse(request, "admin/orders/resolve.html", {**context, "error": str(exc)})
        if operator_is_arbiter():
            with transaction.atomic():
                locked = Order.objects.select_for_update().get(pk=order.pk)
                problem = self._unresolvable(locked)
                if problem:
                    self.message_user(request, problem, messages.ERROR)
                    return None
                note = request.POST.get("note", "").strip()[:2000]
                action = OperatorAction.objects.create(
                    kind=OperatorAction.Kind.RESOLVE, chain_id=order.chain_id, market=order.market,
                    order_id=order.order_id, payload={"refund_bps": refund_bps}, context={"note": note},
                    created_by=request.user.get_username())
                dispute_decided.send(sender=Order, order=locked, refund_bps=refund_bps, user=request.user, note=note,
                                     via="operator", action=action)
                enqueue("chain.send_operator_actions")
            self.message_user(request, f"Order {order.order_id}: a refund of {refund_bps / 100} % to the buyer is "
                              "queued for the operator sender; the order changes once the chain has it.",
                              messages.SUCCESS)
            return HttpResponseRedirect(request.get_full_path())
        problem = self._unresolvable(Order.objects.get(pk=order.pk))
        if problem:
            self.message_user(request, problem, messages.ERROR)
            return None
        market = DataMarket(get_web3(), order.market)
        prepared = {"from": settings.CHAIN_ARBITER, "to": order.market, "chainId": hex(order.chain_id),
                    "data": market.contract.encode_abi("resolve", args=[int(order.order_id), refund_bps]),
                    "value": "0x0"}
        return TemplateResponse(request, "admin/orders/resolve.html", {
            **context, "prepared": prepared, "prepared_json": json.dumps(prepared, indent=2),
            "refund_bps": refund_bps})

    @staticmethod
    def _unresolvable(order) -> str:
        """Why `order` must not be decided now ("" when it may): as the moderation console refuses,
        a decision that stands there (prepared for the arbiter's wallet, or its resolution pending,
        sent or confirmed) refuses a second one here (`dispute_deciding`)."""
        if order.status != Order.Status.DISPUTED:
            return f"Order {order.order_id} is {order.get_status_display().lower()}, not disputed."
        if order.dispute_deadline and order.dispute_deadline <= timezone.now():
            return (f"The deadline of order {order.order_id} has passed: the market now refunds it in full (the "
                    "keeper sends that).")
        if OperatorAction.objects.filter(chain_id=order.chain_id, order_id=order.order_id,
                                         kind=OperatorAction.Kind.RESOLVE, status__in=OperatorAction.OPEN).exists():
            return f"A resolution of order {order.order_id} is already on its way."
        return next((answer for _, answer in dispute_deciding.send(sender=Order, order=order) if answer), "")


class ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(DisputeStatement)
class DisputeStatementAdmin(ReadOnly):
    """The parties' own words (also shown beside each dispute in the order's page)."""

    list_display = ("order_id", "role", "author", "created_at", "chain_id")
    list_filter = ("role", "chain_id")
    search_fields = ("author", "text")


@admin.register(CreditEntry)
class CreditEntryAdmin(ReadOnly):
    """Credits and withdrawals as the indexer mirrored them."""

    list_display = ("kind", "account", "amount", "token", "order_id", "block_number", "tx_hash")
    list_filter = ("kind", "chain_id")
    search_fields = ("account", "tx_hash")


@admin.register(StrayTransfer)
class StrayTransferAdmin(ReadOnly):
    """Transfers into the market that no order explains, as the indexer attributed them (the
    console's /moderation/returns is where arbiters act on them)."""

    list_display = ("payer", "amount", "token", "kind", "status", "block_number", "tx_hash", "return_tx_hash")
    list_filter = ("kind", "status", "chain_id")
    search_fields = ("payer", "tx_hash", "ref", "return_tx_hash")
