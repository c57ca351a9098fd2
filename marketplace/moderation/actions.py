"""A moderator's actions on a whole dataset: delist, remove for legal reasons, restore.

Each validates the moderator's reason (a policy code), statement of reasons (shown to the
publisher) and internal note, takes the dataset's row lock, refuses an action on a dataset already
in that state (ActionRefused, 409), acts through the catalog (services.delist, removal.remove,
removal.restore: the on-chain part through the operator sender), appends the audit entry and
notifies the people affected, all in one transaction.
"""
from django.conf import settings
from django.db import transaction
from django.dispatch import receiver

from marketplace.api import Refused
from marketplace.accounts.services import wallet_user
from marketplace.catalog import removal, services
from marketplace.catalog.models import Dataset, Listing
from marketplace.orders.models import Order
from marketplace.orders.selectors import _current_market
from marketplace.orders.signals import orders_created

from . import audit
from .notifications import notify
from .policy import NOTE_MAX, REASONS, STATEMENT_MAX
from .receivers import role_of

ACTIONS = ("delist", "remove", "restore")


class ActionRefused(Refused):
    """An action on a dataset that cannot be taken."""


def check_words(*, reason: str, statement: str, internal_note: str = "", reason_required: bool = True) -> dict:
    """The moderator's words, stripped; ActionRefused (400) for a missing or unknown reason, an
    empty statement, or one that is too long."""
    reason, statement, internal_note = (reason or "").strip(), (statement or "").strip(), (internal_note or "").strip()
    if reason and reason not in REASONS or (reason_required and not reason):
        raise ActionRefused("invalid_reason", "Choose a reason from the policy list: " + ", ".join(REASONS) + ".",
                            status=400)
    if not statement:
        raise ActionRefused("invalid_statement", "Write the statement of reasons the publisher will read.", status=400)
    for name, text, most in (("statement", statement, STATEMENT_MAX), ("internal note", internal_note, NOTE_MAX)):
        if len(text) > most:
            raise ActionRefused(f"invalid_{name.replace(' ', '_')}", f"The {name} is {len(text):,} characters long; "
                                f"at most {most:,}.", status=400)
    return {"reason": reason, "statement": statement, "internal_note": internal_note}


def _locked(dataset) -> Dataset:
    return Dataset.objects.select_for_update(of=("self",)).select_related("owner").get(pk=dataset.pk)


def state(dataset) -> str:
    """removed, delisting (a clearing on its way), or the dataset's status."""
    if dataset.removed_at is not None:
        return "removed"
    if dataset.status != Dataset.Status.DELISTED and removal.is_delisting(dataset):
        return "delisting"
    return dataset.status


def perform(dataset, action: str, *, moderator, reason="", statement="", internal_note="") -> dict:
    """Run one of ACTIONS; returns what the API answers. Raises ActionRefused."""
    if action not in ACTIONS:
        raise ActionRefused("invalid_action", f"Choose an action: {', '.join(ACTIONS)}.", status=400)
    words = check_words(reason=reason, statement=statement, internal_note=internal_note,
                        reason_required=action != "restore")
    return {"delist": delist, "remove": remove, "restore": restore}[action](dataset, moderator=moderator, **words)


def delist(dataset, *, moderator, reason, statement, internal_note="") -> dict:
    with transaction.atomic():
        dataset = _locked(dataset)
        now = state(dataset)
        if now in ("removed", "delisting", Dataset.Status.DELISTED):
            raise ActionRefused(f"already_{now}", {
                "removed": "The dataset is removed for legal reasons, which delisted it already.",
                "delisting": "The dataset is being delisted already: its clearing is on its way to the chain.",
                Dataset.Status.DELISTED: "The dataset is delisted already.",
            }[now])
        result = services.delist([dataset], moderator=moderator, reason=reason, statement=statement,
                                 internal_note=internal_note)
        dataset.refresh_from_db()
        return {"action": "delist", "status": dataset.status, "state": state(dataset),
                "on_chain": bool(result.queued or result.notes)}


def open_order_buyers(dataset) -> list[str]:
    """The buyers (addresses) of the dataset's listings whose orders are still in escrow, on the
    current market."""
    ids = list(Listing.objects.filter(version__dataset=dataset, chain_id=settings.CHAIN_ID)
               .values_list("listing_id", flat=True))
    if not ids:
        return []
    return sorted(set(Order.objects.filter(
        chain_id=settings.CHAIN_ID, market=_current_market(settings.CHAIN_ID), listing_id__in=ids,
        status=Order.Status.OPEN).values_list("buyer", flat=True)))


def remove(dataset, *, moderator, reason, statement, internal_note="") -> dict:
    with transaction.atomic():
        dataset = _locked(dataset)
        was = state(dataset)
        on_sale = [str(int(listing.listing_id)) for listing in removal.on_sale_listings(dataset)]
        try:
            on_chain = removal.remove(dataset, moderator=moderator)
        except removal.AlreadyDone as exc:
            raise ActionRefused("already_removed", str(exc)) from None
        buyers = open_order_buyers(dataset)
        entry = audit.record(action="dataset.remove", target_type="dataset", target_id=dataset.pk, actor=moderator,
                             actor_role=role_of(moderator), reason=reason, statement=statement,
                             internal_note=internal_note,
                             details={"dataset": dataset.slug, "was": was, "on_chain": on_chain,
                                      "buyers_told": len(buyers), "approved_listings": on_sale})
        notify(dataset.owner, kind="dataset.remove", text=(
            f"{dataset.title} was removed for legal reasons ({REASONS[reason]}): it is off sale and its files are "
            f"no longer delivered. Reasons: {statement} You may file a counter-notice at /me/audit."),
            link="/me/audit")
        # A buyer who never signed in gets an account for their address, as signing in would make,
        # so the notice waits for them.
        for buyer in buyers:
            _told_of_removal(dataset, buyer)
        return {"action": "remove", "status": Dataset.Status.DELISTED.value, "state": "removed",
                "on_chain": on_chain, "buyers_told": len(buyers), "entry": entry.pk}


def _told_of_removal(dataset, buyer: str, event=None) -> None:
    notify(wallet_user(buyer), kind="dataset.remove", text=(
        f"{dataset.title}, which you bought, was removed for legal reasons and can no longer be downloaded. "
        "Your payment is still in escrow: you can open a dispute before it is released."),
        link="/me/library", event=event)


@receiver(orders_created, dispatch_uid="moderation.orders_created")
def tell_buyers_of_removed(sender, events, **kwargs):
    """An order paid for a dataset already removed for legal reasons (the purchase was mined before
    the clearing of its approval): its buyer is told, as the buyers with open orders were at the
    removal; once per OrderCreated, so a reorganisation replaying it tells nobody twice."""
    by_listing = {}
    for event in events:
        by_listing.setdefault((event.chain_id, int(event.args["listingId"])), []).append(event)
    if not by_listing:
        return
    chain_ids = {chain_id for chain_id, _ in by_listing}
    listings = (Listing.objects.filter(chain_id__in=chain_ids, listing_id__in=[i for _, i in by_listing],
                                       version__dataset__removed_at__isnull=False)
                .select_related("version__dataset"))
    for listing in listings:
        for event in by_listing.get((listing.chain_id, int(listing.listing_id)), []):
            _told_of_removal(listing.version.dataset, event.args["buyer"], event=event)


def before_removal(dataset) -> tuple[str | None, list[str] | None, str]:
    """What a restore gives back to a removed dataset, from its latest `dataset.remove` entry:
    (the status it goes back to with nothing approved, or None; the on-chain listings it had on
    sale, to approve again, or None when the entry does not name them; why it stays off sale,
    for the publisher). The status is the earlier decision's when the removal found the dataset
    taken off sale (delisted, being delisted, rejected); else, when the removal found nothing on
    sale (`approved_listings` empty: e.g. approvals a ban cleared), delisted (draft for a draft);
    a dataset waiting for review with nothing on sale (a delisting, then a new version listed)
    goes back to review, its latest listed version resubmitted. Nothing that was not on sale at
    the removal is approved by its restore. An entry from before `approved_listings` was recorded names no
    listings: the restore approves every approved version's listings, as it did."""
    entry = audit.dataset_decisions(dataset.pk, ("dataset.remove",)).last()
    details = (entry.details or {}) if entry is not None else {}
    was, listings = details.get("was"), details.get("approved_listings")
    status = {"delisting": Dataset.Status.DELISTED, Dataset.Status.DELISTED: Dataset.Status.DELISTED,
              Dataset.Status.REJECTED: Dataset.Status.REJECTED}.get(was)
    if status is not None:
        return status, listings, "as it was before the removal"
    if listings == [] and was != Dataset.Status.PENDING_REVIEW:
        return (Dataset.Status.DRAFT if was == Dataset.Status.DRAFT else Dataset.Status.DELISTED, listings,
                "nothing of it was on sale when it was removed")
    # Waiting for review with nothing on sale: its latest listed version goes back to the queue.
    return None, listings, "the versions on sale when it was removed are no longer approved"


def restore(dataset, *, moderator, reason="", statement, internal_note="", appeal=None) -> dict:
    """Undo a delisting, a rejection or a removal: the dataset goes back to the state it was in
    just before (a removal of a dataset delisted or rejected before leaves it so, its files served
    again). Recorded as `dataset.relist` (it was delisted or rejected) or `dataset.restore` (it was
    removed). Refused (409 `publisher_banned`) when it would put the listings of a publisher
    banned from publishing back on sale."""
    with transaction.atomic():
        dataset = _locked(dataset)
        was = state(dataset)
        if removal.clearing_unread(dataset):
            raise ActionRefused("being_delisted", "The clearing of the dataset's approval is on its way to the chain: "
                                "restore it once the chain has confirmed it and the marketplace has read it (seconds "
                                "to minutes).")
        back_to, listings, why = before_removal(dataset) if was == "removed" else (None, None, "")
        try:
            status = removal.restore(dataset, moderator=moderator, back_to=back_to, listings=listings)
        except removal.AlreadyDone as exc:
            raise ActionRefused("nothing_to_restore", str(exc)) from None
        except removal.PublisherBanned as exc:
            raise ActionRefused("publisher_banned", str(exc)) from None
        action = "dataset.restore" if was == "removed" else "dataset.relist"
        details = {"dataset": dataset.slug, "was": was, "status": status}
        if appeal is not None:
            details["appeal"] = appeal.pk
        entry = audit.record(action=action, target_type="dataset", target_id=dataset.pk, actor=moderator,
                             actor_role=role_of(moderator), reason=reason, statement=statement,
                             internal_note=internal_note, details=details)
        if was == "removed" and (status in removal.OFF_SALE or status == Dataset.Status.DRAFT):
            # a removal undone that approved nothing: an earlier decision stands, or nothing was on sale
            back = (f"stays {Dataset.Status(status).label.lower()}, {why}; its files are delivered to its buyers "
                    "again")
        elif status == Dataset.Status.LISTED:
            back = "is listed again"
        elif status == Dataset.Status.PENDING_REVIEW:
            back = ("is back in the review queue" if was == Dataset.Status.REJECTED or listings == []
                    else "goes back on sale once the chain confirms its approval")
        else:
            back = "can be listed again"
        notify(dataset.owner, kind=action, text=f"{dataset.title} was restored by a moderator: it {back}. "
               f"{statement}", link=f"/me/datasets/{dataset.slug}/edit")
        return {"action": "restore", "status": status, "state": status, "entry": entry.pk}
