"""Wallet bans against the real PostgreSQL (and anvil with the real contracts where the chain is
involved): a moderator bans a wallet from publishing, buying or contributing and lifts the ban;
each action is an audit entry and a notification; the banned activity is refused with 403
`banned` wherever it happens (the catalog's publishing endpoints, the downloads of what was bought
after the ban and the buy card, the node binding, heartbeats through the Django view and the
ingest server, and jobs); a publishing ban clears the approvals on-chain through the operator
sender; an order paid before a buying ban still settles through the keeper; a contributing ban
confirms the wallet's open flags; lifting makes everything work again; and the wallets sharing a
payout address, a device or a network with a banned one are listed with the evidence."""
import time

from django.db import connection
from django.test import Client
from eth_account import Account
import pytest

from marketplace.accounts.models import WalletBan
from marketplace.accounts.services import wallet_user
from marketplace.catalog import services
from marketplace.catalog.models import Dataset, DatasetVersion, Listing
from marketplace.chain import indexer, sender
from marketplace.chain.models import OperatorAction
from marketplace.moderation.models import AuditEntry, Notification
from marketplace.orders import keeper
from marketplace.orders.models import Order
from marketplace.rewards import ingest
from marketplace.rewards.models import AddressWallet, BindingEvent, Device, Flag, Heartbeat
from tests.conftest import DEV_KEYS
from tests.factories import make_public
from tests.node_helpers import bind_body, heartbeat_body, new_key, post_json, signed_headers
from tests.integration.test_moderation_audit import client_of, user

BANS = "/api/v1/moderation/bans"
EVASION = "/api/v1/moderation/evasion"
HEARTBEAT = "/api/v1/node/heartbeat"
PAYOUT = "0x" + "ab" * 20


def code(response):
    return response.json()["error"]["code"]


def ban_body(address, scope="publish", **fields):
    return {"address": address, "scope": scope, "reason": "fraud", "statement": "Listings that were not what "
            "they said.", "internal_note": "seen in reports 4 and 9", **fields}


def ban(client, address, scope="publish", **fields):
    response = client.post(BANS, ban_body(address, scope, **fields), content_type="application/json")
    assert response.status_code == 201, response.content
    return response.json()


def lift(client, ban_id, statement="Appeal accepted."):
    response = client.post(f"{BANS}/{ban_id}/lift", {"statement": statement}, content_type="application/json")
    assert response.status_code == 200, response.content
    return response.json()


@pytest.fixture
def moderator(db):
    return user("mod", "moderator")


@pytest.fixture
def mod(moderator):
    return client_of(moderator)


@pytest.fixture
def wallet(db):
    return wallet_user(Account.create().address)


# Placing and lifting, bad input, roles -----------------------------------------------------------


def test_a_ban_and_its_lift_are_audit_entries_and_notifications(mod, moderator, wallet):
    placed = ban(mod, wallet.address.lower(), "buy")
    assert placed["address"] == wallet.address and placed["scope"] == "buy" and placed["lifted_at"] is None
    entry = AuditEntry.objects.get(action="wallet.ban")
    assert (entry.target_type, entry.target_id, entry.actor, entry.actor_role) == (
        "wallet", wallet.address, "mod", "moderator")
    assert entry.reason == "fraud" and entry.internal_note == "seen in reports 4 and 9"
    assert entry.details == {"ban": placed["id"], "scope": "buy"}
    (note,) = Notification.objects.filter(recipient=wallet)
    assert note.kind == "wallet.ban" and "banned from buying" in note.text and "not what they said" in note.text
    assert "reports 4" not in note.text, "the internal note stays internal"
    assert [b["id"] for b in mod.get(BANS).json()] == [placed["id"]]

    lifted = lift(mod, placed["id"])
    assert lifted["lifted_at"] and lifted["lifted_by"] == "mod" and lifted["lift_statement"] == "Appeal accepted."
    entry = AuditEntry.objects.get(action="wallet.unban")
    assert entry.target_id == wallet.address and entry.statement == "Appeal accepted."
    assert Notification.objects.filter(recipient=wallet, kind="wallet.unban").count() == 1
    assert mod.get(BANS).json() == []
    assert [b["id"] for b in mod.get(BANS, {"address": wallet.address}).json()] == [placed["id"]]
    # Banned again after the lift: a new ban.
    again = ban(mod, wallet.address, "buy")
    assert again["id"] != placed["id"]


@pytest.mark.parametrize("fields, field", [
    ({"address": "0x123"}, "address"),
    ({"address": "not an address at all, no"}, "address"),
    ({"scope": "sell"}, "scope"),
    ({"scope": ""}, "scope"),
    ({"reason": "because"}, "reason"),
    ({"statement": ""}, "statement"),
    ({"statement": "   "}, "statement"),
    ({"statement": "x" * 2001}, "statement"),
    ({"internal_note": "y" * 2001}, "internal_note"),
])
def test_bad_input_is_a_400_naming_the_field_and_writes_nothing(mod, wallet, fields, field):
    response = mod.post(BANS, {**ban_body(wallet.address), **fields}, content_type="application/json")
    assert response.status_code == 400 and code(response) == "invalid"
    assert field in response.json()["error"]["fields"]
    assert not WalletBan.objects.exists() and not AuditEntry.objects.exists() and not Notification.objects.exists()


def test_banning_twice_the_same_scope_is_a_409_and_a_lift_is_done_once(mod, wallet):
    placed = ban(mod, wallet.address)
    again = mod.post(BANS, ban_body(wallet.address), content_type="application/json")
    assert again.status_code == 409 and code(again) == "already_banned"
    assert WalletBan.objects.count() == 1 and AuditEntry.objects.filter(action="wallet.ban").count() == 1
    ban(mod, wallet.address, "contribute")  # another scope is another ban
    lift(mod, placed["id"])
    twice = mod.post(f"{BANS}/{placed['id']}/lift", {"statement": "again"}, content_type="application/json")
    assert twice.status_code == 409 and code(twice) == "already_lifted"
    missing = mod.post(f"{BANS}/999999/lift", {"statement": "x"}, content_type="application/json")
    assert missing.status_code == 404 and code(missing) == "not_found"
    empty = mod.post(f"{BANS}/{placed['id']}/lift", {"statement": ""}, content_type="application/json")
    assert empty.status_code == 400
    assert AuditEntry.objects.filter(action="wallet.unban").count() == 1


def test_only_moderators_ban_lift_or_see_the_evidence(db, wallet):
    ordinary = client_of(user("someone"))
    arbiter = client_of(user("arb", "arbiter"))
    for client, status in ((Client(), 401), (ordinary, 403), (arbiter, 403)):
        assert client.get(BANS).status_code == status
        assert client.post(BANS, ban_body(wallet.address), content_type="application/json").status_code == status
        assert client.post(f"{BANS}/1/lift", {"statement": "x"}, content_type="application/json").status_code == status
        assert client.get(EVASION).status_code == status
    assert not WalletBan.objects.exists()
    for path in ("/moderation/bans", f"/moderation/wallets/{wallet.address}"):
        assert ordinary.get(path).status_code == 403
        anonymous = Client().get(path)
        assert anonymous.status_code == 200 and b"data-sign-in-prompt" in anonymous.content
    page = f"/moderation/wallets/{wallet.address}"
    assert ordinary.post(page, {"action": "ban", **ban_body(wallet.address)}).status_code == 403
    anonymous = Client().post(page, {"action": "ban", **ban_body(wallet.address)})
    assert anonymous.status_code == 200 and b"data-sign-in-prompt" in anonymous.content
    assert not WalletBan.objects.exists()


def test_the_wallet_page_bans_and_lifts_and_says_what_is_wrong(mod, wallet):
    page = f"/moderation/wallets/{wallet.address}"
    shown = mod.get(page)
    assert shown.status_code == 200 and b"data-not-banned" in shown.content
    response = mod.post(page, {"action": "ban", "scope": "publish", "reason": "fraud", "statement": "",
                               "internal_note": ""})
    assert response.status_code == 400 and b"statement" in response.content and not WalletBan.objects.exists()
    response = mod.post(page, {"action": "ban", "scope": "fly", "reason": "fraud", "statement": "why"})
    assert response.status_code == 400 and not WalletBan.objects.exists()
    response = mod.post(page, {"action": "ban", "scope": "publish", "reason": "fraud", "statement": "Fake data.",
                               "internal_note": "secret"})
    assert response.status_code == 302
    row = WalletBan.objects.get()
    assert (row.address, row.scope, row.statement, row.internal_note) == (wallet.address, "publish", "Fake data.",
                                                                          "secret")
    shown = mod.get(page)
    assert f'data-ban="{row.pk}"'.encode() in shown.content and b"data-lift-form" in shown.content
    # The scope offered is one not banned yet (a disabled radio button would send no scope).
    assert b'value="buy" checked' in shown.content and b'value="publish" checked' not in shown.content
    listed = mod.get("/moderation/bans")
    assert listed.status_code == 200 and f'data-ban="{row.pk}"'.encode() in listed.content
    twice = mod.post(page, {"action": "ban", "scope": "publish", "reason": "fraud", "statement": "Again."})
    assert twice.status_code == 409 and b"already banned" in twice.content
    ban(mod, wallet.address, "buy")
    ban(mod, wallet.address, "contribute")
    everywhere = mod.get(page)
    assert b"data-banned-everywhere" in everywhere.content and b"data-ban-form" not in everywhere.content
    assert mod.post(page, {"action": "lift", "ban": str(row.pk), "statement": "Appeal upheld."}).status_code == 302
    row.refresh_from_db()
    assert row.lifted_at is not None and row.lift_statement == "Appeal upheld."
    assert mod.get("/moderation/wallets/0x1234").status_code == 400
    assert mod.get("/moderation/bans", {"address": "nonsense"}).status_code == 400
    found = mod.get("/moderation/bans", {"address": wallet.address.lower()})
    assert found.status_code == 302 and found["Location"] == page


# Publishing --------------------------------------------------------------------------------------


def test_a_publishing_ban_refuses_new_datasets_uploads_listings_and_edits_until_lifted(mod, wallet):
    dataset = services.create_dataset(owner=wallet, title="Rainfall", license="CC0-1.0", payout_address=PAYOUT)
    version = DatasetVersion.objects.create(dataset=dataset, number=1, file="x.csv", original_name="x.csv",
                                            format="csv", size=1, content_hash="0x" + "11" * 32, price=5,
                                            token=PAYOUT, analysis_status="done")
    placed = ban(mod, wallet.address, "publish")
    owner = client_of(wallet)
    base = f"/api/v1/datasets/{dataset.slug}"
    attempts = [
        owner.post("/api/v1/datasets", {"title": "New one", "license": "CC0-1.0"}, content_type="application/json"),
        owner.patch(base, {"title": "Renamed"}, content_type="application/json"),
        owner.post(f"{base}/versions?filename=data.csv&price=5", b"a,b\n1,2\n", content_type="text/csv"),
        owner.get(f"{base}/versions/1/listing/prepare"),
        owner.post(f"{base}/versions/1/listing", {"tx_hash": "0x" + "22" * 32}, content_type="application/json"),
        owner.post(f"{base}/versions/1/listing/update/prepare", {"price": "7"}, content_type="application/json"),
        owner.post(f"{base}/versions/1/listing/active/prepare", {"active": True}, content_type="application/json"),
        owner.patch(f"{base}/versions/1/preview", {"hidden_columns": ["a"]}, content_type="application/json"),
    ]
    for response in attempts:
        assert response.status_code == 403 and code(response) == "banned", response.content
        assert "banned from publishing" in response.json()["error"]["message"]
    assert Dataset.objects.count() == 1 and Dataset.objects.get().title == "Rainfall"
    assert DatasetVersion.objects.count() == 1 and version.pk

    lift(mod, placed["id"])
    created = owner.post("/api/v1/datasets", {"title": "New one", "license": "CC0-1.0"},
                         content_type="application/json")
    assert created.status_code == 201, created.content
    assert owner.patch(base, {"title": "Renamed"}, content_type="application/json").status_code == 200


def listed_and_bought(chain):
    from tests.integration.test_downloads import list_and_buy

    return list_and_buy(chain, Client(), b"town,mm\nLeeds,3\n")


def purchase_reverts(chain, listing_id, key):
    buyer = Account.from_key(key)
    price = int(Listing.objects.get(listing_id=listing_id).price)
    chain.token.mint(buyer.address, price)
    chain.send(chain.token.contract.functions.approve(chain.market.address, price), buyer.address)
    try:
        chain.market.contract.functions.purchase(listing_id, price).call({"from": buyer.address})
    except Exception as exc:  # web3's ContractCustomError / ContractLogicError
        return str(exc)
    return None


@pytest.mark.chain
@pytest.mark.django_db(transaction=True)
def test_a_publishing_ban_clears_the_approvals_on_chain_in_one_batch(chain, no_worker, settings):
    version, buyer, listing_id = listed_and_bought(chain)
    publisher = version.dataset.owner
    assert purchase_reverts(chain, listing_id, DEV_KEYS[3]) is None, "for sale before the ban"
    mod = client_of(user("mod", "moderator"))
    placed = ban(mod, publisher.address, "publish")

    (action,) = OperatorAction.objects.filter(kind="unapprove")
    assert action.context["intent"] == "ban" and int(action.listing_id) == listing_id
    assert AuditEntry.objects.get(action="wallet.ban").details["clearings_queued"] == 1
    settings.CHAIN_CONFIRMATIONS = 1
    report = sender.send_operator_actions()
    assert len(report.transactions) == 1
    chain.rpc("evm_mine")
    indexer.index_chain(chain.w3)
    assert chain.market.get_listing(listing_id)["approved"] is False
    assert Listing.objects.get(listing_id=listing_id).approved is False
    assert purchase_reverts(chain, listing_id, DEV_KEYS[3]) is not None, "a purchase reverts on-chain"
    # The buyer keeps access to what was bought.
    buyer_client = client_of(wallet_user(buyer.address))
    url = f"/api/v1/datasets/{version.dataset.slug}/versions/1/download"
    assert buyer_client.post(url, content_type="application/json").status_code == 201
    lift(mod, placed["id"])
    assert not OperatorAction.objects.filter(kind="approve").exists(), "a lift approves nothing by itself"


# Buying ------------------------------------------------------------------------------------------


@pytest.mark.chain
@pytest.mark.django_db(transaction=True)
def test_a_banned_buyer_s_paid_order_still_downloads_and_settles_through_the_keeper(chain, no_worker):
    from marketplace.catalog.listing import dispute_window

    version, buyer, _ = listed_and_bought(chain)
    (order,) = Order.objects.filter(buyer=buyer.address)
    assert order.status == "open"
    mod = client_of(user("mod", "moderator"))
    ban(mod, buyer.address, "buy")
    buyer_client = client_of(wallet_user(buyer.address))
    url = f"/api/v1/datasets/{version.dataset.slug}/versions/1/download"
    assert buyer_client.post(url, content_type="application/json").status_code == 201, "paid before the ban"

    seller = version.dataset.owner.address
    before = chain.token.balance_of(seller)
    chain.advance(dispute_window() + 1)
    indexer.index_chain(chain.w3)
    assert keeper.queue_due(chain.w3)["release"] == 1
    report = sender.send_operator_actions()
    assert report.confirmed == 1
    order.refresh_from_db()
    assert order.status == "released"
    assert chain.token.balance_of(seller) > before


@pytest.mark.chain
@pytest.mark.django_db(transaction=True)
def test_what_a_banned_buyer_buys_after_the_ban_does_not_download_until_the_ban_is_lifted(chain, no_worker):
    buyer = Account.from_key(DEV_KEYS[2])
    mod = client_of(user("mod", "moderator"))
    placed = ban(mod, buyer.address, "buy")
    version, _, _ = listed_and_bought(chain)  # bought on-chain from the wallet, after the ban
    buyer_client = client_of(wallet_user(buyer.address))
    url = f"/api/v1/datasets/{version.dataset.slug}/versions/1/download"
    refused = buyer_client.post(url, content_type="application/json")
    assert refused.status_code == 403 and code(refused) == "banned"
    assert "banned from buying" in refused.json()["error"]["message"]
    lift(mod, placed["id"])
    assert buyer_client.post(url, content_type="application/json").status_code == 201


def test_the_buy_card_tells_a_banned_buyer_and_offers_no_purchase(mod, wallet):
    publisher = wallet_user(Account.create().address)
    dataset = services.create_dataset(owner=publisher, title="Tides", license="CC0-1.0", payout_address=PAYOUT)
    version = make_public(DatasetVersion.objects.create(
        dataset=dataset, number=1, file="t.csv", original_name="t.csv", format="csv", size=1,
        content_hash="0x" + "33" * 32, price=5, token=PAYOUT, analysis_status="done"))
    buyer = client_of(wallet)
    page = f"/datasets/{dataset.slug}"
    assert b'data-state="buyable"' in buyer.get(page).content
    placed = ban(mod, wallet.address, "buy")
    shown = buyer.get(page).content
    assert b'data-state="banned"' in shown and b"data-banned" in shown and b"data-buy-button" not in shown
    lift(mod, placed["id"])
    assert b'data-state="buyable"' in buyer.get(page).content
    assert version.pk


# Contributing ------------------------------------------------------------------------------------


def bound_device(wallet_key=None):
    from marketplace.rewards import binding

    key, wallet_key = new_key(), wallet_key or new_key()
    body = bind_body(key, wallet_key)
    binding.bind(bind=binding.Signed(body["device"], body["wallet"], body["nonce"], body["issued_at"],
                                     body["wallet_signature"]), device_signature=body["device_signature"], window=60)
    return key, wallet_key, Device.objects.get(address=key.address)


@pytest.fixture
def no_interval(settings):
    settings.REWARD_HEARTBEAT_MIN_INTERVAL = 0
    ingest.per_address.counts.clear()


def test_a_contributing_ban_refuses_binding_heartbeats_and_jobs_until_lifted(mod, client, no_interval):
    key, wallet_key, device = bound_device()
    placed = ban(mod, wallet_key.address, "contribute")

    response = post_json(client, HEARTBEAT, heartbeat_body(key, seq=1, nonce=device.nonce))
    assert response.status_code == 403 and code(response) == "banned"
    assert not Heartbeat.objects.filter(device=device).exists()
    assert Device.objects.get(pk=device.pk).seq == 0
    jobs = client.get("/api/v1/node/jobs", **signed_headers(key, "GET", "/api/v1/node/jobs"))
    assert jobs.status_code == 403 and code(jobs) == "banned"
    another = new_key()
    bind = post_json(client, "/api/v1/node/bind", bind_body(another, wallet_key))
    assert bind.status_code == 403 and code(bind) == "banned"
    assert not Device.objects.filter(address=another.address, contributor__isnull=False).exists()

    lift(mod, placed["id"])
    response = post_json(client, HEARTBEAT, heartbeat_body(key, seq=1, nonce=device.nonce))
    assert response.status_code == 200, response.content
    assert Heartbeat.objects.filter(device=device, seq=1).exists()
    later = signed_headers(key, "GET", "/api/v1/node/jobs", stamp=int(time.time()) + 1)  # not a replay
    assert client.get("/api/v1/node/jobs", **later).status_code == 200
    assert post_json(client, "/api/v1/node/bind", bind_body(another, wallet_key)).status_code == 201


def test_a_contributing_ban_confirms_the_open_flags_and_their_held_rewards_go_back_to_the_pool(mod, settings):
    from datetime import timedelta

    from marketplace.rewards.models import HeldAmount
    from tests.integration.test_epochs import HOUR, credit, device, first_window, score_through

    settings.REWARD_EPOCH_SECONDS, settings.REWARD_EMISSION_PER_EPOCH = HOUR, 1_000_000
    settings.REWARD_UPTIME_WEIGHT, settings.REWARD_JOB_WEIGHT = 1, 10
    settings.REWARD_NETWORK_POINT_CAP, settings.REWARD_TRUSTED_NETWORKS = 0, []

    epoch = first_window()
    owner = Account.create().address
    dev = device(owner)
    credit(dev, 10, epoch.starts_at + timedelta(minutes=1))
    open_flag = Flag.objects.create(kind=Flag.Kind.CANARY, wallet=owner, device=dev, evidence={"job": 1})
    decided = Flag.objects.create(kind=Flag.Kind.SERVER, wallet=owner, status=Flag.Status.CLEARED)
    score_through(1)
    (held,) = HeldAmount.objects.filter(wallet=owner)
    assert held.status == HeldAmount.Status.HELD and int(held.amount) > 0

    placed = ban(mod, owner, "contribute")
    open_flag.refresh_from_db()
    assert open_flag.status == Flag.Status.CONFIRMED and open_flag.decided_by == "mod"
    decided.refresh_from_db()
    assert decided.status == Flag.Status.CLEARED, "a decided flag is never decided again"
    assert AuditEntry.objects.filter(action="flag.confirm", target_id=str(open_flag.pk)).count() == 1
    assert AuditEntry.objects.get(action="wallet.ban").details == {
        "ban": placed["id"], "scope": "contribute", "confirmed_flags": 1}

    two = score_through(2)
    held.refresh_from_db()
    assert held.status == HeldAmount.Status.RETURNED and held.settled_in == two
    assert int(two.returned_in) == int(held.amount)
    lift(mod, placed["id"])
    open_flag.refresh_from_db()
    assert open_flag.status == Flag.Status.CONFIRMED, "a lift undoes no confirmation"


@pytest.mark.django_db(transaction=True)
def test_the_ingest_server_refuses_a_banned_wallet_s_heartbeats_as_the_view_does():
    import os
    import signal

    from marketplace.moderation import bans
    from tests.conftest import database_url, free_port
    from tests.integration.test_ingest_server import error, post
    from tests.node_helpers import start_gunicorn

    port = free_port()
    server = start_gunicorn(port, database_url(connection.settings_dict), server="ingest", extra_env={
        "REWARD_HEARTBEAT_MIN_INTERVAL": "0", "REWARD_TRUSTED_NETWORKS": "127.0.0.0/8"})
    try:
        url = f"http://127.0.0.1:{port}"
        key, wallet_key, device = bound_device()
        moderator = user("mod", "moderator")
        row = bans.ban(address=wallet_key.address, scope="contribute", reason="contribution_abuse",
                       statement="Faked uptime.", moderator=moderator)
        assert error(post(url, heartbeat_body(key, seq=1, nonce=device.nonce))) == (403, "banned")
        assert not Heartbeat.objects.filter(device=device).exists()
        bans.lift(ban_id=row.pk, statement="Lifted.", moderator=moderator)
        response = post(url, heartbeat_body(key, seq=1, nonce=device.nonce))
        assert response.status_code == 200, response.text
        assert Heartbeat.objects.filter(device=device, seq=1).exists()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(15)


# Ban evasion -------------------------------------------------------------------------------------


def test_wallets_sharing_a_payout_a_device_or_a_network_with_a_banned_one_are_listed_with_the_evidence(mod):
    banned = wallet_user(Account.create().address)
    same_payout, same_device, same_net, same_net6, elsewhere = (wallet_user(Account.create().address)
                                                                for _ in range(5))
    shared_payout = Account.create().address
    services.create_dataset(owner=banned, title="A", license="CC0-1.0", payout_address=shared_payout)
    services.create_dataset(owner=same_payout, title="B", license="CC0-1.0", payout_address=shared_payout)
    services.create_dataset(owner=elsewhere, title="C", license="CC0-1.0", payout_address=Account.create().address)
    device = Device.objects.create(address=Account.create().address)
    BindingEvent.objects.create(device=device, wallet=banned.address, action="bound", via="signatures")
    BindingEvent.objects.create(device=device, wallet=same_device.address, action="bound", via="signatures")
    day = "2026-12-01"
    AddressWallet.objects.create(day=day, ip="203.0.113.7", wallet=banned.address)
    AddressWallet.objects.create(day=day, ip="203.0.113.200", wallet=same_net.address)
    AddressWallet.objects.create(day=day, ip="203.0.114.7", wallet=elsewhere.address)
    AddressWallet.objects.create(day=day, ip="2001:db8:aa:bb00::1", wallet=banned.address)
    AddressWallet.objects.create(day=day, ip="2001:db8:aa:bbff::9", wallet=same_net6.address)
    AddressWallet.objects.create(day=day, ip="2001:db8:aa:cc00::9", wallet=elsewhere.address)
    assert mod.get(EVASION).json() == [], "nobody is banned yet"
    ban(mod, banned.address, "publish")

    found = {(row["suspect"], row["kind"], row["evidence"]) for row in mod.get(EVASION).json()}
    assert found == {
        (same_payout.address, "payout", shared_payout),
        (same_device.address, "device", device.address),
        (same_net.address, "network", "203.0.113.0/24"),
        (same_net6.address, "network", "2001:db8:aa:bb00::/56"),
    }
    assert all(row["banned"] == banned.address for row in mod.get(EVASION, {"banned": banned.address}).json())
    assert mod.get(EVASION, {"banned": "0xnope"}).status_code == 400
    assert mod.get(EVASION, {"wallet": banned.address}).status_code == 400
    page = mod.get("/moderation/bans").content.decode()
    for suspect in (same_payout, same_device, same_net, same_net6):
        assert f'data-suspect="{suspect.address}"' in page
    assert f'data-suspect="{elsewhere.address}"' not in page
    suspect_page = mod.get(f"/moderation/wallets/{same_device.address}").content.decode()
    assert "data-suspected" in suspect_page and device.address in suspect_page
    # A suspect banned in turn is no longer a suspect.
    ban(mod, same_payout.address, "publish")
    assert same_payout.address not in {row["suspect"] for row in mod.get(EVASION).json()}


@pytest.mark.chain
@pytest.mark.django_db(transaction=True)
def test_a_banned_buyer_still_confirms_and_disputes_paid_orders_through_the_relay(chain, no_worker):
    from tests.integration.test_operator_sender import bought
    from tests.integration.test_relay import post, signed

    seller, buyer = Account.from_key(DEV_KEYS[1]), Account.from_key(DEV_KEYS[2])
    chain.token.mint(buyer.address, 1_000 * 10**6)
    chain.send(chain.token.contract.functions.approve(chain.market.address, 10**12), buyer.address)
    to_confirm, to_dispute = bought(chain, seller, buyer, "one"), bought(chain, seller, buyer, "two")
    indexer.index_chain(chain.w3)
    mod = client_of(user("mod", "moderator"))
    ban(mod, buyer.address, "buy")
    client = Client()
    for order_id, action in ((to_confirm, "confirm"), (to_dispute, "dispute")):
        queued = post(client, order_id, signed(chain, buyer, action, order_id))
        assert queued.status_code == 202, queued.json()
    assert sender.send_operator_actions().confirmed == 2
    indexer.index_chain(chain.w3)
    assert Order.objects.get(order_id=to_confirm).status == "released"
    assert Order.objects.get(order_id=to_dispute).status == "disputed"


def test_the_ban_action_itself_refuses_what_the_api_would(moderator, wallet):
    from marketplace.moderation import bans

    good = dict(address=wallet.address, scope="buy", reason="fraud", statement="Why.", moderator=moderator)
    for change, refusal in (({"address": "0x12"}, "invalid_address"), ({"scope": "sell"}, "invalid_scope"),
                            ({"reason": "nope"}, "invalid_reason"), ({"statement": " "}, "invalid_statement"),
                            ({"statement": "x" * 2001}, "invalid_statement")):
        with pytest.raises(bans.BanRefused) as refused:
            bans.ban(**{**good, **change})
        assert refused.value.code == refusal and refused.value.status == 400
    assert not WalletBan.objects.exists() and not AuditEntry.objects.exists()
