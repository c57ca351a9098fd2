"""The node's side of fetch jobs (marketplace.node.jobs.work through the node's signed Client)
against Django's live server and the demo site, both over real HTTP."""

from datetime import timedelta
import json
import time

from django.conf import settings
from django.utils import timezone
from eth_account import Account
import pytest

from marketplace.node.client import Client
from marketplace.node.jobs import JOBS_PATH, Bandwidth, JobsState, work
from marketplace.rewards import demo_site, jobs, signing
from marketplace.rewards.fetching import AllowList
from marketplace.rewards.models import CollectedRow, Device, FetchJob, JobAssignment, WorkCredit

from tests.conftest import free_port

from .jobs_fixtures import bound_device, dataset, job_settings, make_target, site

FIXTURES = (dataset, job_settings, site)
pytestmark = pytest.mark.django_db(transaction=True)


def client_of(node, live_server):
    return Client(live_server.url, Account.from_key(node.key), settings.CHAIN_ID)


def state_for(site, **kwargs):
    return JobsState(allow=AllowList([site.removeprefix("http://")]), want=1, **kwargs)


def test_two_nodes_collect_commit_and_reveal_through_the_api(
    job_settings, dataset, site, live_server
):
    job = jobs.create_job(target=make_target(dataset, site))
    a, b = bound_device(), bound_device()
    clients = [client_of(a, live_server), client_of(b, live_server)]
    states = [state_for(site), state_for(site)]
    for client, state in zip(clients, states):
        assert work(client, state)["committed"] == 1, state.last_error
    for client, state in zip(clients, states):
        assert work(client, state)["revealed"] == 1, state.last_error
        assert state.pending == {}
    job.refresh_from_db()
    assert job.outcome == FetchJob.Outcome.ACCEPTED
    assert WorkCredit.objects.filter(ref=f"job:{job.pk}").count() == 2
    slot = int(job.url.rsplit("=", 1)[1])
    stored = sorted(CollectedRow.objects.values_list("data", flat=True), key=lambda r: r["station"])
    expected = demo_site.weather(slot)["stations"]
    assert [(r["station"], r["temp_c"], r["slot"]) for r in stored] == [
        (s["id"], s["temp_c"], slot) for s in expected
    ]


def test_a_node_refuses_a_local_site_that_is_not_on_its_allow_list(
    job_settings, dataset, site, live_server
):
    job = jobs.create_job(target=make_target(dataset, site))
    node = bound_device()
    done = work(client_of(node, live_server), JobsState(want=1))
    assert done["declined:refused_address"] == 1
    assert JobAssignment.objects.get(job=job).state == JobAssignment.State.DECLINED


def test_a_node_honours_robots_txt(job_settings, dataset, site, live_server):
    target = make_target(
        dataset,
        site,
        path="/private/ledger",
        extractor={"kind": "json", "rows": "/stations", "fields": {"station": "/id"}},
    )
    job = jobs.create_job(target=target)
    node, state = bound_device(), state_for(site)
    done = work(client_of(node, live_server), state)
    assert done["declined:robots_txt"] == 1 and done["fetched"] == 0
    assignment = JobAssignment.objects.get(job=job)
    assert (assignment.state, assignment.decline_reason) == (
        JobAssignment.State.DECLINED,
        "robots_txt",
    )
    assert len(state.robots.rules) == 1  # cached per host


def test_a_node_keeps_to_its_bandwidth_cap(job_settings, dataset, site, live_server):
    target = make_target(dataset, site)
    other = make_target(
        dataset, site, path="/prices?at={slot}", extractor={"kind": "table", "table": 0}
    )
    weather = jobs.create_job(target=target)
    page = len(json.dumps(demo_site.weather(int(weather.url.rsplit("=", 1)[1]))).encode())
    cap = len(demo_site.ROBOTS) + page + 20  # robots.txt and one weather page, not a prices page
    node = bound_device()
    state = state_for(site, bandwidth=Bandwidth(per_minute=cap))
    client = client_of(node, live_server)
    first = work(client, state)
    assert first["committed"] == 1, state.last_error
    jobs.create_job(target=other)  # made now: jobs are drawn at random, not oldest first
    second = work(client, state)
    assert second["declined:bandwidth_cap"] == 1 and second["fetched"] == 0
    assert state.bandwidth.used(60) <= cap


class GoneAfterLease(Client):
    """A node whose server stops answering once the turn's lease is in (a restart, the run
    command stopping): every later request goes to a port nothing listens on."""

    def signed_response(self, method, path, payload=None):
        response = super().signed_response(method, path, payload)
        if path == JOBS_PATH:
            self.server = f"http://127.0.0.1:{free_port()}"
        return response


def test_a_server_gone_mid_turn_is_noted_and_the_fetched_rows_are_committed_next_turn(
    job_settings, dataset, site, live_server
):
    job = jobs.create_job(target=make_target(dataset, site))
    node, state = bound_device(), state_for(site)
    client = GoneAfterLease(live_server.url, Account.from_key(node.key), settings.CHAIN_ID)
    done = work(client, state)  # used to raise requests' ConnectionError out of the node's loop
    assert done["fetched"] == 1 and done["committed"] == 0
    assert state.last_error.startswith("the server cannot be reached"), state.last_error
    assert list(state.pending) == [job.pk]
    assert work(client_of(node, live_server), state)["committed"] == 1, state.last_error
    assignment = JobAssignment.objects.get(job=job)
    assert assignment.state == JobAssignment.State.COMMITTED and assignment.commit_hash


def test_signed_requests_are_taken_once_and_only_from_bound_devices(
    job_settings, dataset, site, live_server
):
    node = bound_device()
    client = client_of(node, live_server)
    path, body, headers = client.sign_request("POST", "/api/v1/node/jobs", {"want": 0})
    headers["Content-Type"] = "application/json"
    url = live_server.url + path
    assert client.http.post(url, data=body, headers=headers).status_code == 200
    replayed = client.http.post(url, data=body, headers=headers)
    assert replayed.status_code == 409 and replayed.json()["error"]["code"] == "replayed"
    # The same signature spelt otherwise (no 0x, upper case, v as 0 or 1) is the same request.
    sig = headers["X-Device-Signature"][2:]
    v = int(sig[128:], 16)
    for spelling in (sig, sig.upper(), sig[:128] + f"{v - 27:02x}"):
        again = client.http.post(url, data=body, headers={**headers, "X-Device-Signature": spelling})
        assert again.status_code == 409 and again.json()["error"]["code"] == "replayed", spelling
    changed = client.http.post(url, data=b'{"want":3}', headers=headers)  # signed for another body
    assert changed.status_code == 401 and changed.json()["error"]["code"] == "forged"
    assert client.http.post(url, json={"want": 1}).json()["error"]["code"] == "not_signed"
    stranger = Account.create()
    Device.objects.create(address=stranger.address)
    unbound = Client(live_server.url, stranger, settings.CHAIN_ID).signed_response("GET", "/api/v1/node/jobs")
    assert unbound.status_code == 403 and unbound.json()["error"]["code"] == "unbound_device"


def test_the_api_refuses_a_reveal_without_a_commitment(job_settings, dataset, site, live_server):
    job = jobs.create_job(target=make_target(dataset, site))
    node = bound_device()
    client = client_of(node, live_server)
    leased = client.signed_response("POST", "/api/v1/node/jobs", {"want": 1}).json()["jobs"]
    assert [(j["id"], j["phase"]) for j in leased] == [(job.pk, "fetch")]
    assert "is_canary" not in leased[0] and "expected_hash" not in leased[0]
    refused = client.signed_response(
        "POST", f"/api/v1/node/jobs/{job.pk}/reveal", {"rows": [], "salt": "ab" * 16}
    )
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "not_committed"
    unknown = client.signed_response("POST", "/api/v1/node/jobs/999999/commit", {"commit": "0x" + "00" * 32})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_assigned"


def test_a_devices_wallet_is_rate_limited(job_settings, live_server):
    job_settings.LIMITS = {
        **job_settings.LIMITS,
        "node_jobs": {"ip": "100/minute", "wallet": "2/minute"},
    }
    wallet = Account.create().address
    first = client_of(bound_device(wallet=wallet), live_server)
    second = client_of(bound_device(wallet=wallet), live_server)
    assert first.signed_response("GET", "/api/v1/node/jobs").status_code == 200
    assert second.signed_response("GET", "/api/v1/node/jobs").status_code == 200
    refused = first.signed_response("GET", "/api/v1/node/jobs")
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "throttled"
    assert int(refused.headers["Retry-After"]) > 0
    assert (
        client_of(bound_device(), live_server).signed_response("GET", "/api/v1/node/jobs").status_code == 200
    )


def test_a_reveal_with_text_that_is_not_unicode_is_a_400(job_settings, dataset, site, live_server):
    job = jobs.create_job(target=make_target(dataset, site))
    client = client_of(bound_device(), live_server)
    # JSON with a lone surrogate escaped (valid JSON, not valid Unicode), signed as the node signs.
    body = '{"rows": [{"a": "\\ud800"}], "salt": "' + "ab" * 16 + '"}'
    path = f"/api/v1/node/jobs/{job.pk}/reveal"
    stamp = int(time.time())
    message = signing.request_message(chain_id=settings.CHAIN_ID, device=client.device, method="POST",
                                      path=path, timestamp=stamp, body=body.encode())
    headers = {"X-Device": client.device, "X-Device-Time": str(stamp), "Content-Type": "application/json",
               "X-Device-Signature": signing.sign(client.key, message)}
    answer = client.http.post(live_server.url + path, data=body.encode(), headers=headers)
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_rows"


def test_a_suspended_device_is_told_until_when_and_can_still_reveal(
    job_settings, dataset, site, live_server
):
    job_settings.REWARD_JOB_STRIKES = 1
    target = make_target(dataset, site)
    first = jobs.create_job(target=target)
    node, partner = bound_device(), bound_device()
    client, state = client_of(node, live_server), state_for(site)
    partner_client, partner_state = client_of(partner, live_server), state_for(site)
    assert work(client, state)["committed"] == 1, state.last_error
    assert work(partner_client, partner_state)["committed"] == 1, partner_state.last_error
    # A second job it leases and lets expire, a full lease later: one strike suspends it.
    second = jobs.create_job(target=target)
    assert [a.job_id for a in jobs.lease(device=node.device, ip="127.0.0.1", want=1)] == [second.pk]
    JobAssignment.objects.filter(job=second, device=node.device).update(
        leased_at=timezone.now() - timedelta(seconds=job_settings.REWARD_JOB_LEASE_SECONDS + 1),
        lease_expires_at=timezone.now() - timedelta(seconds=1),
    )
    jobs.create_job(target=target)
    answer = client.signed_response("POST", "/api/v1/node/jobs", {"want": 1})
    assert answer.status_code == 200
    body = answer.json()
    assert body["suspended_until"] is not None
    assert [(j["id"], j["phase"]) for j in body["jobs"]] == [(first.pk, "reveal")]
    done = work(client, state)  # no new lease, but its committed job is revealed
    assert done["revealed"] == 1 and "no new jobs until" in state.last_error
    assert JobAssignment.objects.filter(device=node.device, state="leased").count() == 0
