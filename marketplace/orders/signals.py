"""What orders do when chain/ forgets a chain (a wiped local chain, or --forget-chain), and the
rule that a version someone bought is never deleted."""
from django.db.models import ProtectedError, Q
from django.db.models.signals import pre_delete
from django.dispatch import Signal, receiver

from marketplace.catalog.models import DatasetVersion
from marketplace.chain.signals import chain_reset

from .models import CreditEntry, DownloadGrant, Order, StrayTransfer

# Sent by the indexer's order handler, inside its transaction, for each `DisputeResolved` it
# applies: `order` (its new state saved) and `event` (the chain event). The moderation app records
# the confirmation of an arbiter's decision and tells both parties; orders imports nothing of it.
dispute_resolved = Signal()
# Sent by the Django admin's resolve action, inside its transaction, when it queues a resolution
# for the operator sender: `order`, `refund_bps`, `user` (the arbiter), `note`, `via` ("operator")
# and `action` (the OperatorAction). The moderation app records it in the audit log and tells both
# parties, as for a decision taken in its console. (A transaction the admin only prepares for the
# arbiter's wallet is recorded when the indexer reads its DisputeResolved.)
dispute_decided = Signal()
# Sent by the Django admin's resolve action with `order` (its row locked, in the deciding
# transaction) before it decides: a receiver answers why the order must not be decided now (a
# decision already stands in the moderation console), or "" when it may.
dispute_deciding = Signal()
# Sent by the indexer's order handler, inside its transaction, with `events`: the range's
# `OrderCreated` events whose orders it just stored (each once). The moderation app tells a buyer
# who paid for a dataset removed for legal reasons (bought before the clearing reached the chain)
# that the file will not be delivered and they can dispute.
orders_created = Signal()


def sold(version) -> bool:
    """Whether any order was made for one of the version's listings."""
    keys = list(version.listings.values_list("chain_id", "listing_id"))
    if not keys:
        return False
    match = Q()
    for chain_id, listing_id in keys:
        match |= Q(chain_id=chain_id, listing_id=listing_id)
    return Order.objects.filter(match).exists()


@receiver(pre_delete, sender=DatasetVersion)
def keep_sold_versions(sender, instance, **kwargs):
    """Buyers keep their files when the owner deletes or delists (only a legal removal, in
    moderation, ends a download): a version with an order, and so its dataset, is never deleted.
    Raised before anything is deleted, it rolls the whole delete back."""
    if sold(instance):
        raise ProtectedError(f"Version {instance.number} of {instance.dataset.slug} was bought: buyers keep it, "
                             "so it cannot be deleted (delist it instead).", {instance})


@receiver(chain_reset)
def forget_orders(sender, chain_id, **kwargs):
    """Orders, credits and stray transfers are chain-derived: a chain that is gone took them with
    it, and the download links they gave (the download log and dispute statements stay: users' rows never go
    with chain rows)."""
    Order.objects.filter(chain_id=chain_id).delete()
    CreditEntry.objects.filter(chain_id=chain_id).delete()
    StrayTransfer.objects.filter(chain_id=chain_id).delete()
    DownloadGrant.objects.filter(chain_id=chain_id).delete()
