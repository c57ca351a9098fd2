"""The web3 connection and the operator account that signs what the server sends."""
from functools import lru_cache
from urllib.parse import urlsplit

from django.conf import settings
from eth_account import Account
from web3 import Web3
from web3.middleware import SignAndSendRawMiddlewareBuilder, Web3Middleware

from marketplace.env import ANVIL_CHAIN_ID, is_dev_address


class OperatorKeyMissing(Exception):
    pass


class WrongChain(Exception):
    """The node at CHAIN_RPC_URL runs another chain than CHAIN_ID names."""


@lru_cache(maxsize=8)
def _web3(url, timeout):
    return Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": timeout}))


def get_web3(url=None):
    """A Web3 for the configured chain; requests time out after CHAIN_RPC_TIMEOUT seconds."""
    return _web3(url or settings.CHAIN_RPC_URL, settings.CHAIN_RPC_TIMEOUT)


@lru_cache(maxsize=8)
def _read_web3(url, timeout):
    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": timeout}))
    # web3's validation middleware asks the node for eth_chainId before every eth_call and gas
    # estimate (a round trip, and 1-2 ms of CPU building its formatters) to compare it with a
    # transaction's `chainId`, which reads never carry.
    w3.middleware_onion.remove("validation")
    w3.middleware_onion.add(PinnedChainId, name="pinned_chain_id")
    return w3


def read_web3(url=None):
    """A Web3 for the reads of a hot path (a paid download's checks, which a request waits on):
    without web3's validation middleware, and eth_chainId answered with CHAIN_ID (PinnedChainId)
    instead of being asked of the node. Nothing is signed or sent with it; what signs
    (operator_web3) asks the node itself first (check_chain_id), as get_web3() users do."""
    return _read_web3(url or settings.CHAIN_RPC_URL, settings.CHAIN_RPC_TIMEOUT)


def rpc_endpoint() -> str:
    """CHAIN_RPC_URL without what may be secret in it (a provider's key in the path or query,
    credentials before the host): what logs may name. Responses name neither."""
    parts = urlsplit(settings.CHAIN_RPC_URL)
    host = parts.hostname or "?"
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def redact_rpc_url(text: str) -> str:
    """`text` (an exception's message, say) with CHAIN_RPC_URL and its path replaced by
    rpc_endpoint(): requests names the URL's path apart from its host."""
    url = settings.CHAIN_RPC_URL
    parts = urlsplit(url)
    text = text.replace(url, rpc_endpoint())
    secret = parts.path + (f"?{parts.query}" if parts.query else "")
    if len(secret) > 1:
        text = text.replace(secret, "/…")
    if parts.password:
        text = text.replace(parts.password, "…")
    return text


def operator_account():
    key = settings.CHAIN_OPERATOR_KEY
    if not key:
        raise OperatorKeyMissing(
            "CHAIN_OPERATOR_KEY is not set: the server needs an operator key to send transactions"
        )
    return Account.from_key(key)


class PinnedChainId(Web3Middleware):
    """Answers eth_chainId with CHAIN_ID instead of asking the node: everything this Web3 signs
    (the signing middleware fills chainId from eth_chainId at every transaction) is for CHAIN_ID,
    so a node that turns out to run another chain (a failover behind one URL) refuses it."""

    def wrap_make_request(self, make_request):
        def middleware(method, params):
            if method == "eth_chainId":
                return {"jsonrpc": "2.0", "id": 0, "result": hex(settings.CHAIN_ID)}
            return make_request(method, params)
        return middleware


@lru_cache(maxsize=8)
def _signing_web3(url, timeout, key):
    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": timeout}))
    account = Account.from_key(key)
    w3.middleware_onion.inject(SignAndSendRawMiddlewareBuilder.build(account), layer=0)
    # Added last, so outermost: every request (the signing middleware's own eth_chainId too)
    # meets it before any other middleware or the node.
    w3.middleware_onion.add(PinnedChainId, name="pinned_chain_id")
    w3.eth.default_account = account.address
    return w3


def operator_web3(url=None):
    """A Web3 whose transactions are signed locally by the operator key, for chain CHAIN_ID only
    (PinnedChainId), once the node has said it runs that chain (WrongChain otherwise)."""
    account = operator_account()
    w3 = _signing_web3(url or settings.CHAIN_RPC_URL, settings.CHAIN_RPC_TIMEOUT, account.key.hex())
    check_signer(w3, account.address, "CHAIN_OPERATOR_KEY")
    return w3


def check_signer(w3, address: str, name: str) -> None:
    """Before the key of `address` (the setting `name`) signs anything for the node at `w3`: the
    node runs CHAIN_ID (check_chain_id), and if the key is one of anvil's public dev keys, the
    node itself says it runs anvil's chain (31337). CHAIN_ID alone is not trusted for that: the
    start-up check reads it from the environment, and a settings module or an override can change
    it after."""
    actual = check_chain_id(w3)
    if actual != ANVIL_CHAIN_ID and is_dev_address(address):
        raise WrongChain(
            f"{name} is one of anvil's public dev keys (address {address}) and the node at {rpc_endpoint()} runs "
            f"chain id {actual}, not anvil's {ANVIL_CHAIN_ID}: nothing is signed with it; give it a key of its own"
        )


def check_chain_id(w3) -> int:
    """Refuse a node that runs another chain than CHAIN_ID. Settings refuse anvil's public dev
    keys and addresses unless CHAIN_ID is anvil's; without this check a server left at the
    default CHAIN_ID but pointed at a real chain would deploy and sign there with them."""
    response = w3.provider.make_request("eth_chainId", [])  # the node itself, not PinnedChainId
    if "result" not in response:
        raise WrongChain(f"the node at {rpc_endpoint()} did not say which chain it runs")
    actual = int(response["result"], 16)
    if actual != settings.CHAIN_ID:
        raise WrongChain(
            f"the node at {rpc_endpoint()} runs chain id {actual}, but CHAIN_ID is {settings.CHAIN_ID}; "
            "set CHAIN_ID to the node's chain (nothing is signed or sent until they agree)"
        )
    return actual
