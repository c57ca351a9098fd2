"""A small AI agent that buys a dataset over HTTP 402 (x402 v2) with the official `x402` client.

It searches the market's discovery list, checks that the paid URL's 402 asks what the list said
(and no more than its budget), pays with a key that holds only the token (the signed EIP-3009
authorization costs it no gas: the market settles it), downloads the file and checks its sha256
against the content hash the list and the response give. Run it against the demo:

    AGENT_PRIVATE_KEY=0x... python scripts/agent_example.py --market http://localhost:8000 rainfall

A wallet registered to an agent key pays only with the key: set AGENT_API_KEY to its secret
(`dmk_...`), sent in the `X-Agent-Key` header.

Needs only `x402[evm,requests]` and `eth-account`; it imports nothing of the market's code.
"""
from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path
import sys

from eth_account import Account
import requests
from x402 import x402ClientSync
from x402.http import x402HTTPClientSync
from x402.http.clients import x402_requests
from x402.http.utils import decode_payment_response_header
from x402.mechanisms.evm.exact.register import register_exact_evm_client


class Refused(Exception):
    """Something the agent will not go on with; the message says why."""


def find(market: str, query: str, *, session=requests) -> dict:
    """The first dataset on sale that matches `query` (an x402 discovery item)."""
    response = session.get(f"{market.rstrip('/')}/discovery/resources", params={"q": query, "limit": 5}, timeout=30)
    if response.status_code != 200:
        raise Refused(f"discovery answered {response.status_code}: {response.text[:300]}")
    items = response.json()["items"]
    if not items:
        raise Refused(f"nothing on sale matches {query!r}")
    return items[0]


def offer(response, item: dict, *, max_price: int):
    """The 402's payment requirement, read with the x402 package, once it is what discovery said
    and within the budget."""
    if response.status_code != 402:
        raise Refused(f"the paid URL answered {response.status_code}, not 402: {response.text[:300]}")
    body = None
    if response.headers.get("content-type", "").startswith("application/json"):
        body = response.json()
    required = x402HTTPClientSync(x402ClientSync()).get_payment_required_response(response.headers.get, body)
    listed = item["accepts"][0]
    for accepts in required.accepts:
        if (accepts.scheme, accepts.network, accepts.asset, accepts.pay_to, accepts.amount) == (
                listed["scheme"], listed["network"], listed["asset"], listed["payTo"], listed["amount"]):
            if int(accepts.amount) > max_price:
                raise Refused(f"the price {accepts.amount} is above the budget of {max_price} base units")
            return accepts
    raise Refused("the 402 does not ask what the discovery list said: not paying")


def paying_client(account, accepts, *, max_price: int) -> x402ClientSync:
    """The official x402 client, signing with `account` for this network and this token only, up
    to `max_price` base units."""
    client = x402ClientSync()
    register_exact_evm_client(client, account, networks=accepts.network)
    client.set_spend_controls({"allowed_assets": [{"network": accepts.network, "asset": accepts.asset,
                                                   "max_amount_per_payment": str(max_price)}]})
    return client


def buy(item: dict, key: str, *, max_price: int, out: Path, api_key: str | None = None) -> Path:
    """Pay for the item's resource and save the file under `out`; its sha256 checked. `api_key`:
    the agent key the wallet is registered to, if any (the market refuses its payments without it)."""
    account = Account.from_key(key)
    accepts = offer(requests.get(item["resource"], timeout=30), item, max_price=max_price)
    print(f"paying {accepts.amount} base units of {accepts.asset} from {account.address} to {accepts.pay_to}")
    session = x402_requests(paying_client(account, accepts, max_price=max_price))
    if api_key:
        session.headers["X-Agent-Key"] = api_key
    with session.get(item["resource"], stream=True, timeout=120) as response:
        if response.status_code != 200:
            raise Refused(f"the paid request answered {response.status_code}: {response.text[:300]}")
        receipt = response.headers.get("PAYMENT-RESPONSE")
        if receipt:
            settled = decode_payment_response_header(receipt)
            print(f"settled in transaction {settled.transaction} on {settled.network} for {settled.payer}")
        digest = hashlib.sha256()
        path = out / f"{item['metadata'].get('dataset', 'dataset')}-v{item['metadata'].get('version', 1)}"
        with open(path, "wb") as file:
            for chunk in response.iter_content(1 << 16):
                digest.update(chunk)
                file.write(chunk)
        served = response.headers.get("X-Content-SHA256")
    expected = item["metadata"]["sha256"].removeprefix("0x")
    if digest.hexdigest() != expected or (served and served.removeprefix("0x") != expected):
        path.unlink()
        raise Refused(f"the file's sha256 {digest.hexdigest()} is not the listed content hash {expected}")
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("query", help="words to search the catalog for")
    parser.add_argument("--market", default="http://localhost:8000", help="the market's base URL")
    parser.add_argument("--max-price", type=int, default=100 * 10**6, help="budget in token base units")
    parser.add_argument("--out", type=Path, default=Path("."), help="directory for the file")
    args = parser.parse_args(argv)
    key = os.environ.get("AGENT_PRIVATE_KEY")
    if not key:
        parser.error("set AGENT_PRIVATE_KEY to the agent's key (a wallet holding the token, no ETH needed)")
    try:
        item = find(args.market, args.query)
        print(f"found {item['metadata']['title']!r} at {item['resource']}")
        path = buy(item, key, max_price=args.max_price, out=args.out, api_key=os.environ.get("AGENT_API_KEY"))
    except Refused as exc:
        print(f"not bought: {exc}", file=sys.stderr)
        return 1
    print(f"saved {path}; its sha256 matches the on-chain content hash")
    return 0


if __name__ == "__main__":
    sys.exit(main())
