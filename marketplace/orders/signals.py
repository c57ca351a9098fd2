"""What orders do when chain/ forgets a chain (a wiped local chain, or --forget-chain)."""
from django.dispatch import receiver

from marketplace.chain.signals import chain_reset

from .models import CreditEntry, DownloadGrant, Order


@receiver(chain_reset)
def forget_orders(sender, chain_id, **kwargs):
    """Orders and credits are chain-derived: a chain that is gone took them with it, and the
    download links they gave (the download log and dispute statements stay: users' rows never go
    with chain rows)."""
    Order.objects.filter(chain_id=chain_id).delete()
    CreditEntry.objects.filter(chain_id=chain_id).delete()
    DownloadGrant.objects.filter(chain_id=chain_id).delete()
