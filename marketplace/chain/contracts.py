"""Thin typed wrappers over the deployed contracts; amounts are ints in base units."""
from functools import lru_cache
from typing import NamedTuple

from eth_abi import encode as abi_encode
from eth_typing import ChecksumAddress
from web3 import Web3

from .artifacts import load_artifact


class ContractWrapper:
    artifact_name: str

    def __init__(self, w3: Web3, address: str):
        self.w3 = w3
        self.address: ChecksumAddress = Web3.to_checksum_address(address)
        self.contract = w3.eth.contract(address=self.address, abi=load_artifact(self.artifact_name).abi)

    @classmethod
    def shared(cls, w3: Web3, address: str):
        """This wrapper of `address` on `w3`, made once per process: making one builds web3's
        contract from the ABI (about 14 ms of CPU for the market, 5 for the token), more than the
        calls a hot path makes with it. A wrapper holds no state but its Web3 and address."""
        return _shared(cls, w3, Web3.to_checksum_address(address))

    def _transact(self, call, sender=None):
        """Send a state-changing call and wait for its receipt; raises on a revert."""
        tx = {"from": sender} if sender else {}
        tx_hash = call.transact(tx)
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)
        if receipt["status"] != 1:
            raise TransactionFailed(f"{self.artifact_name} transaction {tx_hash.hex()} reverted")
        return receipt


@lru_cache(maxsize=64)
def _shared(cls, w3, address):
    return cls(w3, address)


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


def _checksum(address: str) -> ChecksumAddress:
    return Web3.to_checksum_address(address)


class AccessControlled(ContractWrapper):
    def role(self, name: str) -> bytes:
        return Web3.keccak(text=name) if name != "DEFAULT_ADMIN_ROLE" else b"\x00" * 32

    def has_role(self, name: str, account: str) -> bool:
        return self.contract.functions.hasRole(self.role(name), _checksum(account)).call()

    def grant_role(self, name: str, account: str, sender=None):
        return self._transact(self.contract.functions.grantRole(self.role(name), _checksum(account)), sender)


def surplus_reference(tx_hash: str | bytes, token: str, position: int) -> bytes:
    """The reference a surplus return names: keccak256(abi.encode(txHash, token, n)) of the stray
    transfer, the n-th (from 0) `Transfer` of `token` into the market in its transaction (of a
    value above 0, mints and the market's own included), so that each stray transfer is answered
    once on-chain. Its position in its own transaction, not its log index in the block: a
    reorganisation that mines the transaction again elsewhere in a block must not make a second
    reference, and a second return, for the same transfer."""
    tx = bytes.fromhex(tx_hash.removeprefix("0x")) if isinstance(tx_hash, str) else bytes(tx_hash)
    return Web3.keccak(abi_encode(["bytes32", "address", "uint256"], [tx, token, position]))


class DataMarket(AccessControlled):
    """Listings and escrowed orders. Order status values follow DataMarket.OrderStatus."""

    artifact_name = "DataMarket"
    ORDER_STATUS = ("none", "open", "disputed", "released", "refunded", "resolved")
    # EIP-712 types a buyer signs so that anyone may confirm or dispute for it (confirmBySig,
    # disputeBySig): a buyer without ETH, such as an agent, only signs.
    ORDER_SIGNATURE_TYPES = {
        kind: [{"name": "orderId", "type": "uint256"}, {"name": "nonce", "type": "bytes32"},
               {"name": "deadline", "type": "uint256"}]
        for kind in ("ConfirmOrder", "DisputeOrder")
    }

    def token_config(self, token: str) -> tuple[bool, bool]:
        return tuple(self.contract.functions.tokenConfig(_checksum(token)).call())

    def set_token_allowed(self, token: str, allowed: bool, bytes_signature: bool, sender=None):
        return self._transact(
            self.contract.functions.setTokenAllowed(_checksum(token), allowed, bytes_signature), sender
        )

    def fee_bps(self) -> int:
        return self.contract.functions.feeBps().call()

    def treasury(self) -> str:
        return self.contract.functions.treasury().call()

    def get_listing(self, listing_id: int, block: int | str = "latest") -> dict:
        return self.listing_terms(self.contract.functions.getListing(listing_id).call(block_identifier=block))

    @staticmethod
    def listing_terms(values) -> dict:
        """getListing's answer (a tuple, as `.call()` or a batch gives it) by name."""
        owner, token, payout, price, content_hash, window, active, approved = values
        return {
            "owner": owner, "token": token, "payout": payout, "price": price,
            "content_hash": content_hash, "dispute_window": window, "active": active, "approved": approved,
        }

    def get_order(self, order_id: int) -> dict:
        listing_id, buyer, token, amount, release_at, dispute_deadline, fee_bps, status = (
            self.contract.functions.getOrder(order_id).call()
        )
        return {
            "listing_id": listing_id, "buyer": buyer, "token": token, "amount": amount,
            "release_at": release_at, "dispute_deadline": dispute_deadline, "fee_bps": fee_bps,
            "status": self.ORDER_STATUS[status],
        }

    def min_dispute_window(self) -> int:
        return self.contract.functions.minDisputeWindow().call()

    def dispute_period(self) -> int:
        return self.contract.functions.disputePeriod().call()

    def total_credits(self, token: str) -> int:
        return self.contract.functions.totalCredits(_checksum(token)).call()

    def credit_of(self, token: str, account: str) -> int:
        return self.contract.functions.creditOf(_checksum(token), _checksum(account)).call()

    def surplus_returned(self, ref: bytes) -> bool:
        return self.contract.functions.surplusReturned(ref).call()

    def nonce_used(self, buyer: str, nonce: bytes) -> bool:
        return self.contract.functions.nonceUsed(_checksum(buyer), nonce).call()

    def eip712_domain(self) -> dict:
        _, name, version, chain_id, verifying_contract, _, _ = self.contract.functions.eip712Domain().call()
        return {"name": name, "version": version, "chainId": chain_id, "verifyingContract": verifying_contract}

    def order_signature_message(self, kind: str, order_id: int, nonce: bytes, deadline: int) -> dict:
        """The EIP-712 typed data (domain, types, primaryType, message) a buyer signs for
        confirmBySig (`kind` "ConfirmOrder") or disputeBySig ("DisputeOrder")."""
        if kind not in self.ORDER_SIGNATURE_TYPES:
            raise ValueError(f"kind must be ConfirmOrder or DisputeOrder, not {kind!r}")
        return {
            "domain": self.eip712_domain(),
            "types": {kind: self.ORDER_SIGNATURE_TYPES[kind]},
            "primaryType": kind,
            "message": {"orderId": order_id, "nonce": nonce, "deadline": deadline},
        }

    def order_of(self, listing_id: int, buyer: str) -> int:
        return self.contract.functions.orderOf(listing_id, _checksum(buyer)).call()

    def has_access(self, listing_id: int, account: str) -> bool:
        return self.contract.functions.hasAccess(listing_id, _checksum(account)).call()

    def total_escrowed(self, token: str) -> int:
        return self.contract.functions.totalEscrowed(_checksum(token)).call()

    def surplus(self, token: str) -> int:
        return self.contract.functions.surplus(_checksum(token)).call()


class RewardRoot(NamedTuple):
    """The latest matured root of a RewardDistributor: claims are paid against it unless it is
    suspended."""

    epoch: int
    root: bytes
    total: int
    suspended: bool


class PendingRewardRoot(NamedTuple):
    """A proposed root that is not claimable yet (all zero when none)."""

    epoch: int
    root: bytes
    total: int
    valid_at: int


class RewardDistributor(AccessControlled):
    """Epoch roots of cumulative reward amounts, each with the sum of its tree (its total); anyone
    may submit an account's claim. The admin revokes a pending root, suspends a matured one and
    sweeps what no root can still pay."""

    artifact_name = "RewardDistributor"

    def current_root(self) -> RewardRoot:
        """The latest matured root (all zero when none), its total and whether it is suspended."""
        return RewardRoot(*self.contract.functions.currentRoot().call())

    def pending_root(self) -> PendingRewardRoot:
        return PendingRewardRoot(*self.contract.functions.pendingRoot().call())

    def last_proposed_epoch(self) -> int:
        """The next proposal must use a greater epoch."""
        return self.contract.functions.lastProposedEpoch().call()

    def claimed(self, account: str) -> int:
        return self.contract.functions.claimed(_checksum(account)).call()

    def total_claimed(self) -> int:
        """The sum of all amounts ever paid by claims."""
        return self.contract.functions.totalClaimed().call()

    def root_delay(self) -> int:
        return self.contract.functions.rootDelay().call()

    def token_address(self) -> str:
        return self.contract.functions.token().call()

    def token_balance(self) -> int:
        """What the distributor holds of its reward token."""
        abi = load_artifact("TestUSDC").abi
        token = self.w3.eth.contract(address=self.token_address(), abi=abi)
        return token.functions.balanceOf(self.address).call()

    def propose_root(self, epoch: int, root: bytes | str, total: int, sender=None):
        """Propose an epoch's root with its total, the sum of the tree's cumulative amounts
        (publisher only)."""
        return self._transact(self.contract.functions.proposeRoot(epoch, root, total), sender)

    def revoke_pending_root(self, sender=None):
        """Drop the proposed root before it becomes claimable (admin only)."""
        return self._transact(self.contract.functions.revokePendingRoot(), sender)

    def suspend_current_root(self, sender=None):
        """Stop claims against the latest matured root until a newer one matures (admin
        only)."""
        return self._transact(self.contract.functions.suspendCurrentRoot(), sender)

    def sweep(self, token: str, to: str, sender=None):
        """Send `to` what the distributor holds of `token` that no root can still pay (admin
        only)."""
        call = self.contract.functions.sweep(_checksum(token), _checksum(to))
        return self._transact(call, sender)
