from django.core.management.base import BaseCommand, CommandError

from marketplace.chain.client import OperatorKeyMissing, WrongChain, operator_web3
from marketplace.chain.services import DeploymentError, fund_dev_accounts


class Command(BaseCommand):
    help = "Top up anvil's ten dev accounts with test USDC (local anvil chain only)."

    def handle(self, *args, **options):
        try:
            minted = fund_dev_accounts(operator_web3(), log=self.stdout.write)
        except (DeploymentError, OperatorKeyMissing, WrongChain) as exc:
            raise CommandError(str(exc)) from None
        if not minted:
            self.stdout.write("Dev accounts already hold their test USDC.")
