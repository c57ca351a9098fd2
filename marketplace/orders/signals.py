"""What orders do when chain/ forgets a chain (a wiped local chain, or --forget-chain)."""
from django.dispatch import receiver

from marketplace.chain.signals import chain_reset

from .models import Order


@receiver(chain_reset)
def forget_orders(sender, chain_id, **kwargs):
    """Orders are chain-derived: a chain that is gone took them with it."""
    Order.objects.filter(chain_id=chain_id).delete()
