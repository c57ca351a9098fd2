"""The decisions other apps take, recorded in the audit log (and told to the people they are about).

The catalog and rewards apps import nothing of moderation (apps depend downward): they send a
signal inside the deciding transaction (`catalog.signals.revision_decided` and `dataset_delisted`,
`rewards.signals.flag_decided`) and these receivers append the audit entry in that same transaction, so an entry
exists exactly when the decision committed, whichever way it was taken (the admin, the API, the
demo seed, the chain indexer)."""
from django.contrib.auth import get_user_model
from django.dispatch import receiver

from marketplace.accounts.roles import ARBITER, MODERATOR, has_role
from marketplace.catalog.models import DatasetRevision
from marketplace.catalog.signals import dataset_delisted, revision_decided, revision_deciding
from marketplace.rewards.models import Flag
from marketplace.rewards.signals import flag_decided

from . import audit, policy, review
from .models import ReviewClaim
from .notifications import notify

REVISION_ACTIONS = {
    DatasetRevision.Status.APPROVED: "dataset.approve",
    DatasetRevision.Status.REJECTED: "dataset.reject",
    DatasetRevision.Status.CHANGES_REQUESTED: "dataset.request_changes",
}
DECIDED_WORDS = {
    "dataset.approve": "approved",
    "dataset.reject": "rejected",
    "dataset.request_changes": "sent back: changes were requested",
}
FLAG_ACTIONS = {Flag.Status.CLEARED: "flag.clear", Flag.Status.CONFIRMED: "flag.confirm"}


def revision_subject(revision) -> str:
    if revision.kind == DatasetRevision.Kind.DETAILS:
        return "the dataset's text"
    kind = "version" if revision.kind == DatasetRevision.Kind.VERSION else "preview of version"
    return f"{kind} {revision.version.number}" if revision.version_id else kind


@receiver(revision_deciding, dispatch_uid="moderation.refuse_claimed_revision")
def refuse_claimed_revision(sender, revision, moderator, **kwargs):
    """Another moderator's claim on the revision refuses the decision, whichever way it is taken."""
    review.refuse_if_claimed_by_another(revision, moderator)


@receiver(revision_decided, dispatch_uid="moderation.record_revision_decision")
def record_revision_decision(sender, revision, status, moderator, reason, reason_code="", internal_note="",
                             whole_dataset=False, **kwargs):
    action = REVISION_ACTIONS.get(status)
    if action is None:
        return
    ReviewClaim.objects.filter(revision=revision).delete()  # decided: the claim has done its work
    dataset = revision.dataset
    details = {"revision": revision.pk, "kind": revision.kind, "dataset": dataset.slug,
               "whole_dataset": bool(whole_dataset)}
    if revision.version_id:
        details["version"] = revision.version.number
    if revision.listings:
        details["listings"] = [{"chain_id": int(item.get("chain_id", 0)), "listing_id": str(item.get("listing_id")),
                                "content_hash": str(item.get("content_hash", ""))} for item in revision.listings]
    audit.record(action=action, target_type="dataset", target_id=dataset.pk, actor=moderator,
                 actor_role=role_of(moderator), reason=reason_code or "", statement=reason or "",
                 internal_note=internal_note or "", details=details)
    subject = revision_subject(revision)
    text = f"{dataset.title}: {subject} was {DECIDED_WORDS[action]}."
    if reason_code:  # the policy cited, never the internal note
        text += f" Policy: {policy.label(reason_code)}."
    if reason:
        text += f" Reasons: {reason}"
    notify(dataset.owner, kind=action, text=text, link=f"/me/datasets/{dataset.slug}/edit")


@receiver(dataset_delisted, dispatch_uid="moderation.record_delisting")
def record_delisting(sender, dataset, moderator, on_chain, reason="", statement="", internal_note="", **kwargs):
    audit.record(action="dataset.delist", target_type="dataset", target_id=dataset.pk, actor=moderator,
                 actor_role=role_of(moderator), reason=reason, statement=statement, internal_note=internal_note,
                 details={"dataset": dataset.slug, "on_chain": bool(on_chain)})
    text = (f"{dataset.title} was delisted by a moderator: it is no longer for sale"
            + (" once the chain confirms." if on_chain else "."))
    if statement:
        text += f" Reasons: {statement} You may appeal at /me/audit."
    notify(dataset.owner, kind="dataset.delist", text=text, link=f"/me/datasets/{dataset.slug}/edit")


@receiver(flag_decided, dispatch_uid="moderation.record_flag_decision")
def record_flag_decision(sender, flag, by, **kwargs):
    action = FLAG_ACTIONS.get(flag.status)
    if action is None:
        return
    details = {"kind": flag.kind, "wallet": flag.wallet, "quality_penalty_bps": int(flag.quality_penalty_bps)}
    if flag.device_id:
        details["device"] = flag.device_id
    role = role_of(by) if not isinstance(by, str) else "moderator"  # a name alone: a service's call
    audit.record(action=action, target_type="flag", target_id=flag.pk, actor=by, actor_role=role,
                 internal_note=flag.note or "", details=details)
    contributor = get_user_model().objects.filter(address=flag.wallet).first()
    if contributor is not None:
        outcome = ("cleared: the rewards it held are paid in the next epoch" if action == "flag.clear" else
                   "confirmed: the rewards it held go back to the pool")
        notify(contributor, kind=action, text=f"A moderator reviewed the flag on your contributions "
               f"({flag.get_kind_display().lower()}) and {outcome}.", link="/me/rewards")


def role_of(user) -> str:
    if user is None:
        return "system"
    if has_role(user, MODERATOR):
        return "moderator"
    if has_role(user, ARBITER):
        return "arbiter"
    return "admin"
