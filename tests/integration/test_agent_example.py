"""The README's agent (scripts/agent_example.py) against a live server and anvil: it finds a
listing read from the chain through /discovery/resources, reads the paid URL's 402 with the x402
package, and the official client signs a payment from a key that holds only the token, which the
market's checks accept; end to end, the official `x402_requests` session pays the paid URL and the
file's sha256 is the listed content hash, the order the buyer's; a wallet registered to an agent
key pays only with the key in X-Agent-Key. It refuses a 402 that asks another price than the list,
or more than its budget."""
import importlib.util
from pathlib import Path
import secrets

from eth_account import Account
import pytest
import requests
from x402.http.utils import encode_payment_signature_header
from x402.schemas import PaymentPayload

from marketplace.payments import x402 as headers
from marketplace.payments.verify import requirement_for, verify
from tests.integration import test_discovery
from tests.integration.test_listing import PRICE

pytestmark = [pytest.mark.chain, pytest.mark.django_db(transaction=True)]
# The listing read from anvil that test_discovery builds, and what it needs.
index_dir, publisher, on_sale = test_discovery.index_dir, test_discovery.publisher, test_discovery.on_sale
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "agent_example.py"


@pytest.fixture(scope="module")
def agent():
    spec = importlib.util.spec_from_file_location("agent_example", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def a_402(item, listing_id, amount=None) -> requests.Response:
    """What the paid URL answers without payment (built by marketplace.payments.x402 from the
    listing as the chain has it), as requests hands it to the agent."""
    requirement = requirement_for(listing_id, resource=item["resource"], mime_type="text/csv")
    if amount is not None:
        requirement = type(requirement)(**{**requirement.__dict__, "amount": amount})
    response = requests.Response()
    response.status_code = 402
    response.headers["PAYMENT-REQUIRED"] = headers.payment_required_header(
        requirement, sign_in_nonce=secrets.token_hex(16), domain="testserver")
    response.headers["content-type"] = "application/json"
    response._content = b"{}"
    return response


def test_the_agent_finds_reads_the_402_and_signs_a_payment_the_market_accepts(agent, live_server, chain, on_sale):
    version, listing_id = on_sale
    item = agent.find(live_server.url, "cities")
    assert item["resource"].endswith(f"/pay/{listing_id}") and item["metadata"]["sha256"] == version.content_hash

    key = Account.create()  # a fresh wallet holding only the token: no ETH
    chain.token.mint(key.address, PRICE)
    assert chain.w3.eth.get_balance(key.address) == 0
    accepts = agent.offer(a_402(item, listing_id), item, max_price=PRICE)
    assert accepts.amount == str(PRICE) and accepts.pay_to == chain.market.address

    client = agent.paying_client(key, accepts, max_price=PRICE)
    required = agent.x402HTTPClientSync(client).get_payment_required_response(
        a_402(item, listing_id).headers.get, None)
    payload = client.create_payment_payload(required)
    value = encode_payment_signature_header(PaymentPayload.model_validate(payload.model_dump(by_alias=True)))
    requirement = requirement_for(listing_id, resource=item["resource"])
    assert verify(headers.parse_payment_signature(value), requirement) == key.address


def test_the_agent_refuses_another_price_or_more_than_its_budget(agent, live_server, chain, on_sale):
    _, listing_id = on_sale
    item = agent.find(live_server.url, "cities")
    with pytest.raises(agent.Refused, match="does not ask what the discovery list said"):
        agent.offer(a_402(item, listing_id, amount=PRICE + 1), item, max_price=10 * PRICE)
    with pytest.raises(agent.Refused, match="above the budget"):
        agent.offer(a_402(item, listing_id), item, max_price=PRICE - 1)
    with pytest.raises(agent.Refused, match="nothing on sale matches"):
        agent.find(live_server.url, "no-such-dataset-anywhere")


def test_the_agent_pays_and_downloads_end_to_end(agent, live_server, chain, on_sale, no_worker, tmp_path):
    """What issue 21 is checked by: an x402 client not written for this project pays from a fresh
    wallet holding only the token, gets the file, and holds an ordinary escrowed order."""
    from django.core.files.base import ContentFile
    from django.core.files.storage import storages

    from marketplace.catalog.models import DatasetVersion
    from marketplace.orders.models import Order

    version, listing_id = on_sale
    content = b"cities 1"  # the content hash test_listing.make_version lists
    storage = storages["private"]
    storage.delete(version.file)
    assert storage.save(version.file, ContentFile(content)) == version.file
    DatasetVersion.objects.filter(pk=version.pk).update(size=len(content))
    item = agent.find(live_server.url, "cities")
    key = Account.create()
    chain.token.mint(key.address, PRICE)
    try:
        path = agent.buy(item, key.key.hex(), max_price=PRICE, out=tmp_path)
    finally:
        storage.delete(version.file)
    assert path.read_bytes() == content and chain.token.balance_of(key.address) == 0
    (order,) = Order.objects.filter(buyer=key.address)
    assert int(order.listing_id) == listing_id and order.status == "open" and order.amount == PRICE
    assert chain.w3.eth.get_balance(key.address) == 0, "no ETH was ever needed"


def test_an_agent_whose_wallet_has_a_key_pays_only_with_it(agent, live_server, chain, on_sale, no_worker,
                                                           tmp_path):
    from django.core.files.base import ContentFile
    from django.core.files.storage import storages

    from marketplace.accounts.models import AgentSpend
    from marketplace.accounts.services import wallet_user
    from marketplace.catalog.models import DatasetVersion
    from tests.integration.test_agent_keys import make_key

    version, listing_id = on_sale
    content = b"cities 1"
    storage = storages["private"]
    storage.delete(version.file)
    assert storage.save(version.file, ContentFile(content)) == version.file
    DatasetVersion.objects.filter(pk=version.pk).update(size=len(content))
    item = agent.find(live_server.url, "cities")
    wallet = Account.create()
    chain.token.mint(wallet.address, PRICE)
    secret = make_key(wallet_user(Account.create().address), signer=wallet.key, wallet=wallet.address,
                      max_per_purchase=PRICE, daily_cap=PRICE).secret
    try:
        with pytest.raises(agent.Refused, match="key_required"):
            agent.buy(item, wallet.key.hex(), max_price=PRICE, out=tmp_path)
        path = agent.buy(item, wallet.key.hex(), max_price=PRICE, out=tmp_path, api_key=secret)
    finally:
        storage.delete(version.file)
    assert path.read_bytes() == content and chain.token.balance_of(wallet.address) == 0
    spend = AgentSpend.objects.get(state="spent")
    assert spend.amount == PRICE and int(spend.listing_id) == listing_id
