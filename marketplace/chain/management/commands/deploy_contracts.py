from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from marketplace.chain.client import OperatorKeyMissing, WrongChain, operator_web3
from marketplace.chain.services import DeploymentError, ensure_deployed, forget_chain


class Command(BaseCommand):
    help = (
        "Deploy the contracts with the operator key unless the database's record of them is still "
        "on the chain (idempotent). A local dev chain (CHAIN_EMBEDDED=1) that was wiped is "
        "redeployed; any other chain that lost them stops with an error."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--forget-chain",
            action="store_true",
            help="Forget this chain's recorded deployment and chain-derived rows, then deploy anew.",
        )

    def handle(self, *args, **options):
        try:
            w3 = operator_web3()
            chain_id = w3.eth.chain_id
        except (OperatorKeyMissing, WrongChain) as exc:
            raise CommandError(str(exc)) from None
        except Exception as exc:
            raise CommandError(
                f"cannot reach the chain at {settings.CHAIN_RPC_URL} ({type(exc).__name__}); "
                "start the node or set CHAIN_RPC_URL"
            ) from None
        if options["forget_chain"]:
            forget_chain(chain_id)
            self.stdout.write(f"Forgot the recorded deployment on chain id {chain_id}.")
        try:
            records = ensure_deployed(w3=w3, allow_redeploy=settings.CHAIN_EMBEDDED, log=self.stdout.write)
        except DeploymentError as exc:
            raise CommandError(str(exc)) from None
        for record in records:
            self.stdout.write(f"{record.contract}: {record.address} (chain id {chain_id}, block {record.block_number})")
