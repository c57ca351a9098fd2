"""The test token accepts EIP-2612 permits and EIP-3009 authorizations signed in Python with
eth-account (as wallets and x402 clients sign them) and rejects a replay of either."""
import os
import time

from eth_account import Account
import pytest
from web3 import Web3
from web3.exceptions import ContractCustomError, ContractLogicError

from tests.conftest import DEV_KEYS

pytestmark = pytest.mark.chain

TRANSFER_WITH_AUTHORIZATION = {
    "TransferWithAuthorization": [
        {"name": "from", "type": "address"},
        {"name": "to", "type": "address"},
        {"name": "value", "type": "uint256"},
        {"name": "validAfter", "type": "uint256"},
        {"name": "validBefore", "type": "uint256"},
        {"name": "nonce", "type": "bytes32"},
    ]
}
PERMIT = {
    "Permit": [
        {"name": "owner", "type": "address"},
        {"name": "spender", "type": "address"},
        {"name": "value", "type": "uint256"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ]
}


@pytest.fixture
def holder(chain):
    account = Account.from_key(DEV_KEYS[1])
    chain.token.mint(account.address, 500 * 10**6)
    return account


def reverted_with(error, signature):
    """True when a ContractCustomError carries the selector of the custom error `signature`."""
    data = error.data if isinstance(error.data, str) else error.args[0]
    return data[:10] == "0x" + Web3.keccak(text=signature)[:4].hex()


def send(chain, call, sender):
    tx_hash = call.transact({"from": sender})
    return chain.w3.eth.wait_for_transaction_receipt(tx_hash)


def sign_authorization(token, signer, to, value, *, valid_for=300):
    """An EIP-3009 TransferWithAuthorization, signed as x402's `exact` scheme signs it."""
    now = token.w3.eth.get_block("latest")["timestamp"]  # the chain's clock, not ours
    message = {
        "from": signer.address,
        "to": to,
        "value": value,
        "validAfter": now - 600,
        "validBefore": now + valid_for,
        "nonce": os.urandom(32),
    }
    signed = Account.sign_typed_data(signer.key, token.eip712_domain(), TRANSFER_WITH_AUTHORIZATION, message)
    return message, signed


def test_token_is_usdc_like(chain):
    assert chain.token.decimals() == 6
    domain = chain.token.eip712_domain()
    assert domain["chainId"] == chain.w3.eth.chain_id
    assert domain["verifyingContract"] == chain.token.address
    assert domain["version"] == "2"


def test_permit_signed_in_python_sets_allowance_once(chain, holder):
    spender = Account.from_key(DEV_KEYS[2]).address
    message = {
        "owner": holder.address,
        "spender": spender,
        "value": 123 * 10**6,
        "nonce": chain.token.nonces(holder.address),
        "deadline": int(time.time()) + 3600,
    }
    signed = Account.sign_typed_data(holder.key, chain.token.eip712_domain(), PERMIT, message)
    permit = chain.token.contract.functions.permit(
        holder.address, spender, message["value"], message["deadline"], signed.v,
        signed.r.to_bytes(32, "big"), signed.s.to_bytes(32, "big"),
    )
    relayer = chain.operator.address  # anyone may submit a permit
    assert send(chain, permit, relayer)["status"] == 1
    assert chain.token.allowance(holder.address, spender) == 123 * 10**6
    assert chain.token.nonces(holder.address) == 1

    with pytest.raises((ContractCustomError, ContractLogicError)):
        permit.transact({"from": relayer})  # the same signature again: the nonce moved on


@pytest.mark.parametrize("overload", ["vrs", "bytes"])
def test_transfer_with_authorization_moves_funds_and_rejects_replay(chain, holder, overload):
    payee = Account.from_key(DEV_KEYS[3]).address
    value = 42_500_000
    message, signed = sign_authorization(chain.token, holder, payee, value)
    args = [message[k] for k in ("from", "to", "value", "validAfter", "validBefore", "nonce")]
    if overload == "vrs":
        call = chain.token.contract.get_function_by_signature(
            "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,uint8,bytes32,bytes32)"
        )(*args, signed.v, signed.r.to_bytes(32, "big"), signed.s.to_bytes(32, "big"))
    else:
        call = chain.token.contract.get_function_by_signature(
            "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,bytes)"
        )(*args, signed.signature)
    before = chain.token.balance_of(payee)
    relayer = chain.operator.address  # the payer holds no ETH: someone else submits it

    assert send(chain, call, relayer)["status"] == 1
    assert chain.token.balance_of(payee) - before == value
    assert chain.token.authorization_state(holder.address, message["nonce"]) is True

    with pytest.raises(ContractCustomError) as replay:
        call.transact({"from": relayer})
    assert reverted_with(replay.value, "TestUSDCAuthorizationUsedOrCanceled(address,bytes32)")
    assert chain.token.balance_of(payee) - before == value


def test_expired_authorization_is_rejected(chain, holder):
    payee = Account.from_key(DEV_KEYS[3]).address
    message, signed = sign_authorization(chain.token, holder, payee, 1_000_000, valid_for=-60)
    args = [message[k] for k in ("from", "to", "value", "validAfter", "validBefore", "nonce")]
    call = chain.token.contract.get_function_by_signature(
        "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,bytes)"
    )(*args, signed.signature)
    with pytest.raises(ContractCustomError) as expired:
        call.transact({"from": chain.operator.address})
    assert reverted_with(expired.value, "TestUSDCAuthorizationExpired(uint256)")
