"""Binding a device to a wallet: both signatures of one EIP-712 Bind, a nonce used once, a fresh
issuedAt, a cap of devices per wallet, rebinding with the old wallet's Unbind or after the
cooldown, unbinding by signature or session; and never one device bound to two wallets, also
when two bindings race."""
from datetime import timedelta
import threading
import time

from django.db import connection
from django.utils import timezone
import pytest

from marketplace.accounts.services import wallet_user
from marketplace.api import APIError
from marketplace.rewards import binding
from marketplace.rewards.models import BindingEvent, Device, PendingBinding
from tests.node_helpers import bind_body, new_key, post_json, unbind_fields

BIND = "/api/v1/node/bind"
UNBIND = "/api/v1/node/unbind"


def code(response):
    return response.json()["error"]["code"]


def bound_wallet(device):
    row = Device.objects.select_related("contributor").get(address=device.address)
    return row.contributor.wallet if row.contributor_id else None


@pytest.fixture
def keys():
    return new_key(), new_key(), new_key()  # a device, a wallet, another wallet


def test_a_bind_signed_by_device_and_wallet_binds(client, db, keys):
    device, wallet, _ = keys
    response = post_json(client, BIND, bind_body(device, wallet))
    assert response.status_code == 201, response.json()
    assert response.json()["status"] == "bound"
    assert bound_wallet(device) == wallet.address
    event = BindingEvent.objects.get(device__address=device.address)
    assert (event.action, event.wallet) == ("bound", wallet.address)
    assert Device.objects.get(address=device.address).nonce.startswith("0x")


def test_a_bind_without_the_device_key_is_refused(client, db, keys):
    device, wallet, other = keys
    response = post_json(client, BIND, bind_body(device, wallet, device_signer=other))
    assert response.status_code == 401 and code(response) == "bad_device_signature"
    assert not Device.objects.filter(address=device.address, contributor__isnull=False).exists()


def test_a_bind_without_the_wallet_is_refused(client, chain, keys):
    device, wallet, other = keys
    response = post_json(client, BIND, bind_body(device, wallet, wallet_signer=other))
    assert response.status_code == 401 and code(response) == "bad_wallet_signature"


def test_a_bind_nonce_is_taken_once(client, db, keys):
    device, wallet, _ = keys
    body = bind_body(device, wallet)
    assert post_json(client, BIND, body).status_code == 201
    again = post_json(client, BIND, body)
    assert again.status_code == 409 and code(again) == "nonce_used"


def test_a_stale_bind_from_a_node_is_refused_but_the_website_gets_an_hour(client, db, keys, settings):
    device, wallet, _ = keys
    old = int(time.time()) - 600
    response = post_json(client, BIND, bind_body(device, wallet, issued_at=old))
    assert response.status_code == 400 and code(response) == "binding_expired"
    client.force_login(wallet_user(wallet.address))
    assert post_json(client, BIND, bind_body(device, wallet, issued_at=old)).status_code == 201
    too_old = int(time.time()) - settings.REWARD_BIND_WINDOW - 10
    response = post_json(client, BIND, bind_body(device, wallet, issued_at=too_old))
    assert response.status_code == 400 and code(response) == "binding_expired"


def test_a_bind_dated_in_the_future_is_refused(client, db, keys):
    device, wallet, _ = keys
    response = post_json(client, BIND, bind_body(device, wallet, issued_at=int(time.time()) + 3600))
    assert response.status_code == 400 and code(response) == "clock_skew"


def test_a_device_bound_to_a_wallet_is_not_bound_to_another_without_its_consent(client, db, keys):
    device, wallet, thief = keys
    assert post_json(client, BIND, bind_body(device, wallet)).status_code == 201
    response = post_json(client, BIND, bind_body(device, thief))
    assert response.status_code == 202, response.json()
    assert response.json()["status"] == "pending"
    assert bound_wallet(device) == wallet.address  # still the first wallet's
    assert PendingBinding.objects.get(device__address=device.address).wallet == thief.address


def test_rebinding_with_the_old_wallets_unbind_moves_at_once(client, db, keys):
    device, wallet, new_wallet = keys
    assert post_json(client, BIND, bind_body(device, wallet)).status_code == 201
    response = post_json(client, BIND, bind_body(device, new_wallet, old=wallet))
    assert response.status_code == 201, response.json()
    assert bound_wallet(device) == new_wallet.address
    event = BindingEvent.objects.filter(device__address=device.address).latest("id")
    assert (event.action, event.via, event.previous_wallet) == ("rebound", "old_wallet", wallet.address)


def test_an_unbind_signed_by_another_wallet_does_not_move_the_device(client, db, keys):
    device, wallet, new_wallet = keys
    assert post_json(client, BIND, bind_body(device, wallet)).status_code == 201
    response = post_json(client, BIND, bind_body(device, new_wallet, old=new_wallet))
    assert response.status_code == 409 and code(response) == "not_bound_to_wallet"
    assert bound_wallet(device) == wallet.address


def test_rebinding_without_the_old_wallet_waits_for_the_cooldown(client, db, keys, settings):
    device, wallet, new_wallet = keys
    assert post_json(client, BIND, bind_body(device, wallet)).status_code == 201
    assert post_json(client, BIND, bind_body(device, new_wallet)).status_code == 202
    assert binding.apply_due_bindings() == 0  # not due yet
    assert bound_wallet(device) == wallet.address
    later = timezone.now() + timedelta(seconds=settings.REWARD_REBIND_COOLDOWN + 1)
    assert binding.apply_due_bindings(now=later) == 1
    assert bound_wallet(device) == new_wallet.address
    assert not PendingBinding.objects.exists()


def test_the_old_wallet_keeps_the_device_by_binding_it_again(client, db, keys, settings):
    device, wallet, new_wallet = keys
    assert post_json(client, BIND, bind_body(device, wallet)).status_code == 201
    assert post_json(client, BIND, bind_body(device, new_wallet)).status_code == 202
    assert post_json(client, BIND, bind_body(device, wallet)).status_code == 201
    later = timezone.now() + timedelta(seconds=settings.REWARD_REBIND_COOLDOWN + 1)
    assert binding.apply_due_bindings(now=later) == 0
    assert bound_wallet(device) == wallet.address


def test_a_wallet_unbinds_with_its_signature(client, chain, keys):
    device, wallet, other = keys
    assert post_json(client, BIND, bind_body(device, wallet)).status_code == 201
    forged = {"device": device.address, **unbind_fields(device, other)}
    forged["wallet"] = wallet.address
    response = post_json(client, UNBIND, forged)
    assert response.status_code == 401 and code(response) == "bad_wallet_signature"
    response = post_json(client, UNBIND, {"device": device.address, **unbind_fields(device, wallet)})
    assert response.status_code == 200, response.json()
    assert bound_wallet(device) is None


def test_a_signed_in_wallet_unbinds_its_device_on_the_website(client, db, keys):
    device, wallet, other = keys
    assert post_json(client, BIND, bind_body(device, wallet)).status_code == 201
    assert post_json(client, UNBIND, {"device": device.address}).status_code == 401
    client.force_login(wallet_user(other.address))
    response = post_json(client, UNBIND, {"device": device.address})
    assert response.status_code == 409 and code(response) == "not_bound_to_wallet"
    client.force_login(wallet_user(wallet.address))
    assert post_json(client, UNBIND, {"device": device.address}).status_code == 200
    assert bound_wallet(device) is None
    # Unbound, the device binds to whoever both keys agree on, at once.
    assert post_json(client, BIND, bind_body(device, other)).status_code == 201


def test_a_wallet_binds_at_most_the_cap_of_devices(client, db, keys, settings):
    settings.REWARD_MAX_DEVICES_PER_WALLET = 2
    _, wallet, _ = keys
    for _ in range(2):
        assert post_json(client, BIND, bind_body(new_key(), wallet)).status_code == 201
    response = post_json(client, BIND, bind_body(new_key(), wallet))
    assert response.status_code == 409 and code(response) == "too_many_devices"
    assert "2" in response.json()["error"]["message"]


def _race(calls):
    """Run the callables at once, each on its own database connection; their results or errors."""
    barrier = threading.Barrier(len(calls))
    results = [None] * len(calls)

    def run(i, call):
        barrier.wait()
        try:
            results[i] = call()
        except APIError as error:
            results[i] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def _signed(body):
    return dict(bind=binding.Signed(body["device"], body["wallet"], body["nonce"], body["issued_at"],
                                    body["wallet_signature"]),
                device_signature=body["device_signature"], window=60)


@pytest.mark.django_db(transaction=True)
def test_two_wallets_racing_for_one_device_never_both_bind_it():
    for _ in range(3):
        device, first, second = new_key(), new_key(), new_key()
        bodies = [bind_body(device, first), bind_body(device, second)]
        results = _race([lambda b=b: binding.bind(**_signed(b)) for b in bodies])
        statuses = sorted(r.status for r in results)
        assert statuses == ["bound", "pending"], results
        winner = next(r.wallet for r in results if r.status == "bound")
        assert bound_wallet(device) == winner
        assert BindingEvent.objects.filter(device__address=device.address, action="bound").count() == 1


@pytest.mark.django_db(transaction=True)
def test_racing_bindings_do_not_pass_the_device_cap(settings):
    settings.REWARD_MAX_DEVICES_PER_WALLET = 1
    wallet = new_key()
    bodies = [bind_body(new_key(), wallet) for _ in range(4)]
    results = _race([lambda b=b: binding.bind(**_signed(b)) for b in bodies])
    bound = [r for r in results if isinstance(r, binding.Outcome)]
    refused = [r for r in results if isinstance(r, APIError)]
    assert len(bound) == 1 and len(refused) == 3, results
    assert all(r.get_codes() == "too_many_devices" for r in refused)
    assert Device.objects.filter(contributor__wallet=wallet.address).count() == 1


# The website's step ------------------------------------------------------------------------------


def node_link(device, wallet, *, issued_at=None):
    body = bind_body(device, wallet, issued_at=issued_at)
    return (f"/node/bind?device={device.address}&wallet={wallet.address}&nonce={body['nonce']}"
            f"&issued={body['issued_at']}&sig={body['device_signature']}"), body


def test_the_binding_page_asks_a_visitor_to_sign_in_first(client, db, keys):
    device, wallet, _ = keys
    link, _ = node_link(device, wallet)
    response = client.get(link)
    assert response.status_code == 200
    assert b"data-sign-in-button" in response.content and b"data-bind-sign" not in response.content


def test_the_binding_page_offers_the_signed_in_wallet_the_nodes_bind(client, db, keys):
    device, wallet, _ = keys
    link, body = node_link(device, wallet)
    client.force_login(wallet_user(wallet.address))
    html = client.get(link).content.decode()
    assert "data-bind-sign" in html and "node_bind.js" in html
    assert f'data-device-signature="{body["device_signature"]}"' in html
    assert f'data-nonce="{body["nonce"]}"' in html
    # What the page's script posts, signed by the wallet: a signed-in session gets the hour.
    assert post_json(client, BIND, bind_body(device, wallet, issued_at=body["issued_at"] - 900)).status_code == 201
    html = client.get("/node/bind").content.decode()
    assert f'data-node-device="{device.address}"' in html


def test_the_binding_page_refuses_a_link_for_another_wallet_or_an_old_or_altered_one(client, db, keys):
    device, wallet, other = keys
    client.force_login(wallet_user(other.address))
    link, _ = node_link(device, wallet)
    html = client.get(link).content.decode()
    assert "data-bind-sign" not in html and "you are signed in with" in html
    client.force_login(wallet_user(wallet.address))
    old, _ = node_link(device, wallet, issued_at=int(time.time()) - 7200)
    assert "minutes old" in client.get(old).content.decode()
    assert "incomplete or altered" in client.get(link.replace("&sig=0x", "&sig=0xzz")).content.decode()


def test_binding_events_are_stamped_by_the_database_clock_not_the_app_server_s(client, db, keys, monkeypatch):
    """Two app servers with skewed clocks must not misorder a device's changes: the time is the
    database's (and scoring takes their order from the ids)."""
    device, wallet, _ = keys
    real_now = timezone.now
    monkeypatch.setattr(timezone, "now", lambda: real_now() + timedelta(hours=3))  # a server 3 hours fast
    assert post_json(client, BIND, bind_body(device, wallet)).status_code == 201
    binding.unbind(device=device.address, wallet=wallet.address, via=BindingEvent.Via.SESSION)
    monkeypatch.setattr(timezone, "now", real_now)
    with connection.cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        (database_now,) = cursor.fetchone()
    bound, unbound = BindingEvent.objects.filter(device__address=device.address).order_by("id")
    assert (bound.action, unbound.action) == ("bound", "unbound")
    for event in (bound, unbound):
        assert abs((database_now - event.created_at).total_seconds()) < 60, event.created_at
    assert bound.created_at <= unbound.created_at
