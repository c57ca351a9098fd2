"""The buyer's client: a second real client of the API, using only the public API and the chain.

    datamarket --server URL search rainfall
    datamarket --server URL buy rainfall --keystore key.json          # the password is prompted
    datamarket --server URL download rainfall --keystore key.json -o rainfall.csv
    datamarket --server URL library --keystore key.json

From Python:

    from marketplace.datamarket import Client
    client = Client("http://127.0.0.1:8000", account=Account.from_key(...))
    client.buy("rainfall"); path = client.download("rainfall", "rainfall.csv"); frame = client.load("rainfall")

The key comes from a keystore file (its password prompted) or is prompted for itself, never from
the command line. `buy` pays with EIP-2612 permit in one transaction where the token has it, else
approves exactly the price, then purchases with `maxPrice` = the price it was shown, and waits for
the server to have read the order. `download` asks for a link with a signed request, resumes a
partial file with Range (If-Range: the content hash), and checks the sha256 against the content
hash listed on-chain: a mismatch is refused and the file set aside as `<name>.mismatch`.
"""
from __future__ import annotations

import argparse
from decimal import Decimal
import getpass
import hashlib
import json
from pathlib import Path
import secrets
import sys
import time

from eth_account import Account
from eth_account.messages import encode_defunct, encode_typed_data
import requests
from web3 import Web3

TOKEN_ABI = [
    {"name": "approve", "type": "function", "stateMutability": "nonpayable",
     "inputs": [{"name": "spender", "type": "address"}, {"name": "value", "type": "uint256"}],
     "outputs": [{"name": "", "type": "bool"}]},
    {"name": "nonces", "type": "function", "stateMutability": "view", "inputs": [{"name": "owner", "type": "address"}],
     "outputs": [{"name": "", "type": "uint256"}]},
    {"name": "eip712Domain", "type": "function", "stateMutability": "view", "inputs": [],
     "outputs": [{"name": "fields", "type": "bytes1"}, {"name": "name", "type": "string"},
                 {"name": "version", "type": "string"}, {"name": "chainId", "type": "uint256"},
                 {"name": "verifyingContract", "type": "address"}, {"name": "salt", "type": "bytes32"},
                 {"name": "extensions", "type": "uint256[]"}]},
    {"name": "balanceOf", "type": "function", "stateMutability": "view",
     "inputs": [{"name": "account", "type": "address"}], "outputs": [{"name": "", "type": "uint256"}]},
]
MARKET_ABI = [
    {"name": "purchase", "type": "function", "stateMutability": "nonpayable",
     "inputs": [{"name": "listingId", "type": "uint256"}, {"name": "maxPrice", "type": "uint256"}],
     "outputs": [{"name": "orderId", "type": "uint256"}]},
    {"name": "purchaseWithPermit", "type": "function", "stateMutability": "nonpayable",
     "inputs": [{"name": "listingId", "type": "uint256"}, {"name": "maxPrice", "type": "uint256"},
                {"name": "deadline", "type": "uint256"}, {"name": "v", "type": "uint8"}, {"name": "r", "type": "bytes32"},
                {"name": "s", "type": "bytes32"}],
     "outputs": [{"name": "orderId", "type": "uint256"}]},
    {"name": "getListing", "type": "function", "stateMutability": "view",
     "inputs": [{"name": "listingId", "type": "uint256"}],
     "outputs": [{"name": "", "type": "tuple", "components": [
         {"name": "owner", "type": "address"}, {"name": "token", "type": "address"}, {"name": "payout", "type": "address"},
         {"name": "price", "type": "uint256"}, {"name": "contentHash", "type": "bytes32"},
         {"name": "disputeWindow", "type": "uint32"}, {"name": "active", "type": "bool"},
         {"name": "approved", "type": "bool"}]}]},
]
PERMIT_TYPES = {"Permit": [{"name": n, "type": t} for n, t in (
    ("owner", "address"), ("spender", "address"), ("value", "uint256"), ("nonce", "uint256"), ("deadline", "uint256"))]}
DOWNLOAD_TYPES = [{"name": "buyer", "type": "address"}, {"name": "contentHash", "type": "bytes32"},
                  {"name": "expiry", "type": "uint256"}, {"name": "nonce", "type": "bytes32"}]
CHUNK = 1 << 20


class ClientError(Exception):
    """What went wrong, in words for the person running the client."""


class Client:
    def __init__(self, server: str, *, account=None, rpc_url: str | None = None, timeout: float = 30):
        self.server = server.rstrip("/")
        self.account = account
        self.http = requests.Session()  # no cookies: public reads, and signed requests prove themselves
        self.signed_in = requests.Session()  # the SIWE session, for the library only
        self.timeout = timeout
        self._rpc_url = rpc_url
        self._chain = None
        self._signed_in = False

    # -- the API ----------------------------------------------------------------------------

    def _api(self, method: str, path: str, *, session=None, **kwargs):
        try:
            response = (session or self.http).request(method, f"{self.server}/api/v1/{path}", timeout=self.timeout,
                                                      **kwargs)
        except requests.RequestException as exc:
            raise ClientError(f"the server at {self.server} did not answer ({type(exc).__name__})") from None
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
                raise ClientError(f"{error['message']} ({error['code']}, HTTP {response.status_code})")
            except (ValueError, KeyError, TypeError):
                raise ClientError(f"HTTP {response.status_code} from {path}") from None
        return response.json()

    def chain(self) -> dict:
        if self._chain is None:
            self._chain = self._api("GET", "chain")
        return self._chain

    def search(self, q: str = "", **filters) -> dict:
        return self._api("GET", "search", params={"q": q, **filters})

    def dataset(self, slug: str) -> dict:
        return self._api("GET", f"datasets/{slug}")

    def _version(self, slug: str, number: int | None) -> dict:
        versions = [v for v in self.dataset(slug)["versions"] if number is None or v["number"] == number]
        if not versions:
            raise ClientError(f"{slug} has no version {number}" if number else f"{slug} has no public version")
        return max(versions, key=lambda v: v["number"])

    def sign_in(self) -> None:
        """A session for the account (Sign-In with Ethereum), for the library."""
        if self._signed_in:
            return
        issued = self._api("POST", "auth/nonce", json={"address": self._account().address}, session=self.signed_in)
        signature = self._account().sign_message(encode_defunct(text=issued["message"])).signature
        self._api("POST", "auth/sign-in", json={"message": issued["message"], "signature": "0x" + bytes(signature).hex()},
                  session=self.signed_in)
        self._signed_in = True

    def library(self) -> list[dict]:
        self.sign_in()
        return self._api("GET", "me/orders", session=self.signed_in)

    def relay(self, action: str, order_id: int, *, wait: float = 120) -> dict:
        """Confirm (pay the owner now) or dispute an order without spending gas: the key signs the
        market's EIP-712 ConfirmOrder / DisputeOrder and the server's operator sends it. Waits
        until the chain has it; returns the relayed action."""
        if action not in ("confirm", "dispute"):
            raise ClientError("the action is confirm or dispute")
        info = self.chain()
        nonce = "0x" + secrets.token_hex(32)
        deadline = int(time.time()) + 3600
        primary = "ConfirmOrder" if action == "confirm" else "DisputeOrder"
        typed = {
            "types": {"EIP712Domain": [{"name": "name", "type": "string"}, {"name": "version", "type": "string"},
                                       {"name": "chainId", "type": "uint256"},
                                       {"name": "verifyingContract", "type": "address"}],
                      primary: [{"name": "orderId", "type": "uint256"}, {"name": "nonce", "type": "bytes32"},
                                {"name": "deadline", "type": "uint256"}]},
            "primaryType": primary,
            "domain": {"name": "DataMarket", "version": "1", "chainId": info["chain_id"],
                       "verifyingContract": info["market"]},
            "message": {"orderId": int(order_id), "nonce": nonce, "deadline": deadline},
        }
        signature = self._account().sign_typed_data(full_message=typed).signature
        queued = self._api("POST", f"orders/{int(order_id)}/relay", json={
            "action": action, "nonce": nonce, "deadline": deadline, "signature": "0x" + bytes(signature).hex()})
        until = time.monotonic() + wait
        while queued["status"] in ("pending", "sent"):
            if time.monotonic() > until:
                raise ClientError(f"the server has not sent the {action} yet (relayed action {queued['id']}); "
                                  "it goes on trying")
            time.sleep(1)
            queued = self._api("GET", f"relay/{queued['id']}")
        if queued["status"] != "confirmed":
            raise ClientError(f"the {action} was not done: {queued['error'] or queued['status']}")
        return queued

    # -- the chain ---------------------------------------------------------------------------

    def _account(self):
        if self.account is None:
            raise ClientError("this needs the buyer's key: give a keystore file (or answer the prompt)")
        return self.account

    def _w3(self) -> Web3:
        if not self._rpc_url:
            raise ClientError("this needs the chain: give --rpc-url (the node the market's chain is on)")
        w3 = Web3(Web3.HTTPProvider(self._rpc_url, request_kwargs={"timeout": self.timeout}))
        if w3.eth.chain_id != self.chain()["chain_id"]:
            raise ClientError(f"the node at --rpc-url runs chain {w3.eth.chain_id}, the market is on "
                              f"{self.chain()['chain_id']}")
        return w3

    def _send(self, w3: Web3, call) -> dict:
        account = self._account()
        tx = call.build_transaction({"from": account.address, "nonce": w3.eth.get_transaction_count(account.address),
                                     "chainId": w3.eth.chain_id})
        signed = account.sign_transaction(tx)
        receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(signed.raw_transaction),
                                                      timeout=120)
        if receipt["status"] != 1:
            raise ClientError(f"transaction {receipt['transactionHash'].hex()} reverted")
        return receipt

    def buy(self, slug: str, number: int | None = None, *, wait: float = 60) -> dict:
        """Buy a version (the latest public one by default) and wait for the server to count the
        order; returns the order as the library shows it."""
        version = self._version(slug, number)
        listing = version.get("listing")
        if not listing or not listing["approved"] or not listing["active"]:
            raise ClientError(f"{slug} version {version['number']} is not for sale")
        market_address = self.chain()["market"]
        w3 = self._w3()
        account = self._account()
        price, listing_id = int(listing["price"]), int(listing["listing_id"])
        token = w3.eth.contract(address=Web3.to_checksum_address(version["token"]), abi=TOKEN_ABI)
        if token.functions.balanceOf(account.address).call() < price:
            raise ClientError(f"{account.address} holds less than the price ({price} base units of {token.address})")
        market = w3.eth.contract(address=market_address, abi=MARKET_ABI)
        if self._has_permit(token):
            deadline = int(time.time()) + 600
            name, token_version = token.functions.eip712Domain().call()[1:3]
            permit = account.sign_message(encode_typed_data(full_message={
                "types": {"EIP712Domain": [{"name": "name", "type": "string"}, {"name": "version", "type": "string"},
                                           {"name": "chainId", "type": "uint256"},
                                           {"name": "verifyingContract", "type": "address"}], **PERMIT_TYPES},
                "primaryType": "Permit",
                "domain": {"name": name, "version": token_version, "chainId": w3.eth.chain_id,
                           "verifyingContract": token.address},
                "message": {"owner": account.address, "spender": market_address, "value": price,
                            "nonce": token.functions.nonces(account.address).call(), "deadline": deadline}}))
            receipt = self._send(w3, market.functions.purchaseWithPermit(
                listing_id, price, deadline, permit.v, permit.r.to_bytes(32, "big"), permit.s.to_bytes(32, "big")))
        else:
            self._send(w3, token.functions.approve(market_address, price))  # exactly the price, never unlimited
            receipt = self._send(w3, market.functions.purchase(listing_id, price))
        tx_hash = "0x" + bytes(receipt["transactionHash"]).hex()
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            for order in self.library():
                if order["tx_hash"] == tx_hash:
                    return order
            time.sleep(0.5)
        raise ClientError(f"paid in {tx_hash}, but the server has not counted the order after {wait:.0f} s; "
                          "`datamarket library` shows it once it has")

    @staticmethod
    def _has_permit(token) -> bool:
        try:
            token.functions.eip712Domain().call()
            token.functions.nonces(token.address).call()
            return True
        except Exception:
            return False

    # -- downloads ---------------------------------------------------------------------------

    def _link(self, slug: str, version: dict) -> dict:
        account = self._account()
        chain = self.chain()
        request = {"buyer": account.address, "contentHash": version["content_hash"],
                   "expiry": int(time.time()) + 300, "nonce": "0x" + secrets.token_hex(32)}
        signature = account.sign_message(encode_typed_data(full_message={
            "types": {"EIP712Domain": [{"name": "name", "type": "string"}, {"name": "version", "type": "string"},
                                       {"name": "chainId", "type": "uint256"},
                                       {"name": "verifyingContract", "type": "address"}],
                      "DownloadRequest": DOWNLOAD_TYPES},
            "primaryType": "DownloadRequest", "domain": chain["download_domain"], "message": request})).signature
        return self._api("POST", f"datasets/{slug}/versions/{version['number']}/download", json={
            "buyer": request["buyer"], "expiry": request["expiry"], "nonce": request["nonce"],
            "signature": "0x" + bytes(signature).hex()})

    def _listed_hash(self, version: dict) -> str:
        """The content hash the chain lists for the version (the server's word is checked)."""
        if not self._rpc_url:
            return version["content_hash"].lower()
        market = self._w3().eth.contract(address=self.chain()["market"], abi=MARKET_ABI)
        listed = market.functions.getListing(int(version["listing"]["listing_id"])).call()
        return "0x" + bytes(listed[4]).hex()

    def download(self, slug: str, path: str | Path, number: int | None = None, *, progress=None) -> Path:
        """Download a bought version to `path`, resuming a partial `<path>.part`; returns `path`
        once its sha256 is the content hash listed on-chain."""
        version = self._version(slug, number)
        path = Path(path)
        part = path.with_name(path.name + ".part")
        expected = self._listed_hash(version)
        if expected != version["content_hash"].lower():
            raise ClientError(f"the server says {version['content_hash']}, the chain lists {expected}: refusing")
        link = self._link(slug, version)
        have = part.stat().st_size if part.exists() else 0
        headers = {"Range": f"bytes={have}-", "If-Range": f'"{expected[2:]}"'} if have else {}
        with self.http.get(self.server + link["url"], headers=headers, stream=True, timeout=self.timeout) as response:
            if response.status_code == 416:
                have, response = 0, None  # the part is the whole file already, or is of another file
            elif response.status_code not in (200, 206):
                raise ClientError(f"download refused: HTTP {response.status_code} {response.text[:200]}")
            if response is not None:
                if response.status_code == 200:
                    have = 0  # the server sends the whole file
                with open(part, "ab" if have else "wb") as out:
                    for chunk in response.iter_content(CHUNK):
                        out.write(chunk)
                        have += len(chunk)
                        if progress:
                            progress(have, link["size"])
        digest = hashlib.sha256()
        with open(part, "rb") as f:
            while chunk := f.read(CHUNK):
                digest.update(chunk)
        if "0x" + digest.hexdigest() != expected:
            bad = path.with_name(path.name + ".mismatch")
            part.replace(bad)
            raise ClientError(f"the file's sha256 is 0x{digest.hexdigest()}, not {expected} as listed on-chain; "
                              f"kept as {bad} and not used")
        part.replace(path)
        return path

    def load(self, slug: str, number: int | None = None, *, directory: str | Path = "."):
        """The version as a pandas DataFrame (downloaded first, checked as `download` does)."""
        import pandas

        version = self._version(slug, number)
        path = self.download(slug, Path(directory) / f"{slug}-v{version['number']}.{version['format']}", number)
        readers = {"csv": pandas.read_csv, "parquet": pandas.read_parquet,
                   "jsonl": lambda p: pandas.read_json(p, lines=True)}
        return readers[version["format"]](path)


def _account_from(args):
    if args.keystore:
        try:
            keystore = json.loads(Path(args.keystore).read_text())
        except (OSError, ValueError) as exc:
            raise ClientError(f"cannot read the keystore {args.keystore}: {exc}") from None
        try:
            return Account.from_key(Account.decrypt(keystore, getpass.getpass("Keystore password: ")))
        except ValueError:
            raise ClientError("wrong password for that keystore") from None
    key = getpass.getpass("Private key (hex, not echoed): ").strip()
    try:
        return Account.from_key(key)
    except Exception:
        raise ClientError("that is not a private key") from None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="datamarket", description="Search, buy and download datasets.")
    parser.add_argument("--server", default="http://127.0.0.1:8000", help="the marketplace's address")
    parser.add_argument("--rpc-url", default="http://127.0.0.1:8545", help="a node of the market's chain")
    parser.add_argument("--keystore", help="the buyer's keystore file (its password is prompted)")
    commands = parser.add_subparsers(dest="command", required=True)
    search = commands.add_parser("search", help="search the catalog")
    search.add_argument("words", nargs="*")
    for name in ("buy", "download"):
        command = commands.add_parser(name, help=f"{name} a dataset's latest public version (or --version)")
        command.add_argument("slug")
        command.add_argument("--version", type=int)
        if name == "download":
            command.add_argument("-o", "--output", help="where to write it (default: <slug>-v<n>.<format>)")
    commands.add_parser("library", help="what the key's wallet bought")
    for name, text in (("confirm", "pay the owner of one of your orders now"),
                       ("dispute", "dispute one of your orders while its window is open")):
        command = commands.add_parser(name, help=f"{text} (signed; the server sends it, you pay no gas)")
        command.add_argument("order_id", type=int)
    args = parser.parse_args(argv)
    try:
        client = Client(args.server, rpc_url=args.rpc_url)
        if args.command == "search":
            for hit in client.search(" ".join(args.words))["results"]:
                price = hit["price"]
                amount = f"{Decimal(price['amount']) / 10**6:,} ({price['format']})" if price else "-"
                print(f"{hit['slug']:<40} {amount:>16}  {hit['title']}")
            return 0
        client.account = _account_from(args)
        if args.command == "buy":
            order = client.buy(args.slug, args.version)
            print(f"bought {order['dataset']} version {order['version']}: order {order['order_id']}, "
                  f"in escrow until {order['release_at']}")
        elif args.command == "download":
            version = client._version(args.slug, args.version)
            output = args.output or f"{args.slug}-v{version['number']}.{version['format']}"
            path = client.download(args.slug, output, args.version, progress=_progress)
            print(f"\n{path}: {version['size']:,} bytes, sha256 {version['content_hash'][2:]} as listed on-chain")
        elif args.command in ("confirm", "dispute"):
            done = client.relay(args.command, args.order_id)
            print(f"order {args.order_id}: {args.command} sent in {done['tx_hash']}")
        elif args.command == "library":
            for order in client.library():
                print(f"{order['dataset'] or '?':<30} v{order['version'] or '?':<3} {order['status']:<9} "
                      f"order {order['order_id']:<6} {order['tx_hash']}")
        return 0
    except ClientError as exc:
        print(f"datamarket: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ndatamarket: stopped; a download resumes where it stopped", file=sys.stderr)
        return 130


def _progress(have, total):
    print(f"\r{have / 2**20:,.1f} of {total / 2**20:,.1f} MiB", end="", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
