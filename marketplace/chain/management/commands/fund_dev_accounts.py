from django.core.management.base import BaseCommand, CommandError

from marketplace.chain.client import OperatorKeyMissing, WrongChain, operator_web3
from marketplace.chain.services import DeploymentError, follow_root_delay, fund_dev_accounts


class Command(BaseCommand):
    help = ("Top up anvil's ten dev accounts with test USDC, and set the reward distributor's root "
            "delay to REWARD_ROOT_DELAY (local anvil chain only).")

    def handle(self, *args, **options):
        try:
            w3 = operator_web3()
            minted = fund_dev_accounts(w3, log=self.stdout.write)
            follow_root_delay(w3, log=self.stdout.write)
        except (DeploymentError, OperatorKeyMissing, WrongChain) as exc:
            raise CommandError(str(exc)) from None
        if not minted:
            self.stdout.write("Dev accounts already hold their test USDC.")
