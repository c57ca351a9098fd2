"""The download API: a token for a bought version, from a signed-in session or a signed request."""
from django.conf import settings
from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, inline_serializer
from eth_utils import is_address
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace.api import APIError, ConfirmationsWaiting, StrictRegexField, StrictTextField, errors
from marketplace.catalog import revisions
from marketplace.catalog.api import IsSignedIn
from marketplace.catalog.models import DatasetVersion
from marketplace.chain.browser import chain_name, wallet_abi
from marketplace.chain.models import OperatorAction
from marketplace.chain.nudge import NodeDown, NotMined, catch_up
from marketplace.chain.services import deployed_address
from marketplace.limits.http import RateLimited, enforce
from marketplace.limits.services import LimitExceeded, consume

from . import delivery, relay, selectors, services, signed, strays
from .models import DisputeStatement, Order, StrayTransfer


class DownloadRequest(serializers.Serializer):
    """Empty for the signed-in wallet; a script sends the signed request instead."""

    buyer = StrictRegexField(r"^0x[0-9a-fA-F]{40}$", required=False, help_text="The wallet that bought the version")
    expiry = serializers.IntegerField(required=False, min_value=0, help_text="Unix seconds, at most 600 ahead")
    nonce = StrictRegexField(r"^0x[0-9a-fA-F]{64}$", required=False, help_text="32 random bytes, used once")
    signature = StrictRegexField(r"^0x(?:[0-9a-fA-F]{2})+$", required=False,
                                 help_text="EIP-712 signature of DownloadRequest (see docs/delivery.md)")

    def validate(self, data):
        given = {k for k in ("buyer", "expiry", "nonce", "signature") if k in data}
        if given and given != {"buyer", "expiry", "nonce", "signature"}:
            missing = sorted({"buyer", "expiry", "nonce", "signature"} - given)
            raise serializers.ValidationError({name: "Required in a signed request." for name in missing})
        if "buyer" in data and not is_address(data["buyer"]):
            raise serializers.ValidationError({"buyer": "Not an address."})
        return data


DownloadGranted = inline_serializer("DownloadGranted", {
    "url": serializers.CharField(help_text="GET it (Range supported) until expires_at"),
    "expires_at": serializers.DateTimeField(),
    "size": serializers.IntegerField(help_text="Bytes"),
    "sha256": serializers.CharField(help_text="The file's sha256, hex: the content hash listed on-chain"),
})


class VersionDownloadView(APIView):
    """Exchange proof of purchase for a download link valid 10 minutes."""

    @extend_schema(request=DownloadRequest, responses={201: DownloadGranted, **errors(400, 401, 403, 404, 409, 429, 451, 503)})
    def post(self, request, slug, number):
        data = DownloadRequest(data=request.data or {})
        data.is_valid(raise_exception=True)
        body = data.validated_data
        version = get_object_or_404(DatasetVersion.objects.select_related("dataset"), dataset__slug=slug, number=number)
        try:
            if "signature" in body:
                market = deployed_address(settings.CHAIN_ID, "DataMarket")
                if market is None:
                    raise APIError("chain_unavailable", "The market is not deployed on this chain yet.", status=503)
                enforce(request, "download")
                buyer = signed.verify(market=market, buyer=body["buyer"], content_hash=version.content_hash,
                                      expiry=body["expiry"], nonce=body["nonce"], signature=body["signature"])
                try:
                    consume("download", wallet=buyer.lower())
                except LimitExceeded as exceeded:
                    raise RateLimited(exceeded) from None
                via = "signature"
            elif request.user.is_authenticated and request.user.address:
                enforce(request, "download")
                buyer, via = request.user.address, "session"
            else:
                raise APIError("not_signed_in", "Sign in with the wallet that bought this version, or send a "
                               "request signed by it.", status=401)
            granted = delivery.grant(buyer, version, via=via)
        except delivery.DeliveryError as exc:
            if exc.code == "not_bought" and not revisions.is_public(version):
                raise Http404 from None  # a version nobody bought and the public cannot see: not found
            raise APIError(exc.code, exc.message, status=exc.status) from None
        return Response({
            "url": f"/downloads/{granted.token}", "expires_at": granted.grant.expires_at, "size": version.size,
            "sha256": version.content_hash.removeprefix("0x"),
        }, status=201)


class OrderSerializer(serializers.Serializer):
    chain_id = serializers.IntegerField()
    order_id = serializers.CharField(help_text="The DataMarket order id, as a decimal string")
    listing_id = serializers.CharField()
    status = serializers.ChoiceField(choices=[s for s, _ in Order.Status.choices])
    buyer = serializers.CharField()
    token = serializers.CharField()
    amount = serializers.CharField(help_text="Token base units, as a decimal string")
    refund = serializers.CharField(help_text="Refunded to the buyer, in base units")
    owner_amount = serializers.CharField(help_text="Paid to the owner's payout address, in base units")
    fee = serializers.CharField(help_text="Paid to the treasury, in base units")
    release_at = serializers.DateTimeField(help_text="The end of the dispute window")
    dispute_deadline = serializers.DateTimeField(allow_null=True)
    tx_hash = serializers.CharField()
    block_number = serializers.IntegerField()
    settled_tx_hash = serializers.CharField(
        help_text="The transaction of its latest change (empty: none yet)")
    dataset = serializers.CharField(allow_null=True, help_text="The dataset's slug (null: a listing not linked here)")
    title = serializers.CharField(allow_null=True)
    version = serializers.IntegerField(allow_null=True)
    can_download = serializers.BooleanField()


def order_body(order, version) -> dict:
    return {
        "chain_id": order.chain_id, "order_id": str(order.order_id), "listing_id": str(order.listing_id),
        "status": order.status, "buyer": order.buyer, "token": order.token, "amount": str(order.amount),
        "refund": str(order.refund), "owner_amount": str(order.owner_amount), "fee": str(order.fee),
        "release_at": order.release_at, "dispute_deadline": order.dispute_deadline, "tx_hash": order.tx_hash,
        "block_number": order.block_number, "settled_tx_hash": order.settled_tx_hash,
        "dataset": version.dataset.slug if version else None, "title": version.dataset.title if version else None,
        "version": version.number if version else None,
        "can_download": version is not None and order.status != Order.Status.REFUNDED,
    }


class LibraryView(APIView):
    """The signed-in wallet's purchases, newest first, as the chain indexer has read them."""

    permission_classes = [IsSignedIn]

    @extend_schema(responses={200: OrderSerializer(many=True), **errors(401, 403)})
    def get(self, request):
        if not request.user.address:
            return Response([])
        return Response([order_body(o, v) for o, v in selectors.library(request.user.address)])


class StrayTransferSerializer(serializers.Serializer):
    chain_id = serializers.IntegerField()
    token = serializers.CharField()
    amount = serializers.CharField(help_text="The transfer's value, in token base units, as a decimal string")
    kind = serializers.ChoiceField(choices=[k for k, _ in StrayTransfer.Kind.choices], help_text=(
        "authorization: an EIP-3009 authorization of yours someone sent straight to the token; plain: a transfer"))
    status = serializers.ChoiceField(choices=[s for s, _ in StrayTransfer.Status.choices], help_text=(
        "returning (queued for the operator), arbiter (waiting for the arbiter's wallet), returned, dust (below "
        "STRAY_RETURN_DUST: not returned), review (an arbiter decides), failed (an arbiter looks at it)"))
    status_text = serializers.CharField()
    tx_hash = serializers.CharField(help_text="The transaction that moved the money into the market")
    log_index = serializers.IntegerField()
    block_number = serializers.IntegerField()
    ref = serializers.CharField(help_text="What the return answers: keccak256(abi.encode(txHash, token, n)), n the "
                                "transfer's position among its token's transfers into the market in its transaction")
    return_tx_hash = serializers.CharField(help_text="The transaction that returned it (empty: not yet)")


def stray_body(row) -> dict:
    return {"chain_id": row.chain_id, "token": row.token, "amount": str(int(row.amount)), "kind": row.kind,
            "status": row.status, "status_text": row.get_status_display(), "tx_hash": row.tx_hash,
            "log_index": row.log_index, "block_number": row.block_number, "ref": row.ref,
            "return_tx_hash": row.return_tx_hash}


class ReturnsView(APIView):
    """Money the signed-in wallet sent to the market without an order (an authorization someone
    pushed straight to the token, a transfer), newest first, and whether it was returned."""

    permission_classes = [IsSignedIn]

    @extend_schema(responses={200: StrayTransferSerializer(many=True), **errors(401, 403)})
    def get(self, request):
        if not request.user.address:
            return Response([])
        return Response([stray_body(row) for row in strays.of_payer(request.user.address)[:200]])


class SalesView(APIView):
    """The orders of the signed-in publisher's listings, newest first."""

    permission_classes = [IsSignedIn]

    @extend_schema(responses={200: OrderSerializer(many=True), **errors(401, 403)})
    def get(self, request):
        return Response([order_body(o, v) for o, v in selectors.sales(request.user)])


ChainInfo = inline_serializer("ChainInfo", {
    "chain_id": serializers.IntegerField(),
    "chain_name": serializers.CharField(
        help_text="What to call the chain when a wallet is on another one"),
    "market": serializers.CharField(allow_null=True, help_text="The DataMarket's address (null: not deployed yet)"),
    "distributor": serializers.CharField(
        allow_null=True, help_text="The RewardDistributor contributors claim from (null: not deployed yet)"),
    "confirmations": serializers.IntegerField(help_text="Blocks the server waits before it counts an order"),
    "download_domain": serializers.DictField(help_text="The EIP-712 domain of signed download requests"),
    "explorer_url": serializers.CharField(help_text="A block explorer (<url>/tx/<hash>), or empty"),
    "abi": serializers.DictField(
        help_text="`calls`: {signature: selector} of the market's and the token's calls pages "
                  "make; `errors`: {selector: {name, types}} of every revert they may meet"),
})


class ChainView(APIView):
    """Where to pay: the chain and the market a buyer's wallet or client sends purchases to, and
    what a page needs to call them and to read their errors."""

    authentication_classes = []

    @extend_schema(responses={200: ChainInfo})
    def get(self, request):
        market = deployed_address(settings.CHAIN_ID, "DataMarket")
        return Response({
            "chain_id": settings.CHAIN_ID, "chain_name": chain_name(settings.CHAIN_ID),
            "market": market,
            "distributor": deployed_address(settings.CHAIN_ID, "RewardDistributor"),
            "confirmations": settings.CHAIN_CONFIRMATIONS,
            "download_domain": {"name": signed.DOMAIN_NAME, "version": "1", "chainId": settings.CHAIN_ID,
                                "verifyingContract": market},
            "explorer_url": settings.EXPLORER_URL, "abi": wallet_abi(),
        })


class PurchaseReceipt(serializers.Serializer):
    tx_hash = StrictRegexField(r"^0x[0-9a-fA-F]{64}$", help_text="The purchase transaction's hash")


class PurchaseReceiptView(APIView):
    """A purchase's transaction, or one that moved an order (a confirmation, a dispute): the
    chain indexer reads through its block now (once it has the confirmations the server waits
    for) and the orders it made or moved are returned; 202 with the confirmations so far while it
    waits. The buying page and the library post it every second until the order is there."""

    authentication_classes = []

    @extend_schema(request=PurchaseReceipt, responses={200: OrderSerializer(many=True),
                                                       202: ConfirmationsWaiting,
                                                       **errors(400, 404, 409, 429, 503)})
    def post(self, request):
        enforce(request, "order_receipt")
        data = PurchaseReceipt(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            nudge = catch_up(data.validated_data["tx_hash"])
        except NotMined:
            raise APIError("not_mined", "The transaction is not mined yet (or unknown to the "
                           "chain); try again in a few seconds.", status=409) from None
        except NodeDown:
            raise APIError("chain_unavailable", "The chain cannot be reached; try again soon.",
                           status=503) from None
        if not nudge.read:
            return Response(nudge.progress, status=202)
        orders = selectors.touched_by(settings.CHAIN_ID, nudge.tx_hash)
        if not orders:
            raise APIError("no_order", f"Transaction {nudge.tx_hash} bought nothing on the market and "
                           "moved no order (it failed, or called another contract).", status=404)
        return Response([order_body(o, v) for o, v in selectors.with_versions(orders)])


class RelayRequest(serializers.Serializer):
    action = serializers.ChoiceField(choices=sorted(relay.ACTIONS), help_text="confirm or dispute")
    nonce = StrictRegexField(r"^0x[0-9a-fA-F]{64}$", help_text="32 random bytes, never used by this buyer before")
    deadline = serializers.IntegerField(min_value=0, max_value=2**64,
                                        help_text="Unix seconds; at least 5 minutes ahead")
    signature = StrictRegexField(r"^0x(?:[0-9a-fA-F]{2}){1,2048}$",
                                 help_text="The buyer's EIP-712 ConfirmOrder / DisputeOrder signature "
                                           "(the market's domain; see docs/delivery.md)")


RelayedAction = inline_serializer("RelayedAction", {
    "id": serializers.IntegerField(),
    "action": serializers.CharField(),
    "order_id": serializers.CharField(),
    "status": serializers.CharField(help_text="pending, sent, confirmed, failed or cancelled"),
    "tx_hash": serializers.CharField(help_text="The transaction, once sent"),
    "error": serializers.CharField(help_text="Why it failed, if it did"),
})


def relayed_body(action) -> dict:
    names = {kind: name for name, (kind, _) in relay.ACTIONS.items()}
    return {"id": action.pk, "action": names[action.kind], "order_id": str(action.order_id),
            "status": action.status, "tx_hash": action.tx_hash, "error": action.error}


class RelayView(APIView):
    """A buyer's signed confirmation or dispute of an order, sent on-chain by the server's
    operator key (so a buyer without ETH can act). 202 once queued; poll GET /api/v1/relay/<id>."""

    authentication_classes = []

    @extend_schema(request=RelayRequest, responses={202: RelayedAction, 200: RelayedAction,
                                                    **errors(400, 401, 404, 409, 429, 503)})
    def post(self, request, order_id):
        enforce(request, "relay")
        data = RelayRequest(data=request.data)
        data.is_valid(raise_exception=True)
        body = data.validated_data
        try:
            action, created = relay.relay(action=body["action"], order_id=order_id, nonce=body["nonce"],
                                          deadline=body["deadline"], signature=body["signature"])
        except relay.RelayError as exc:
            raise APIError(exc.code, exc.message, status=exc.status) from None
        except LimitExceeded as exceeded:
            raise RateLimited(exceeded) from None
        return Response(relayed_body(action), status=202 if created else 200)


class RelayedActionView(APIView):
    """Where a relayed action is: pending, sent (with its transaction), confirmed or failed."""

    authentication_classes = []

    @extend_schema(responses={200: RelayedAction, **errors(404)})
    def get(self, request, pk):
        action = get_object_or_404(OperatorAction, pk=pk, kind__in=[k for k, _ in relay.ACTIONS.values()])
        return Response(relayed_body(action))


class StatementSerializer(serializers.Serializer):
    role = serializers.ChoiceField(
        choices=DisputeStatement.Role.choices, read_only=True,
        help_text="buyer: the buyer's statement; seller: the listing owner's answer")
    author = serializers.CharField(read_only=True, help_text="The wallet that wrote it")
    text = StrictTextField(
        max_length=services.MAX_STATEMENT_LENGTH,
        help_text="What happened, in the writer's words (one statement per party, final)")
    created_at = serializers.DateTimeField(read_only=True)


class OrderStatementsView(APIView):
    """The statements on a disputed order of this chain's market: the buyer's and the listing
    owner's answer. Only those two may read or write them; each writes once, while the order is
    disputed."""

    permission_classes = [IsSignedIn]

    def _order(self, request, order_id):
        order = selectors.current_order(settings.CHAIN_ID, order_id)
        if order is None:
            raise APIError("not_found", f"No order {order_id} on this chain's market (an order "
                           "shows here once its block is indexed).", status=404)
        if selectors.party(request.user.address, order) is None:
            raise APIError("not_a_party", "Only the order's buyer and the listing's owner may read "
                           "or write its dispute statements.", status=403)
        return order

    @extend_schema(responses={200: StatementSerializer(many=True), **errors(401, 403, 404)})
    def get(self, request, order_id):
        order = self._order(request, order_id)
        rows = selectors.statements([order]).get(selectors.statement_key(order), [])
        return Response(StatementSerializer(rows, many=True).data)

    @extend_schema(request=StatementSerializer, responses={201: StatementSerializer,
                                                           **errors(400, 401, 403, 404, 409, 429)})
    def post(self, request, order_id):
        data = StatementSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        enforce(request, "statement")
        order = self._order(request, order_id)
        try:
            row = services.post_statement(address=request.user.address, order=order,
                                          text=data.validated_data["text"].strip())
        except services.StatementRefused as refused:
            raise APIError(refused.code, refused.message, status=refused.status) from None
        return Response(StatementSerializer(row).data, status=201)
