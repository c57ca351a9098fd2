"""Moderation API for actions on a dataset and for appeals:

- POST `/moderation/datasets/<id>/actions` (moderators): delist, remove or restore a dataset.
- GET `/moderation/appeals?status=open` and POST `/moderation/appeals/<id>/decision` (moderators).
- GET and POST `/me/appeals` (the signed-in publisher): their appeals, and a new one.

A refusal is the API's error body: 400 for bad input, 403 for an appeal of someone else's
dataset or of one's own decision, 404 for an unknown dataset, entry or appeal, 409 for an action
on a dataset already in that state, a restore (or reversal) while its publisher is banned from
publishing, a second open appeal or an appeal decided already."""
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace.accounts.roles import IsModerator
from marketplace.api import refusal, StrictTextField, errors
from marketplace.catalog.api import iso_time
from marketplace.catalog.models import Dataset

from . import actions, appeals
from .api import Params, SignedIn
from .models import Appeal
from .policy import APPEAL_MAX, NOTE_MAX, REASON_CODES, STATEMENT_MAX


class DatasetActionRequest(serializers.Serializer):
    action = serializers.ChoiceField(choices=list(actions.ACTIONS))
    reason = serializers.ChoiceField(choices=REASON_CODES, required=False, allow_blank=True,
                                     help_text="A policy code; required to delist or remove")
    statement = StrictTextField(max_length=STATEMENT_MAX, allow_blank=True,
                                help_text="The statement of reasons the publisher reads (required)")
    internal_note = StrictTextField(max_length=NOTE_MAX, required=False, allow_blank=True,
                                    help_text="For moderators only")


class DatasetActionView(APIView):
    """POST `/moderation/datasets/<id>/actions`: delist, remove for legal reasons, or restore."""

    permission_classes = [IsModerator]

    @extend_schema(request=DatasetActionRequest, responses={200: inline_serializer("DatasetActionDone", {
        "action": serializers.CharField(), "status": serializers.CharField(help_text="The dataset's status now"),
        "state": serializers.CharField(help_text="removed, delisting, or the status"),
        "on_chain": serializers.BooleanField(required=False, help_text="An approval on-chain is being cleared"),
        "buyers_told": serializers.IntegerField(required=False, help_text="Buyers with orders in escrow notified"),
        "entry": serializers.IntegerField(required=False, help_text="The audit entry"),
    }), **errors(400, 401, 403, 404, 409)})
    def post(self, request, pk):
        dataset = get_object_or_404(Dataset, pk=pk)
        data = DatasetActionRequest(data=request.data)
        data.is_valid(raise_exception=True)
        body = data.validated_data
        try:
            done = actions.perform(dataset, body["action"], moderator=request.user, reason=body.get("reason", ""),
                                   statement=body["statement"], internal_note=body.get("internal_note", ""))
        except actions.ActionRefused as exc:
            raise refusal(exc) from None
        return Response({**done, "dataset": dataset.pk})


class AppealSerializer(serializers.ModelSerializer):
    class Meta:
        model = Appeal
        fields = ["id", "dataset", "kind", "entry_id", "decision", "statement", "status", "answer", "created_at",
                  "decided_at"]


def appeal_json(appeal: Appeal) -> dict:
    return {"id": appeal.pk, "dataset": appeal.dataset_id, "kind": appeal.kind, "entry_id": appeal.entry_id,
            "decision": appeal.decision, "statement": appeal.statement, "status": appeal.status,
            "answer": appeal.answer, "created_at": iso_time(appeal.created_at),
            "decided_at": iso_time(appeal.decided_at) if appeal.decided_at else None}


class AppealParams(Params):
    status = serializers.ChoiceField(choices=[s for s, _ in Appeal.Status.choices], required=False)


class AppealsView(APIView):
    """GET `/moderation/appeals`: appeals, oldest first (open ones by default), 200 at most."""

    permission_classes = [IsModerator]

    @extend_schema(parameters=[AppealParams], responses={200: inline_serializer("Appeals", {
        "results": AppealSerializer(many=True)}), **errors(400, 401, 403)})
    def get(self, request):
        p = AppealParams.read(request.query_params.dict())
        rows = Appeal.objects.filter(status=p.get("status", Appeal.Status.OPEN)).order_by("created_at", "id")[:200]
        return Response({"results": [appeal_json(a) for a in rows]})


class AppealDecisionRequest(serializers.Serializer):
    outcome = serializers.ChoiceField(choices=list(appeals.OUTCOMES))
    statement = StrictTextField(max_length=STATEMENT_MAX, allow_blank=True,
                                help_text="The reasons the publisher reads (required)")


class AppealDecisionView(APIView):
    """POST `/moderation/appeals/<id>/decision`: uphold or reverse (a reversal restores the dataset)."""

    permission_classes = [IsModerator]

    @extend_schema(request=AppealDecisionRequest, responses={200: AppealSerializer, **errors(400, 401, 403, 404, 409)})
    def post(self, request, pk):
        data = AppealDecisionRequest(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            appeal = appeals.decide(pk, moderator=request.user, **data.validated_data)
        except actions.ActionRefused as exc:
            raise refusal(exc) from None
        return Response(appeal_json(appeal))


class AppealRequest(serializers.Serializer):
    entry = serializers.IntegerField(min_value=1, help_text="The audit entry of the decision (from /me/audit)")
    statement = StrictTextField(max_length=APPEAL_MAX, allow_blank=True, help_text="Why it should be reversed")


class MyAppealsView(APIView):
    """GET `/me/appeals`: the signed-in publisher's appeals, newest first; POST: appeal a decision
    (a counter-notice for a removal)."""

    permission_classes = [SignedIn]

    @extend_schema(responses={200: inline_serializer("MyAppeals", {"results": AppealSerializer(many=True)}),
                              **errors(401)})
    def get(self, request):
        rows = Appeal.objects.filter(publisher=request.user).order_by("-created_at", "-id")[:200]
        return Response({"results": [appeal_json(a) for a in rows]})

    @extend_schema(request=AppealRequest, responses={201: AppealSerializer, **errors(400, 401, 403, 404, 409)})
    def post(self, request):
        data = AppealRequest(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            appeal = appeals.file(publisher=request.user, entry_id=data.validated_data["entry"],
                                  statement=data.validated_data["statement"])
        except actions.ActionRefused as exc:
            raise refusal(exc) from None
        return Response(appeal_json(appeal), status=201)
