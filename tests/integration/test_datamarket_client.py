"""The buyer's client (`datamarket`) against a live server, anvil with the real contracts and the
chain indexer running as beat would run it: search, buy with a permit, wait for the order,
download with a signed request and check the sha256 against the chain, resume a partial
download, refuse a file that does not match, the library, and a DataFrame."""
import threading

from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.db import connection
from eth_account import Account
import pytest

from marketplace import datamarket
from marketplace.accounts.services import wallet_user
from marketplace.catalog.indexing import SearchSync
from marketplace.catalog.models import Dataset, DatasetVersion
from marketplace.chain import indexer
from marketplace.datamarket import Client, ClientError
from tests.conftest import DEV_KEYS
from tests.integration.test_listing import PRICE, link, send_prepared

pytestmark = [pytest.mark.chain, pytest.mark.django_db(transaction=True)]

CONTENT = ("station,year,rain_mm\n" + "".join(f"S{i % 97},{1900 + i % 120},{(i * 37) % 2000}\n"
                                                 for i in range(150_000))).encode()
BUYER_KEY = DEV_KEYS[2]


@pytest.fixture
def on_sale(chain, client, settings, tmp_path):
    """A listed, approved dataset whose version's file is CONTENT, searchable."""
    import hashlib

    settings.SEARCH_INDEX_DIR = tmp_path / "search"
    # The live server speaks plain HTTP: cookies marked Secure would not come back from requests.
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = False
    publisher = wallet_user(Account.from_key(DEV_KEYS[1]).address)
    client.force_login(publisher)
    dataset = Dataset.objects.create(owner=publisher, slug="rainfall", title="Rainfall by station",
                                     license="CC-BY-4.0", payout_address=publisher.address)
    name = storages["private"].save("datasets/client-test/rainfall.csv", ContentFile(CONTENT))
    version = DatasetVersion.objects.create(
        dataset=dataset, number=1, file=name, original_name="rainfall.csv", format="csv", size=len(CONTENT),
        content_hash="0x" + hashlib.sha256(CONTENT).hexdigest(), price=PRICE, token=chain.token.address,
        analysis_status="done")
    assert link(client, version, send_prepared(chain, client, version)).status_code == 201
    listing = version.listings.get()
    chain.send(chain.market.contract.functions.setApproval([int(listing.listing_id)], True), chain.operator.address)
    listing.approved = True
    listing.save()
    version.review = "approved"
    version.save()
    Dataset.objects.filter(pk=dataset.pk).update(status="listed", published_at="2026-01-01T00:00:00Z")
    SearchSync().rebuild()
    chain.token.mint(Account.from_key(BUYER_KEY).address, 10 * PRICE)
    client.logout()
    yield version
    storages["private"].delete(name)


@pytest.fixture
def beat(chain):
    """The indexer every 0.2 s, as beat runs it every second."""
    stop = threading.Event()

    def run():
        while not stop.wait(0.2):
            indexer.index_chain(chain.w3)
        connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(10)


def test_search_buy_download_resume_and_load(live_server, chain, on_sale, beat, tmp_path):
    client = Client(live_server.url, account=Account.from_key(BUYER_KEY), rpc_url=chain.url)
    assert [hit["slug"] for hit in client.search("rainfall")["results"]] == ["rainfall"]

    order = client.buy("rainfall")
    assert order["status"] == "open" and order["amount"] == str(PRICE) and order["dataset"] == "rainfall"
    assert chain.market.has_access(int(order["listing_id"]), client.account.address)
    assert chain.token.allowance(client.account.address, chain.market.address) == 0  # a permit for the price only
    assert [o["order_id"] for o in client.library()] == [order["order_id"]]

    path = client.download("rainfall", tmp_path / "rainfall.csv")
    assert path.read_bytes() == CONTENT

    # Cut after a megabyte, resumed: the same file.
    resumed = tmp_path / "again.csv"
    (tmp_path / "again.csv.part").write_bytes(CONTENT[:1 << 20])
    assert client.download("rainfall", resumed).read_bytes() == CONTENT

    # A partial file that is not this file's beginning: resumed onto it, the whole is refused.
    bad = tmp_path / "bad.csv"
    (tmp_path / "bad.csv.part").write_bytes(b"x" * 1000)
    with pytest.raises(ClientError, match="not .* as listed on-chain"):
        client.download("rainfall", bad)
    assert not bad.exists() and (tmp_path / "bad.csv.mismatch").exists()

    frame = client.load("rainfall", directory=tmp_path)
    assert list(frame.columns) == ["station", "year", "rain_mm"] and len(frame) == 150_000


def test_the_command_line(live_server, chain, on_sale, beat, tmp_path, monkeypatch, capsys):
    server = ["--server", live_server.url, "--rpc-url", chain.url]
    assert datamarket.main([*server, "search", "rainfall"]) == 0
    assert "rainfall" in capsys.readouterr().out
    monkeypatch.setattr("getpass.getpass", lambda prompt: BUYER_KEY)  # the key is typed at the prompt
    assert datamarket.main([*server, "buy", "rainfall"]) == 0
    assert "bought rainfall version 1" in capsys.readouterr().out
    output = tmp_path / "out.csv"
    assert datamarket.main([*server, "download", "rainfall", "-o", str(output)]) == 0
    assert output.read_bytes() == CONTENT
    assert datamarket.main([*server, "library"]) == 0
    assert "rainfall" in capsys.readouterr().out

    monkeypatch.setattr("getpass.getpass", lambda prompt: DEV_KEYS[3])  # a wallet that bought nothing
    assert datamarket.main([*server, "download", "rainfall", "-o", str(tmp_path / "no.csv")]) == 1
    assert "not_bought" in capsys.readouterr().err
    assert datamarket.main(["--server", "http://127.0.0.1:9", "search"]) == 1
    assert "did not answer" in capsys.readouterr().err


@pytest.fixture
def operator_sender(chain):
    """The operator sender every 0.2 s, as beat and the relay's enqueue run it."""
    from marketplace.chain import sender

    stop = threading.Event()

    def run():
        while not stop.wait(0.2):
            sender.send_operator_actions(timeout=5)
        connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(20)


def test_a_buyer_without_gas_disputes_through_the_relay_and_bad_orders_are_explained(
        live_server, chain, on_sale, beat, operator_sender, monkeypatch, capsys):
    buyer = Account.from_key(BUYER_KEY)
    client = Client(live_server.url, account=buyer, rpc_url=chain.url)
    order = client.buy("rainfall")
    gas = chain.w3.eth.get_balance(buyer.address)

    done = client.relay("dispute", int(order["order_id"]))

    assert done["status"] == "confirmed" and done["action"] == "dispute"
    assert chain.market.get_order(int(order["order_id"]))["status"] == "disputed"
    assert chain.w3.eth.get_balance(buyer.address) == gas, "the operator paid the gas"
    with pytest.raises(ClientError, match="order_not_open"):
        client.relay("confirm", int(order["order_id"]))
    monkeypatch.setattr(datamarket, "_account_from", lambda args: buyer)
    assert datamarket.main(["--server", live_server.url, "--rpc-url", chain.url, "dispute", "999"]) == 1
    assert "unknown_order" in capsys.readouterr().err
