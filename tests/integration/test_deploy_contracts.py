"""deploy_contracts is idempotent, and detects a chain that lost the recorded deployment: a
local dev chain is redeployed (chain-derived rows reset, user data kept), any other chain
stops the start with a message."""
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
