"""Moderation API for disputes and stray transfers (arbiters), contributor abuse (moderators) and failed operator
actions (moderators; arbiters for resolutions). The services are disputes.py, abuse.py and
operator_actions.py; these views parse input and shape answers."""
from django.conf import settings
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace.accounts.roles import ARBITER, IsArbiter, IsModerator, has_role
from marketplace.api import APIError, refusal, StrictRegexField, StrictTextField, errors
from marketplace.catalog.api import iso_time
from marketplace.chain.models import OperatorAction
from marketplace.chain.retry import RetryRefused
from marketplace.orders import strays
from marketplace.orders.models import StrayTransfer
from marketplace.orders.admin import parse_refund_share
from marketplace.rewards.models import Flag

from . import abuse, disputes, operator_actions
from .api import Params, before_field
from .bans_api import _address


class IsModeratorOrArbiter(IsModerator):
    """Either role (the failed actions' list): anonymous 401, neither role 403."""

    def has_permission(self, request, view):
        if request.user and request.user.is_authenticated and has_role(request.user, ARBITER):
            return True
        return super().has_permission(request, view)


def _time(value):
    return iso_time(value) if value else None


def _order_id(value: int) -> int:
    if value > disputes.MAX_ORDER_ID:
        raise APIError("not_found", f"No order {value} on this chain's market.", status=404)
    return value




# Disputes ---------------------------------------------------------------------------------------


def dispute_row(row: dict) -> dict:
    order, version, deadline = row["order"], row["version"], row["deadline"]
    return {
        "order_id": str(int(order.order_id)), "listing_id": str(int(order.listing_id)), "buyer": order.buyer,
        "amount": str(int(order.amount)), "token": order.token,
        "dataset": version.dataset.slug if version else None, "version": version.number if version else None,
        "deadline": _time(deadline["at"]), "near_deadline": deadline["near"], "deadline_passed": deadline["passed"],
        "decision": row["state"] or None,
    }


DisputeRow = inline_serializer("DisputeRow", {
    "order_id": serializers.CharField(), "listing_id": serializers.CharField(), "buyer": serializers.CharField(),
    "amount": serializers.CharField(help_text="Token base units"), "token": serializers.CharField(),
    "dataset": serializers.CharField(allow_null=True), "version": serializers.IntegerField(allow_null=True),
    "deadline": serializers.DateTimeField(), "near_deadline": serializers.BooleanField(
        help_text="The deadline is within MODERATION_DISPUTE_NEAR_HOURS"),
    "deadline_passed": serializers.BooleanField(),
    "decision": serializers.CharField(allow_null=True, help_text="null (none yet), prepared (for the arbiter's "
                                      "wallet), or its operator action's status"),
})


class DisputesView(APIView):
    """GET `/moderation/disputes`: disputed orders of the current market, deadline first."""

    permission_classes = [IsArbiter]

    @extend_schema(operation_id="moderation_disputes_list", responses={200: inline_serializer("DisputeList", {
        "results": serializers.ListField(child=DisputeRow)}), **errors(401, 403)})
    def get(self, request):
        return Response({"results": [dispute_row(row) for row in disputes.open_disputes()]})


def action_body(action: OperatorAction) -> dict:
    return {"id": action.pk, "kind": action.kind, "status": action.status, "tx_hash": action.tx_hash,
            "error": action.error, "order_id": str(int(action.order_id)) if action.order_id is not None else None,
            "listing_id": str(int(action.listing_id)) if action.listing_id is not None else None,
            "payload": action.payload, "created_by": action.created_by, "created_at": _time(action.created_at),
            "updated_at": _time(action.updated_at), "retry_of": (action.context or {}).get("retry_of"),
            "retried_as": (action.context or {}).get("retried_as")}


class DisputeView(APIView):
    """GET `/moderation/disputes/<order_id>`: one order with both statements, its history on-chain,
    the buyer's download log, the deadline and the decisions taken."""

    permission_classes = [IsArbiter]

    @extend_schema(responses={200: inline_serializer("Dispute", {
        "order": DisputeRow, "status": serializers.CharField(), "seller": serializers.CharField(),
        "statements": serializers.ListField(child=serializers.DictField()),
        "history": serializers.ListField(child=serializers.DictField()),
        "downloads": serializers.ListField(child=serializers.DictField()),
        "actions": serializers.ListField(child=serializers.DictField()),
        "decisions": serializers.ListField(child=serializers.DictField()),
        "prepared": serializers.DictField(allow_null=True, help_text="The resolve transaction for the arbiter's "
                                          "wallet, while a decision waits for it"),
    }), **errors(401, 403, 404)})
    def get(self, request, order_id):
        page = disputes.dispute_page(_order_id(order_id))
        if page is None:
            raise APIError("not_found", f"No order {order_id} on this chain's market.", status=404)
        order = page["order"]
        return Response({
            "order": dispute_row({**page, "state": page["state"]}), "status": order.status, "seller": page["seller"],
            "statements": [{"role": s.role, "author": s.author, "text": s.text, "created_at": _time(s.created_at)}
                           for s in page["statements"]],
            "history": [{"name": e.name, "block": e.block_number, "tx_hash": e.tx_hash, "args": e.args}
                        for e in page["history"]],
            "downloads": [{"started_at": _time(d.started_at), "status": d.status, "range": d.range,
                           "bytes": d.bytes_served, "finished_at": _time(d.finished_at)} for d in page["downloads"]],
            "actions": [action_body(a) for a in page["actions"]],
            "decisions": [{"entry": d["id"], "created_at": _time(d["created_at"]), "arbiter": d["actor"],
                           "statement": d["statement"], "note": d["internal_note"], **d["details"]}
                          for d in page["decisions"]],
            "prepared": page["prepared"],
        })


class ResolveRequest(serializers.Serializer):
    refund_bps = serializers.IntegerField(required=False, min_value=0, max_value=disputes.MAX_BPS,
                                          help_text="The buyer's share in basis points, 0 to 10000 (or refund_percent)")
    refund_percent = StrictRegexField(r"^(?:100(?:\.0{1,2})?|[0-9]{1,2}(?:\.[0-9]{1,2})?)$", required=False,
                                      help_text='The buyer\'s share in percent, "0" to "100", two decimals at most')
    statement = StrictTextField(required=False, allow_blank=True, max_length=disputes.STATEMENT_MAX,
                                help_text="The reasons both parties read")
    note = StrictTextField(required=False, allow_blank=True, max_length=disputes.STATEMENT_MAX,
                           help_text="For the record, moderators only")

    def validate_refund_bps(self, value):
        raw = self.initial_data.get("refund_bps")
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise serializers.ValidationError("A whole number of basis points, 0 to 10000.")
        return value

    def validate_refund_percent(self, value):
        try:
            return parse_refund_share(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate(self, data):
        if ("refund_bps" in data) == ("refund_percent" in data):
            raise serializers.ValidationError({"refund_bps": ["Give the share once: refund_bps or refund_percent."]})
        data["share"] = data.pop("refund_bps", None) if "refund_bps" in data else data.pop("refund_percent")
        return data


class ResolveView(APIView):
    """POST `/moderation/disputes/<order_id>/resolve`: decide the dispute with the buyer's refund
    share. Sent by the operator sender when the operator key is the arbiter (`via: operator`,
    with its action), else prepared for the arbiter's wallet (`via: wallet`, with `prepared`)."""

    permission_classes = [IsArbiter]

    @extend_schema(request=ResolveRequest, responses={202: inline_serializer("Resolution", {
        "order_id": serializers.CharField(), "refund_bps": serializers.IntegerField(),
        "via": serializers.CharField(help_text="operator or wallet"), "entry": serializers.IntegerField(),
        "action": serializers.DictField(allow_null=True), "prepared": serializers.DictField(allow_null=True),
    }), **errors(400, 401, 403, 404, 409)})
    def post(self, request, order_id):
        data = ResolveRequest(data=request.data)
        data.is_valid(raise_exception=True)
        body = data.validated_data
        try:
            decision = disputes.resolve(order_id=_order_id(order_id), refund_bps=body["share"], arbiter=request.user,
                                        statement=body.get("statement", "").strip(), note=body.get("note", "").strip())
        except disputes.Refused as exc:
            raise refusal(exc) from None
        return Response({"order_id": str(int(decision.order.order_id)), "refund_bps": decision.refund_bps,
                         "via": decision.via, "entry": decision.entry.pk,
                         "action": action_body(decision.action) if decision.action else None,
                         "prepared": decision.prepared}, status=202)


# Money that reached the market without an order ------------------------------------------------


def stray_row(row) -> dict:
    return {"token": row.token, "payer": row.payer, "amount": str(int(row.amount)), "kind": row.kind,
            "status": row.status, "tx_hash": row.tx_hash, "log_index": row.log_index, "block_number": row.block_number,
            "ref": row.ref, "return_tx_hash": row.return_tx_hash, "error": row.error,
            "action": row.action_id}


class ReturnsParams(Params):
    payer = StrictRegexField(r"^0x[0-9a-fA-F]{40}$", required=False, help_text="One wallet's transfers only")
    kind = serializers.ChoiceField(choices=StrayTransfer.Kind.choices, required=False,
                                   help_text="authorization (pushed authorizations) or plain (other transfers)")

    def validate_payer(self, value):
        return _address(value)


class ReturnsView(APIView):
    """GET `/moderation/returns`: transfers into the market that no order explains. `waiting`:
    pushed authorizations to return from the arbiter's wallet (the operator key is not the arbiter),
    with `prepared`, the one `returnSurplusBatch` transaction that returns them; `review`: plain
    transfers, and returns that failed; `recent`: the latest returned, being returned or dust.
    `payer` keeps one wallet's transfers (and prepares only its returns), `kind` one kind."""

    permission_classes = [IsArbiter]

    @extend_schema(operation_id="moderation_returns_list", parameters=[ReturnsParams], responses={200: inline_serializer("StrayTransfers", {
        "waiting": serializers.ListField(child=serializers.DictField()),
        "prepared": serializers.DictField(allow_null=True, help_text="returnSurplusBatch for the arbiter's wallet"),
        "review": serializers.ListField(child=serializers.DictField()),
        "recent": serializers.ListField(child=serializers.DictField())}), **errors(400, 401, 403)})
    def get(self, request):
        p = ReturnsParams.read(request.query_params.dict())
        page = strays.for_arbiter(settings.CHAIN_ID, payer=p.get("payer"), kind=p.get("kind"))
        return Response({"waiting": [stray_row(r) for r in page["waiting"]], "prepared": page["prepared"],
                         "review": [stray_row(r) for r in page["review"]],
                         "recent": [stray_row(r) for r in page["recent"]]})


# Contributor abuse ------------------------------------------------------------------------------


def flag_body(row: dict) -> dict:
    flag = row["flag"]
    device = flag.device
    return {"id": flag.pk, "kind": flag.kind, "label": flag.get_kind_display(), "wallet": flag.wallet,
            "status": flag.status, "evidence": flag.evidence, "held": str(row["held"]),
            "quality_penalty_bps": flag.quality_penalty_bps, "confirmed_before": row["confirmed_before"],
            "device": None if device is None else {"address": device.address, "name": device.name,
                                                   "quality_bps": device.quality_bps,
                                                   "last_seen_at": _time(device.last_seen_at)},
            "created_at": _time(flag.created_at)}


class FlagParams(Params):
    kind = serializers.ChoiceField(choices=Flag.Kind.choices, required=False)


class FlagsView(APIView):
    """GET `/moderation/flags`: open contributor flags, oldest first, with their evidence and the
    amounts they hold (base units)."""

    permission_classes = [IsModerator]

    @extend_schema(operation_id="moderation_flags_list", parameters=[FlagParams], responses={200: inline_serializer("FlagList", {
        "results": serializers.ListField(child=serializers.DictField())}), **errors(400, 401, 403)})
    def get(self, request):
        p = FlagParams.read(request.query_params.dict())
        return Response({"results": [flag_body(row) for row in abuse.open_flags(kind=p.get("kind", ""))]})


class DecideFlagRequest(serializers.Serializer):
    decision = serializers.ChoiceField(choices=abuse.DECISION_CODES, help_text="clear: the held amounts are paid "
                                       "next epoch; confirm: they return to the pool")
    note = StrictTextField(required=False, allow_blank=True, max_length=abuse.NOTE_MAX,
                           help_text="Kept with the flag and in the audit entry (moderators only)")


class DecideFlagView(APIView):
    """POST `/moderation/flags/<id>/decide`: clear or confirm an open flag (409 once decided)."""

    permission_classes = [IsModerator]

    @extend_schema(request=DecideFlagRequest, responses={200: inline_serializer("DecidedFlag", {
        "id": serializers.IntegerField(), "status": serializers.CharField(),
        "decided_by": serializers.CharField()}), **errors(400, 401, 403, 404, 409)})
    def post(self, request, pk):
        data = DecideFlagRequest(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            flag = abuse.decide(flag_id=pk, decision=data.validated_data["decision"], by=request.user,
                                note=data.validated_data.get("note", ""))
        except abuse.Refused as exc:
            raise refusal(exc) from None
        return Response({"id": flag.pk, "status": flag.status, "decided_by": flag.decided_by})


# Failed operator actions ------------------------------------------------------------------------


class ActionParams(Params):
    kind = serializers.ChoiceField(choices=OperatorAction.Kind.choices, required=False)
    before = before_field()


class FailedActionsView(APIView):
    """GET `/moderation/actions`: failed and cancelled operator actions, newest first, 50 a page,
    with the reason and whether the signed-in person may retry each."""

    permission_classes = [IsModeratorOrArbiter]

    @extend_schema(operation_id="moderation_actions_list", parameters=[ActionParams], responses={200: inline_serializer("FailedActions", {
        "results": serializers.ListField(child=serializers.DictField()),
        "next_before": serializers.IntegerField(allow_null=True)}), **errors(400, 401, 403)})
    def get(self, request):
        p = ActionParams.read(request.query_params.dict())
        rows = operator_actions.failed_actions(before=p.get("before"), kind=p.get("kind", ""))
        return Response({"results": [{**action_body(a), "may_retry": operator_actions.may_retry(request.user, a)}
                                     for a in rows],
                         "next_before": rows[-1].pk if len(rows) == operator_actions.PAGE else None})


class RetryActionView(APIView):
    """POST `/moderation/actions/<id>/retry`: queue a failed or cancelled action again (a fresh
    action; refused with 409 when it could be sent twice or is no longer needed)."""

    permission_classes = [IsModeratorOrArbiter]

    @extend_schema(request=None, responses={202: inline_serializer("RetriedAction", {
        "action": serializers.DictField()}), **errors(401, 403, 404, 409, 503)})
    def post(self, request, pk):
        try:
            new = operator_actions.retry(action_id=pk, by=request.user)
        except RetryRefused as exc:
            raise refusal(exc) from None
        return Response({"action": action_body(new)}, status=202)

