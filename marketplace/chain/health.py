"""The chain part of /healthz: is the node reachable, and are our contracts on it?

/healthz is public, so its answer never names the node: CHAIN_RPC_URL may hold a provider's key.
The detail goes to the log, with the URL redacted."""
import logging

from .client import get_web3, redact_rpc_url, rpc_endpoint
from .models import Deployment

logger = logging.getLogger(__name__)


def check_chain(deployments=None) -> dict:
    """`deployments` (all recorded Deployment rows) may be read by the caller beforehand, so
    that this check can run in another thread without a database connection of its own."""
    if deployments is None:
        deployments = list(Deployment.objects.all())
    try:
        w3 = get_web3()
        chain_id = w3.eth.chain_id
        block = w3.eth.block_number
    except Exception as exc:  # any transport failure means "down"; the log says what it was
        logger.warning("chain node %s unreachable: %s: %s", rpc_endpoint(), type(exc).__name__,
                       redact_rpc_url(str(exc)))
        return {"up": False, "error": f"chain node unreachable ({type(exc).__name__})"}
    deployments = sorted((d for d in deployments if d.chain_id == chain_id), key=lambda d: d.contract)
    result = {
        "up": True,
        "chain_id": chain_id,
        "block": block,
        "contracts": {d.contract: d.address for d in deployments},
    }
    if not deployments:
        result.update(up=False, error="contracts not deployed on this chain (run 'manage.py deploy_contracts')")
        return result
    try:
        missing = [d.contract for d in deployments if len(w3.eth.get_code(d.address)) == 0]
    except Exception as exc:
        logger.warning("chain node %s stopped answering: %s: %s", rpc_endpoint(), type(exc).__name__,
                       redact_rpc_url(str(exc)))
        return {**result, "up": False, "error": f"node stopped answering: {type(exc).__name__}"}
    if missing:
        result.update(up=False, error=f"no code at the recorded address of {', '.join(missing)}")
    return result
