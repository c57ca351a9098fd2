"""deploy_contracts is idempotent, and detects a chain that lost the recorded deployment or runs
contracts of another build: a local dev chain is redeployed (chain-derived rows reset, user data
kept), any other chain stops the start with a message."""
from django.core.management import CommandError, call_command
import pytest

from marketplace.chain.models import Deployment
from marketplace.chain.signals import chain_reset

pytestmark = pytest.mark.chain


def run_deploy(settings, *, embedded, **options):
    from io import StringIO

    settings.CHAIN_EMBEDDED = embedded
    out = StringIO()
    call_command("deploy_contracts", stdout=out, **options)
    return out.getvalue()


@pytest.fixture
def fresh_deployment(chain, settings):
    """Forget the session's deployment, deploy anew on a snapshot, and return that snapshot id
    taken *before* the deployment: reverting to it wipes the deployment from the chain."""
    Deployment.objects.all().delete()
    before = chain.rpc("evm_snapshot")
    run_deploy(settings, embedded=False)
    return before


def test_second_run_deploys_nothing(chain, settings, fresh_deployment):
    first = {d.contract: (d.address, d.block_hash) for d in Deployment.objects.all()}
    block = chain.w3.eth.block_number
    output = run_deploy(settings, embedded=False)
    assert {d.contract: (d.address, d.block_hash) for d in Deployment.objects.all()} == first
    assert chain.w3.eth.block_number == block, "a second run must send no transaction"
    assert first["TestUSDC"][0] in output


def test_wiped_local_chain_is_redeployed_and_chain_rows_reset(chain, settings, fresh_deployment):
    old = Deployment.objects.get(contract="TestUSDC")
    resets = []

    def on_reset(sender, chain_id, **kwargs):
        resets.append(chain_id)

    chain_reset.connect(on_reset)
    try:
        chain.rpc("evm_revert", [fresh_deployment])  # the chain forgets the deployment
        chain.rpc("anvil_mine", [3])
        output = run_deploy(settings, embedded=True)
    finally:
        chain_reset.disconnect(on_reset)
    new = Deployment.objects.get(contract="TestUSDC")
    assert resets == [31337]
    assert "local chain was wiped" in output
    assert new.block_hash != old.block_hash
    assert len(chain.w3.eth.get_code(new.address)) > 0


def test_external_chain_that_lost_the_deployment_refuses_to_start(chain, settings, fresh_deployment):
    recorded = list(Deployment.objects.values_list("contract", "address", "block_hash"))
    chain.rpc("evm_revert", [fresh_deployment])
    chain.rpc("anvil_mine", [3])
    with pytest.raises(CommandError, match="no longer has the contracts"):
        run_deploy(settings, embedded=False)
    assert list(Deployment.objects.values_list("contract", "address", "block_hash")) == recorded


def test_forget_chain_option_starts_over(chain, settings, fresh_deployment):
    chain.rpc("evm_revert", [fresh_deployment])
    chain.rpc("anvil_mine", [3])
    output = run_deploy(settings, embedded=False, forget_chain=True)
    assert "Forgot the recorded deployment" in output
    assert len(chain.w3.eth.get_code(Deployment.objects.get(contract="TestUSDC").address)) > 0


def test_fresh_market_gets_the_configured_dispute_window_and_period(chain, settings, fresh_deployment):
    from marketplace.chain.contracts import DataMarket

    market = DataMarket(chain.w3, Deployment.objects.get(contract="DataMarket").address)
    assert market.min_dispute_window() == settings.MARKET_MIN_DISPUTE_WINDOW == 24 * 3600
    assert market.dispute_period() == settings.MARKET_DISPUTE_PERIOD == 14 * 24 * 3600


def test_deployment_records_the_artifact_it_came_from(chain, settings, fresh_deployment):
    from marketplace.chain.artifacts import load_artifact

    for record in Deployment.objects.all():
        assert record.artifact_hash == load_artifact(record.contract).code_hash
        assert len(record.artifact_hash) == 64


@pytest.fixture
def own_anvil(settings):
    """An anvil of this test's own (the session's must not be reset), with the operator key."""
    import subprocess

    from marketplace.devstack import ANVIL, wait_for_rpc
    from tests.conftest import DEV_KEYS, free_port

    port = free_port()
    process = subprocess.Popen([str(ANVIL), "--port", str(port), "--chain-id", "31337", "--silent"],
                               start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    assert wait_for_rpc(url, process), "anvil did not start"
    settings.CHAIN_RPC_URL = url
    settings.CHAIN_OPERATOR_KEY = DEV_KEYS[0]
    yield url
    process.terminate()
    process.wait(10)


@pytest.mark.parametrize("recorded_hash", ["", "0" * 64], ids=["recorded before hashes", "another build"])
def test_changed_contracts_on_the_local_chain_are_redeployed(db, settings, own_anvil, recorded_hash):
    from web3 import Web3

    from marketplace.chain.artifacts import load_artifact

    Deployment.objects.all().delete()
    run_deploy(settings, embedded=True)
    old = {d.contract: d for d in Deployment.objects.all()}
    w3 = Web3(Web3.HTTPProvider(own_anvil))
    w3.provider.make_request("anvil_mine", [5])
    Deployment.objects.filter(contract="DataMarket").update(artifact_hash=recorded_hash)
    resets = []

    def on_reset(sender, chain_id, **kwargs):
        resets.append(chain_id)

    chain_reset.connect(on_reset)
    try:
        output = run_deploy(settings, embedded=True)
    finally:
        chain_reset.disconnect(on_reset)
    assert resets == [31337]
    assert (f"The contracts changed since they were deployed on this local chain (DataMarket at "
            f"{old['DataMarket'].address}): resetting the local chain") in output
    new = {d.contract: d for d in Deployment.objects.all()}
    # The chain started over, so every contract is at the address a fresh chain gives it.
    assert {name: d.address for name, d in new.items()} == {name: d.address for name, d in old.items()}
    assert new["DataMarket"].block_hash != old["DataMarket"].block_hash
    assert new["DataMarket"].artifact_hash == load_artifact("DataMarket").code_hash != recorded_hash
    assert len(w3.eth.get_code(new["DataMarket"].address)) > 0
    assert "changed" not in run_deploy(settings, embedded=True), "settled: the next start deploys nothing"


def test_changed_contracts_on_an_external_chain_refuse_to_start(chain, settings, fresh_deployment):
    Deployment.objects.filter(contract="RewardDistributor").update(artifact_hash="0" * 64)
    recorded = list(Deployment.objects.values_list("contract", "address", "artifact_hash"))
    block = chain.w3.eth.block_number
    with pytest.raises(CommandError, match="differ from the ones deployed on chain id 31337") as refused:
        run_deploy(settings, embedded=False)
    assert "RewardDistributor at" in str(refused.value) and "--forget-chain" in str(refused.value)
    assert list(Deployment.objects.values_list("contract", "address", "artifact_hash")) == recorded
    assert chain.w3.eth.block_number == block, "nothing was sent"


def test_fund_dev_accounts_tops_up_once(chain, settings):
    from io import StringIO

    from marketplace.chain.services import ANVIL_DEV_ACCOUNTS, DEV_ACCOUNT_BALANCE

    out = StringIO()
    call_command("fund_dev_accounts", stdout=out)
    assert all(chain.token.balance_of(a) == DEV_ACCOUNT_BALANCE for a in ANVIL_DEV_ACCOUNTS)
    block = chain.w3.eth.block_number
    call_command("fund_dev_accounts", stdout=out)
    assert chain.w3.eth.block_number == block
    assert "already hold" in out.getvalue()


def test_a_node_on_another_chain_than_chain_id_gets_nothing_signed(chain, settings):
    """Settings refuse anvil's dev keys unless CHAIN_ID is anvil's, so CHAIN_ID must be the node's
    chain: a server left at one chain id but pointed at another deploys and sends nothing."""
    from marketplace.chain import sender
    from marketplace.chain.client import WrongChain
    from marketplace.chain.models import OperatorAction

    settings.CHAIN_ID = 8453
    recorded = list(Deployment.objects.values_list("contract", "address", "block_hash"))
    block = chain.w3.eth.block_number
    with pytest.raises(CommandError, match="runs chain id 31337, but CHAIN_ID is 8453"):
        run_deploy(settings, embedded=True)
    with pytest.raises(CommandError, match="runs chain id 31337, but CHAIN_ID is 8453"):
        call_command("fund_dev_accounts")
    action = OperatorAction.objects.create(
        kind="approve", chain_id=31337, market=chain.market.address, listing_id=1,
        expected_owner=chain.operator.address, expected_content_hash="0x" + "11" * 32,
    )
    with pytest.raises(WrongChain):
        sender.send_operator_actions()
    action.refresh_from_db()
    assert action.status == "pending" and not action.tx_hash
    assert chain.w3.eth.block_number == block, "nothing was sent"
    assert list(Deployment.objects.values_list("contract", "address", "block_hash")) == recorded


def test_whatever_the_node_says_later_the_operator_signs_for_chain_id_only(chain, settings):
    """operator_web3() checks the node once; a node that says another chain afterwards (a failover
    behind the same URL) does not change the chain id the operator key signs for."""
    from web3.middleware import Web3Middleware

    from marketplace.chain.client import operator_web3
    from marketplace.chain.contracts import DataMarket

    class NodeSaysChainOne(Web3Middleware):
        def wrap_make_request(self, make_request):
            def middleware(method, params):
                if method == "eth_chainId":
                    return {"jsonrpc": "2.0", "id": 0, "result": hex(1)}
                return make_request(method, params)
            return middleware

    w3 = operator_web3()  # the node says 31337 = CHAIN_ID
    # Innermost (layer 0 is the onion's core), nearest the node: what the node answers.
    w3.middleware_onion.inject(NodeSaysChainOne, name="node_says_1", layer=0)
    try:
        assert w3.eth.chain_id == 31337
        market = DataMarket(w3, chain.market.address)
        receipt = market._transact(market.contract.functions.setApproval([], True))
        assert receipt["status"] == 1, "signed for 31337, which anvil accepts"
    finally:
        w3.middleware_onion.remove("node_says_1")
