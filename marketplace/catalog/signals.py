"""What the catalog does when chain/ forgets a chain (a wiped local chain, or --forget-chain)."""
from django.dispatch import receiver

from marketplace.chain.signals import chain_reset

from .models import Dataset, Listing


@receiver(chain_reset)
def forget_listings(sender, chain_id, **kwargs):
    """Drop the chain-derived listings; datasets and their files stay, needing relisting."""
    affected = list(Listing.objects.filter(chain_id=chain_id).values_list("version__dataset_id", flat=True))
    Listing.objects.filter(chain_id=chain_id).delete()
    Dataset.objects.filter(pk__in=affected).exclude(versions__listings__isnull=False).update(status=Dataset.Status.DRAFT)
