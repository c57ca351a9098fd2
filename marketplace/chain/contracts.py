"""Thin typed wrappers over the deployed contracts; amounts are ints in base units."""
from eth_typing import ChecksumAddress
from web3 import Web3

from .artifacts import load_artifact


class ContractWrapper:
    artifact_name: str

    def __init__(self, w3: Web3, address: str):
        self.w3 = w3
        self.address: ChecksumAddress = Web3.to_checksum_address(address)
        self.contract = w3.eth.contract(address=self.address, abi=load_artifact(self.artifact_name).abi)

    def _transact(self, call, sender=None):
        """Send a state-changing call and wait for its receipt; raises on a revert."""
        tx = {"from": sender} if sender else {}
        tx_hash = call.transact(tx)
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)
        if receipt["status"] != 1:
            raise TransactionFailed(f"{self.artifact_name} transaction {tx_hash.hex()} reverted")
        return receipt


class TransactionFailed(Exception):
    pass


class TestUSDC(ContractWrapper):
    """The USDC-like test token: 6 decimals, EIP-2612 permit, EIP-3009 authorizations."""

    __test__ = False  # not a pytest test class
    artifact_name = "TestUSDC"

    def name(self) -> str:
        return self.contract.functions.name().call()

    def version(self) -> str:
        return self.contract.functions.eip712Domain().call()[2]

    def decimals(self) -> int:
        return self.contract.functions.decimals().call()

    def balance_of(self, account: str) -> int:
        return self.contract.functions.balanceOf(Web3.to_checksum_address(account)).call()

    def allowance(self, owner: str, spender: str) -> int:
        return self.contract.functions.allowance(owner, spender).call()

    def nonces(self, owner: str) -> int:
        return self.contract.functions.nonces(Web3.to_checksum_address(owner)).call()

    def authorization_state(self, authorizer: str, nonce: bytes) -> bool:
        return self.contract.functions.authorizationState(authorizer, nonce).call()

    def eip712_domain(self) -> dict:
        """The EIP-712 domain that permits and authorizations are signed against."""
        _, name, version, chain_id, verifying_contract, _, _ = self.contract.functions.eip712Domain().call()
        return {"name": name, "version": version, "chainId": chain_id, "verifyingContract": verifying_contract}

    def mint(self, to: str, amount: int, sender=None):
        return self._transact(self.contract.functions.mint(Web3.to_checksum_address(to), amount), sender)
