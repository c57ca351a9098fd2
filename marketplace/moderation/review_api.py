"""The review queue's API (moderators): the queue, claims, and decisions with a policy reason, a
statement of reasons and an internal note. The decision itself is the catalog's
(`revisions.decide`, the same as `/moderation/revisions/<id>/decision`)."""
import re

from django.shortcuts import get_object_or_404
from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace.accounts.roles import IsModerator
from marketplace.api import APIError, StrictTextField, errors
from marketplace.catalog import revisions
from marketplace.catalog.api import RevisionSerializer, ShownListing, iso_time
from marketplace.catalog.models import DatasetRevision

from . import policy, review
from .api import MAX_ID, Params

NOT_BLANK = re.compile(r"[^\s\x00-\x20\x7f]")


class QueueParams(Params):
    kind = serializers.ChoiceField(choices=list(DatasetRevision.Kind.values), required=False,
                                   help_text="One kind of revision only")
    after = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID,
                                     help_text="Items after this revision (the previous page's `next_after`)",
                                     error_messages={"invalid": "Give the id of a revision (a whole number).",
                                                     "min_value": "Give the id of a revision (1 or more).",
                                                     "max_value": "No revision has so large an id."})


class ReviewDecisionRequest(serializers.Serializer):
    """A decision as the console takes it. A rejection or a request for changes cites a policy
    (`reason_code`) and says why in a statement the publisher sees (1 to 2,000 characters); the
    internal note stays with moderators."""

    decision = serializers.ChoiceField(choices=list(revisions.Decision.ALL))
    reason_code = serializers.ChoiceField(choices=policy.REASON_CODES, required=False, allow_blank=True,
                                          help_text="The policy cited (required unless approving)")
    statement = StrictTextField(required=False, allow_blank=True, max_length=policy.STATEMENT_MAX,
                                help_text="The statement of reasons the publisher sees (required unless approving)")
    internal_note = StrictTextField(required=False, allow_blank=True, max_length=policy.NOTE_MAX,
                                    help_text="For moderators only; never shown to the publisher")
    listings = ShownListing(many=True, required=False, help_text="The listing ids and content hashes shown (a "
                            "version's); 409 if they are not the revision's")

    def validate(self, data):
        statement = data.get("statement", "")
        data["statement"] = statement.strip()
        data["internal_note"] = data.get("internal_note", "").strip()
        if data["decision"] == revisions.Decision.APPROVE:
            if data.get("reason_code"):
                raise serializers.ValidationError({"reason_code": "An approval cites no policy."})
            return data
        problems = {}
        if not data.get("reason_code"):
            problems["reason_code"] = "Choose the policy this breaks."
        if not NOT_BLANK.search(statement):
            problems["statement"] = "Say why: the publisher reads this statement of reasons."
        if problems:
            raise serializers.ValidationError(problems)
        return data


class ReviewDecisionRequestSchema(OpenApiSerializerExtension):
    """The schema says what validate() does: an approval cites no policy; another decision cites
    one and gives a statement that is not blank."""

    target_class = ReviewDecisionRequest

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        schema["anyOf"] = [
            {"properties": {"decision": {"enum": [revisions.Decision.APPROVE]}, "reason_code": {"enum": [""]}}},
            {"required": ["reason_code", "statement"],
             "properties": {"decision": {"enum": [revisions.Decision.REJECT, revisions.Decision.REQUEST_CHANGES]},
                            "reason_code": {"enum": policy.REASON_CODES},
                            "statement": {"pattern": NOT_BLANK.pattern}}},
        ]
        return schema


def queue_json(row: dict) -> dict:
    return {**{k: v for k, v in row.items() if k not in ("age", "waited", "due_text", "claim_until")}, "created_at": iso_time(row["created_at"]),
            "due_at": iso_time(row["due_at"]), "age_seconds": int(row["age"].total_seconds()),
            "claim_expires_at": iso_time(row["claim_expires_at"]) if row["claim_expires_at"] else None}


def claim_json(held) -> dict:
    return {"revision": held.revision_id, "moderator": review.holder_name(held.moderator),
            "claimed_at": iso_time(held.claimed_at), "expires_at": iso_time(held.expires_at)}


def claimed_error(exc: review.Claimed) -> APIError:
    return APIError("claimed", str(exc), status=409)


def decide_or_refuse(revision, moderator, data) -> revisions.DecisionResult:
    """Take the decision, mapping the catalog's refusals to 409s: `claimed`, `stale_revision`,
    `decision_refused`."""
    try:
        return review.decide(revision, moderator=moderator, decision=data["decision"],
                             reason_code=data.get("reason_code", ""), statement=data.get("statement", ""),
                             internal_note=data.get("internal_note", ""), listings=data.get("listings"))
    except (revisions.StaleDecision, revisions.DecisionRefused) as exc:
        code = getattr(exc, "code", "stale_revision" if isinstance(exc, revisions.StaleDecision) else
                       "decision_refused")
        raise APIError(code, str(exc), status=409) from None


class ReviewQueueView(APIView):
    """GET `/moderation/queue`: the revisions waiting, oldest first, 50 a page, each with its
    due time, whether it is overdue, and who has claimed it."""

    permission_classes = [IsModerator]

    @extend_schema(parameters=[QueueParams], responses={200: inline_serializer("ReviewQueuePage", {
        "results": serializers.ListField(child=serializers.DictField()),
        "next_after": serializers.IntegerField(allow_null=True, help_text="`after` of the next page"),
        "target_hours": serializers.IntegerField(),
    }), **errors(400, 401, 403)})
    def get(self, request):
        p = QueueParams.read(request.query_params.dict())
        rows = review.queue(kind=p.get("kind", ""), after=p.get("after"))
        return Response({"results": [queue_json(row) for row in rows],
                         "next_after": rows[-1]["id"] if len(rows) == review.PAGE_SIZE else None,
                         "target_hours": review.target_hours()})


class ClaimView(APIView):
    """POST `/moderation/review/<id>/claim`: claim the revision (or extend one's claim); DELETE:
    release it. 409 `claimed` while another moderator holds it, `not_open` once it is decided."""

    permission_classes = [IsModerator]

    @extend_schema(request=None, responses={200: inline_serializer("ReviewClaim", {
        "revision": serializers.IntegerField(), "moderator": serializers.CharField(),
        "claimed_at": serializers.DateTimeField(), "expires_at": serializers.DateTimeField()}),
        **errors(401, 403, 404, 409)})
    def post(self, request, revision_id):
        get_object_or_404(DatasetRevision, pk=revision_id)
        try:
            held = review.claim(revision_id, moderator=request.user)
        except review.Claimed as exc:
            raise claimed_error(exc) from None
        except review.NotOpen as exc:
            raise APIError("not_open", str(exc), status=409) from None
        return Response(claim_json(held))

    @extend_schema(request=None, responses={200: inline_serializer("ReviewClaimReleased", {
        "released": serializers.BooleanField()}), **errors(401, 403, 404, 409)})
    def delete(self, request, revision_id):
        get_object_or_404(DatasetRevision, pk=revision_id)
        try:
            released = review.release(revision_id, moderator=request.user)
        except review.Claimed as exc:
            raise claimed_error(exc) from None
        return Response({"released": released})


class ReviewDecisionView(APIView):
    """POST `/moderation/review/<id>/decision`: approve, reject or request changes, with the
    policy cited, the statement of reasons and an internal note. 409: `claimed` (another
    moderator holds it), `stale_revision` (no longer open, or other listings than shown),
    `decision_refused` (out of order)."""

    permission_classes = [IsModerator]

    @extend_schema(request=ReviewDecisionRequest, responses={200: RevisionSerializer, **errors(400, 401, 403, 404, 409)})
    def post(self, request, revision_id):
        revision = get_object_or_404(DatasetRevision, pk=revision_id)
        data = ReviewDecisionRequest(data=request.data)
        data.is_valid(raise_exception=True)
        result = decide_or_refuse(revision, request.user, data.validated_data)
        return Response(RevisionSerializer(result.revision).data)
