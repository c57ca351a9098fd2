"""The fetch-job API of nodes: every request is signed by the device key (device_auth), none uses a
browser session (so no CSRF token), and each is counted against the node_jobs limit of the
client's address and the device's wallet.

    GET  /api/v1/node/jobs                 the device's jobs that want something of it
    POST /api/v1/node/jobs                 lease up to `want` new jobs; answers as GET
    POST /api/v1/node/jobs/{id}/commit     the commitment to a result
    POST /api/v1/node/jobs/{id}/reveal     the result and its salt
    POST /api/v1/node/jobs/{id}/decline    give a leased job back, with the reason
"""

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace.accounts.bans import CONTRIBUTE, refuse_if_banned
from marketplace.api import APIError, StrictCharField, StrictRegexField, errors
from marketplace.limits.http import RateLimited, client_address, enforce
from marketplace.limits.services import LimitExceeded, consume

from . import device_auth, jobs

SIGNED = [
    OpenApiParameter(name, str, OpenApiParameter.HEADER, required=True, description=text)
    for name, text in (
        ("X-Device", "The device key's address"),
        ("X-Device-Time", "The node's clock, Unix seconds"),
        ("X-Device-Signature", "EIP-191 signature of the request message (docs/rewards-jobs.md)"),
    )
]

NodeJob = inline_serializer(
    "NodeJob",
    {
        "id": serializers.IntegerField(),
        "url": serializers.CharField(
            help_text="What to fetch (through the fetch guard; honour robots.txt)"
        ),
        "extract": serializers.DictField(
            help_text="The extractor (marketplace/rewards/extracting.py)"
        ),
        "max_bytes": serializers.IntegerField(),
        "timeout_seconds": serializers.IntegerField(),
        "phase": serializers.ChoiceField(
            choices=["fetch", "wait", "reveal"],
            help_text="fetch: fetch and commit; wait: for the other commitments; reveal",
        ),
        "lease_expires_at": serializers.DateTimeField(
            help_text="Commit before this, or the job goes to another node"
        ),
        "reveal_at": serializers.DateTimeField(help_text="Reveals open at the latest then"),
        "settle_at": serializers.DateTimeField(help_text="Reveals close then"),
    },
)
NodeJobs = inline_serializer(
    "NodeJobs",
    {
        "jobs": serializers.ListField(child=NodeJob),
        "suspended_until": serializers.DateTimeField(
            allow_null=True,
            help_text="No new lease before this: too many leases of this device, or of its "
            "wallet's devices together, ended without a result (expired uncommitted, committed "
            "and never revealed) or were declined lately, or the device or its wallet has taken "
            "its leases of the hour",
        ),
    },
)


def job_body(assignment, now) -> dict:
    job = assignment.job
    return {
        "id": job.pk,
        "url": job.url,
        "extract": job.extractor,
        "max_bytes": job.max_bytes,
        "timeout_seconds": job.timeout_seconds,
        "phase": jobs.phase(assignment, now),
        "lease_expires_at": assignment.lease_expires_at,
        "reveal_at": job.reveal_at,
        "settle_at": job.settle_at,
    }


def _device(request):
    """The signing device, once the client's address (before the signature is checked: a flood of
    forged requests costs a recovery each) and then the device's wallet are within node_jobs."""
    enforce(request, "node_jobs")
    device = device_auth.authenticate(request)
    device_auth.require_bound(device)
    refuse_if_banned(device.contributor.wallet, CONTRIBUTE)
    try:
        consume("node_jobs", wallet=device.contributor.wallet.lower())
    except LimitExceeded as exceeded:
        raise RateLimited(exceeded) from None
    return device


def _jobs_response(device, now, status=200):
    return Response(
        {
            "jobs": [job_body(a, now) for a in jobs.current(device, now)],
            "suspended_until": jobs.suspended_until(device, now),
        },
        status=status,
    )


class LeaseRequest(serializers.Serializer):
    want = serializers.IntegerField(
        min_value=0,
        max_value=100,
        default=1,
        help_text="New jobs wanted (the server gives at most REWARD_JOB_LEASES_PER_REQUEST)",
    )


class NodeJobsView(APIView):
    """A node's fetch jobs: GET lists those that want something of it; POST leases new ones too."""

    authentication_classes = []

    @extend_schema(parameters=SIGNED, responses={200: NodeJobs, **errors(401, 403, 409, 429)})
    def get(self, request):
        device = _device(request)
        return _jobs_response(device, timezone.now())

    @extend_schema(
        parameters=SIGNED,
        request=LeaseRequest,
        responses={200: NodeJobs, **errors(401, 403, 409, 429)},
    )
    def post(self, request):
        device = _device(request)
        data = LeaseRequest(data=request.data)
        data.is_valid(raise_exception=True)
        now = timezone.now()
        jobs.lease(
            device=device, ip=client_address(request), want=data.validated_data["want"], now=now
        )
        return _jobs_response(device, now)


class _JobActionView(APIView):
    authentication_classes = []
    serializer = None

    def act(self, device, job_id, data, now):
        raise NotImplementedError

    def post(self, request, job_id):
        device = _device(request)
        data = self.serializer(data=request.data)
        data.is_valid(raise_exception=True)
        now = timezone.now()
        try:
            assignment = self.act(device, job_id, data.validated_data, now)
        except jobs.JobError as exc:
            raise APIError(exc.code, exc.message, status=exc.status) from None
        assignment.job.refresh_from_db()
        return Response(job_body(assignment, now) | {"state": assignment.state})


JobAnswer = inline_serializer(
    "NodeJobAnswer",
    {
        "id": serializers.IntegerField(),
        "phase": serializers.CharField(),
        "state": serializers.CharField(),
        "url": serializers.CharField(),
        "extract": serializers.DictField(),
        "max_bytes": serializers.IntegerField(),
        "timeout_seconds": serializers.IntegerField(),
        "lease_expires_at": serializers.DateTimeField(),
        "reveal_at": serializers.DateTimeField(),
        "settle_at": serializers.DateTimeField(),
    },
)


class CommitRequest(serializers.Serializer):
    commit = StrictRegexField(
        r"^0x[0-9a-fA-F]{64}$",
        help_text="sha256 of 'job id|device (lowercase)|canonical rows JSON|salt', 0x-hex",
    )


class JobCommitView(_JobActionView):
    """Commit to a result before any result of the job is revealed."""

    serializer = CommitRequest

    def act(self, device, job_id, data, now):
        return jobs.commit(device=device, job_id=job_id, commit_hash=data["commit"], now=now)

    @extend_schema(
        parameters=SIGNED,
        request=CommitRequest,
        responses={200: JobAnswer, **errors(401, 403, 409, 429)},
    )
    def post(self, request, job_id):
        return super().post(request, job_id)


class RevealRequest(serializers.Serializer):
    rows = serializers.ListField(
        child=serializers.DictField(), max_length=1000, help_text="The extracted rows, as committed"
    )
    salt = StrictRegexField(
        r"^[0-9a-fA-F]{32,64}$", help_text="The secret salt of the commitment (hex)"
    )


class JobRevealView(_JobActionView):
    """Reveal the committed result, once every replica has committed or the job's reveal_at has
    passed."""

    serializer = RevealRequest

    def act(self, device, job_id, data, now):
        return jobs.reveal(
            device=device, job_id=job_id, rows=data["rows"], salt=data["salt"], now=now
        )

    @extend_schema(
        parameters=SIGNED,
        request=RevealRequest,
        responses={200: JobAnswer, **errors(401, 403, 409, 429)},
    )
    def post(self, request, job_id):
        return super().post(request, job_id)


class DeclineRequest(serializers.Serializer):
    reason = StrictCharField(
        max_length=300, help_text="robots_txt, refused_address, too_large, bandwidth_cap, ..."
    )


class JobDeclineView(_JobActionView):
    """Give a leased job back (robots.txt, a refused address, the node's bandwidth cap)."""

    serializer = DeclineRequest

    def act(self, device, job_id, data, now):
        return jobs.decline(device=device, job_id=job_id, reason=data["reason"], now=now)

    @extend_schema(
        parameters=SIGNED,
        request=DeclineRequest,
        responses={200: JobAnswer, **errors(401, 403, 409, 429)},
    )
    def post(self, request, job_id):
        return super().post(request, job_id)
