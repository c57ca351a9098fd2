"""What the catalog does when chain/ forgets a chain (a wiped local chain, or --forget-chain), and
the signal it sends when a revision is decided."""
from django.dispatch import Signal, receiver

from marketplace.chain.signals import chain_reset

from .handlers import drop_listings

# Sent inside the deciding transaction for every revision that gets a decision (approved,
# rejected, changes requested), those decided along with another (a rejected submission's
# versions, a delisted dataset's waiting revisions) included: `revision`, `status` (its new
# DatasetRevision.Status), `moderator` (a user, or None for the system), `reason`, and the
# `reason_code` (a policy code) and `internal_note` the moderator gave ("" when none), and
# `whole_dataset`: True when the decision is about the whole dataset (a new dataset's text in its
# first review, and what a rejection of it rejects along with it), False for a part of it (a
# text edit, a version, a preview). The moderation app records each in its audit log and tells
# the publisher; the catalog imports nothing of it (apps depend downward only).
revision_decided = Signal()
# Sent by revisions.decide inside its transaction, with the revision locked and still open, before
# anything is decided: `revision`, `decision`, `moderator`. A receiver may refuse the decision by
# raising revisions.DecisionBlocked (moderation: another moderator has claimed the revision).
revision_deciding = Signal()
# Sent inside services.delist's transaction for each dataset a moderator delists: `dataset`,
# `moderator` (a user or None) and `on_chain` (True when an approval on-chain is being cleared,
# so the dataset is delisted once the chain confirms); `reason`, `statement` and `internal_note`
# (a policy code, the statement of reasons the publisher sees, a note for moderators; empty from
# the admin) when the moderation console delisted it.
dataset_delisted = Signal()


@receiver(chain_reset)
def forget_listings(sender, chain_id, **kwargs):
    """Drop the chain-derived listings; datasets and their files stay, needing relisting, and the
    reviews waiting on those listings close. A new listing goes to review again: the approvals
    of the versions that were listed there end with their listings (chain/ cancels the operator
    actions queued for that chain, so none of them reaches a listing of the new chain). A dataset
    a moderator rejected or delisted stays so: relisting it is a new submission of a rejected or
    delisted dataset, never a fresh one's."""
    drop_listings(chain_id, why="the chain was reset")
