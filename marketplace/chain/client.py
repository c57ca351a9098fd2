"""The web3 connection and the operator account that signs what the server sends."""
from functools import lru_cache

from django.conf import settings
from eth_account import Account
from web3 import Web3
from web3.middleware import SignAndSendRawMiddlewareBuilder


class OperatorKeyMissing(Exception):
    pass


@lru_cache(maxsize=8)
def _web3(url, timeout):
    return Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": timeout}))


def get_web3(url=None):
    """A Web3 for the configured chain; requests time out after CHAIN_RPC_TIMEOUT seconds."""
    return _web3(url or settings.CHAIN_RPC_URL, settings.CHAIN_RPC_TIMEOUT)


def operator_account():
    key = settings.CHAIN_OPERATOR_KEY
    if not key:
        raise OperatorKeyMissing(
            "CHAIN_OPERATOR_KEY is not set: the server needs an operator key to send transactions"
        )
    return Account.from_key(key)


@lru_cache(maxsize=8)
def _signing_web3(url, timeout, key):
    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": timeout}))
    account = Account.from_key(key)
    w3.middleware_onion.inject(SignAndSendRawMiddlewareBuilder.build(account), layer=0)
    w3.eth.default_account = account.address
    return w3


def operator_web3(url=None):
    """A Web3 whose transactions are signed locally by the operator key."""
    account = operator_account()
    return _signing_web3(url or settings.CHAIN_RPC_URL, settings.CHAIN_RPC_TIMEOUT, account.key.hex())
