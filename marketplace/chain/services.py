"""Deploying the contracts and keeping the database's record of them true to the chain."""
from dataclasses import dataclass
import logging

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from web3 import Web3
from web3.exceptions import BlockNotFound

from marketplace.env import ANVIL_DEV_ADDRESSES

from .artifacts import load_artifact
from .contracts import DataMarket, RewardDistributor, TestUSDC
from .models import ChainEvent, Deployment, IndexedBlock, IndexerCursor, OperatorAction, OperatorTransaction
from .signals import chain_reset

logger = logging.getLogger(__name__)

# Deployment order; each entry gives the constructor arguments from the operator address and the
# addresses deployed so far. The operator is the first admin; `configure_new_contracts` then
# grants the roles and hands the admin role to CHAIN_ADMIN when that is another address.
CONTRACTS = {
    "TestUSDC": lambda operator, deployed: [operator],
    "DataMarket": lambda operator, deployed: [
        operator, settings.CHAIN_TREASURY or operator, settings.MARKET_FEE_BPS
    ],
    "RewardDistributor": lambda operator, deployed: [
        operator, deployed["TestUSDC"], settings.REWARD_ROOT_DELAY
    ],
}

# Anvil's default accounts (mnemonic "test test ... junk"): the demo's wallets.
ANVIL_CHAIN_ID = 31337
ANVIL_DEV_ACCOUNTS = list(ANVIL_DEV_ADDRESSES)
DEV_ACCOUNT_BALANCE = 1_000_000 * 10**6  # 1,000,000 test USDC (6 decimals)


class DeploymentError(Exception):
    """The chain and the database disagree in a way the server must not paper over."""


class ChainWiped(DeploymentError):
    pass


class ContractsChanged(DeploymentError):
    """This build's contracts are not the ones deployed on the chain."""


@dataclass(frozen=True)
class DeployedContract:
    contract: str
    address: str
    tx_hash: str
    block_number: int
    block_hash: str
    artifact_hash: str


def deploy_contract(w3: Web3, name: str, args) -> DeployedContract:
    """Deploy one contract from its artifact with w3's default (signing) account."""
    artifact = load_artifact(name)
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    tx_hash = factory.constructor(*args).transact()
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)
    if receipt["status"] != 1:
        raise DeploymentError(f"deploying {name} reverted (transaction {tx_hash.hex()})")
    return DeployedContract(
        contract=name,
        address=Web3.to_checksum_address(receipt["contractAddress"]),
        tx_hash="0x" + bytes(receipt["transactionHash"]).hex(),
        block_number=receipt["blockNumber"],
        block_hash="0x" + bytes(receipt["blockHash"]).hex(),
        artifact_hash=artifact.code_hash,
    )


def deploy_all(w3: Web3, existing=None) -> dict:
    """Deploy and configure every contract not in `existing` (name -> address), in order."""
    operator = w3.eth.default_account
    addresses = dict(existing or {})
    deployed = {}
    for name, constructor_args in CONTRACTS.items():
        if name in addresses:
            continue
        result = deploy_contract(w3, name, constructor_args(operator, addresses))
        addresses[name] = result.address
        deployed[name] = result
    configure_new_contracts(w3, addresses, set(deployed))
    return deployed


def configure_new_contracts(w3: Web3, addresses: dict, new: set) -> None:
    """Roles and settings of freshly deployed contracts (never re-applied to existing ones, so an
    admin's later changes stand). The operator key gets MODERATOR and RELAYER on the market and
    PUBLISHER on the distributor; ARBITER goes to CHAIN_ARBITER (the operator by default). The
    market gets MARKET_MIN_DISPUTE_WINDOW and MARKET_DISPUTE_PERIOD."""
    operator = w3.eth.default_account
    admin = settings.CHAIN_ADMIN or operator
    if "DataMarket" in new:
        market = DataMarket(w3, addresses["DataMarket"])
        for role in ("MODERATOR_ROLE", "RELAYER_ROLE"):
            market.grant_role(role, operator)
        market.grant_role("ARBITER_ROLE", settings.CHAIN_ARBITER or operator)
        functions = market.contract.functions
        market._transact(functions.setMinDisputeWindow(settings.MARKET_MIN_DISPUTE_WINDOW))
        market._transact(functions.setDisputePeriod(settings.MARKET_DISPUTE_PERIOD))
        # TestUSDC has USDC 2.2's `bytes signature` transferWithAuthorization overload.
        market.set_token_allowed(addresses["TestUSDC"], True, True)
    if "RewardDistributor" in new:
        RewardDistributor(w3, addresses["RewardDistributor"]).grant_role("PUBLISHER_ROLE", operator)
    if Web3.to_checksum_address(admin) != operator:
        for name in new & {"DataMarket", "RewardDistributor"}:
            contract = (DataMarket if name == "DataMarket" else RewardDistributor)(w3, addresses[name])
            contract.grant_role("DEFAULT_ADMIN_ROLE", admin)
            contract._transact(
                contract.contract.functions.renounceRole(contract.role("DEFAULT_ADMIN_ROLE"), operator)
            )


def deployment_is_on_chain(w3: Web3, deployment: Deployment) -> bool:
    """True when the deployment's block is still on the chain with its hash and code is there."""
    try:
        block = w3.eth.get_block(deployment.block_number)
    except BlockNotFound:
        return False
    if "0x" + bytes(block["hash"]).hex() != deployment.block_hash:
        return False
    return len(w3.eth.get_code(deployment.address)) > 0


def changed_contracts(records) -> list[Deployment]:
    """The recorded deployments that were built from another artifact than this build's (or
    recorded before artifact hashes were kept)."""
    return [
        record for record in records
        if record.contract in CONTRACTS and record.artifact_hash != load_artifact(record.contract).code_hash
    ]


def ensure_deployed(*, w3: Web3, allow_redeploy: bool, log=logger.info) -> list[Deployment]:
    """Make the recorded deployment true for w3's chain; idempotent.

    Records that are still on the chain, deployed from this build's artifacts, are kept and
    nothing is sent. A recorded deployment whose block has gone means the chain was wiped or
    replaced; one built from another artifact means the contracts changed since. Either way,
    when allow_redeploy (the local dev chain) its chain-derived rows are reset through
    `chain_reset` and the contracts are deployed again; otherwise ChainWiped or ContractsChanged
    is raised and nothing changes.
    """
    chain_id = w3.eth.chain_id
    with transaction.atomic():
        # One deployer at a time, whichever process runs it.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext('chain.deploy'))")
        records = list(Deployment.objects.select_for_update().filter(chain_id=chain_id))
        gone = [record for record in records if not deployment_is_on_chain(w3, record)]
        if gone:
            first = gone[0]
            where = f"chain id {chain_id}: {first.contract} at {first.address}, block {first.block_number} ({first.block_hash})"
            if not allow_redeploy:
                raise ChainWiped(
                    f"The chain no longer has the contracts this database recorded ({where}). "
                    "It was reset or replaced, or CHAIN_RPC_URL points at another node. Refusing to "
                    "start so that no chain-derived data is mixed up. Point CHAIN_RPC_URL back at the "
                    "original chain, or, to start over on this chain, run "
                    "'manage.py deploy_contracts --forget-chain' (your datasets and accounts are kept)."
                )
            log(
                f"The local chain was wiped ({where} is gone): clearing chain-derived rows and "
                "redeploying the contracts. Datasets, accounts and other user data are kept."
            )
            forget_chain(chain_id)
            records = []
        changed = changed_contracts(records)
        if changed:
            names = ", ".join(f"{record.contract} at {record.address}" for record in changed)
            if not allow_redeploy:
                raise ContractsChanged(
                    f"This build's contracts differ from the ones deployed on chain id {chain_id} "
                    f"({names} came from another build). Refusing to start: the server would call "
                    "the old contracts with the new ABI. Run the build that deployed them, or deploy "
                    "the new contracts deliberately with 'manage.py deploy_contracts --forget-chain' "
                    "(chain-derived rows are cleared, datasets and accounts are kept; the old "
                    "contracts keep whatever they hold until their own users settle it)."
                )
            log(
                f"The contracts changed since they were deployed on this local chain ({names}): "
                "resetting the local chain, clearing chain-derived rows and deploying the new ones. "
                "Datasets, accounts and other user data are kept."
            )
            forget_chain(chain_id)
            reset_local_chain(w3, log=log)
            records = []
        deployed = deploy_all(w3, {record.contract: record.address for record in records})
        for result in deployed.values():
            records.append(Deployment.objects.create(chain_id=chain_id, **result.__dict__))
            log(f"Deployed {result.contract} at {result.address} (block {result.block_number})")
    return records


def reset_local_chain(w3: Web3, *, log=logger.info) -> None:
    """Start the local anvil over from its genesis state, so that the new contracts land at the
    addresses a fresh chain gives them, as after a wipe: versions priced in the test token keep
    a token that exists. A node that refuses (not an anvil) keeps its state, and the contracts
    are deployed on top of it."""
    response = w3.provider.make_request("anvil_reset", [])
    if "error" in response:
        log(f"The local node did not reset ({response['error'].get('message')}); deploying on top of its state.")


def forget_chain(chain_id: int) -> None:
    """Drop a chain's deployment and every row derived from it (apps listen to chain_reset).
    Operator actions still open for that chain are cancelled: listing ids start over on a new
    chain, and an approval reviewed for an old listing must never reach a new one."""
    with transaction.atomic():
        # No operator sender runs meanwhile: it could broadcast an old chain's transaction after
        # the reset, at a nonce the new chain has not used yet.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext('chain.operator_sender'))")
        list(IndexerCursor.objects.select_for_update().filter(chain_id=chain_id))
        chain_reset.send(sender=Deployment, chain_id=chain_id)
        for model in (ChainEvent, IndexedBlock, IndexerCursor):
            model.objects.filter(chain_id=chain_id).delete()
        OperatorAction.objects.filter(chain_id=chain_id, status__in=OperatorAction.OPEN).update(
            status=OperatorAction.Status.CANCELLED, error="cancelled: the chain was reset", updated_at=timezone.now())
        # Nonces start over on a new chain; the actions keep their transaction's hash.
        OperatorAction.objects.filter(chain_id=chain_id, transaction__isnull=False).update(transaction=None)
        OperatorTransaction.objects.filter(chain_id=chain_id).delete()
        Deployment.objects.filter(chain_id=chain_id).delete()


def deployed_address(chain_id: int, contract: str) -> str | None:
    return Deployment.objects.filter(chain_id=chain_id, contract=contract).values_list("address", flat=True).first()


def deployed(w3: Web3, wrapper):
    """The wrapper (TestUSDC, DataMarket, RewardDistributor) of that contract on w3's chain."""
    address = deployed_address(w3.eth.chain_id, wrapper.artifact_name)
    if address is None:
        raise DeploymentError(
            f"{wrapper.artifact_name} is not deployed on this chain: run 'manage.py deploy_contracts'"
        )
    return wrapper.shared(w3, address)


def test_token(w3: Web3) -> TestUSDC:
    return deployed(w3, TestUSDC)


test_token.__test__ = False  # not a pytest test


def market(w3: Web3) -> DataMarket:
    return deployed(w3, DataMarket)


def reward_distributor(w3: Web3) -> RewardDistributor:
    return deployed(w3, RewardDistributor)


def fund_dev_accounts(w3: Web3, *, balance=DEV_ACCOUNT_BALANCE, log=logger.info) -> int:
    """Top up anvil's dev accounts to `balance` test USDC; returns how many were minted to."""
    if w3.eth.chain_id != ANVIL_CHAIN_ID:
        raise DeploymentError(
            f"dev accounts are only funded on a local anvil chain (chain id {ANVIL_CHAIN_ID}), "
            f"not on chain id {w3.eth.chain_id}"
        )
    token = test_token(w3)
    minted = 0
    for account in ANVIL_DEV_ACCOUNTS:
        missing = balance - token.balance_of(account)
        if missing > 0:
            token.mint(account, missing)
            minted += 1
    if minted:
        log(f"Funded {minted} dev account(s) with test USDC up to {balance // 10**6:,} each")
    return minted


def follow_root_delay(w3: Web3, *, log=logger.info) -> bool:
    """On a local anvil whose distributor the operator administers, set its root delay to
    REWARD_ROOT_DELAY (a delay is fixed at deployment; the demo's chain keeps its state between
    runs, so a changed setting would otherwise never reach it). True when it changed."""
    if w3.eth.chain_id != ANVIL_CHAIN_ID:
        return False
    distributor = reward_distributor(w3)
    if distributor.root_delay() == settings.REWARD_ROOT_DELAY:
        return False
    if not distributor.has_role("DEFAULT_ADMIN_ROLE", w3.eth.default_account):
        return False
    distributor._transact(distributor.contract.functions.setRootDelay(settings.REWARD_ROOT_DELAY))
    log(f"The reward distributor's root delay is now {settings.REWARD_ROOT_DELAY} s (REWARD_ROOT_DELAY)")
    return True

