"""Appeals and counter-notices: a publisher contests a decision about their dataset (a rejection,
a delisting, a removal; a counter-notice for a removal for legal reasons) with a statement, and a
moderator other than the one who took the decision upholds or reverses it. A reversal restores
the dataset (actions.restore). Each step is an audit entry, and the publisher is told the outcome.
"""
from django.db import IntegrityError, transaction
from django.utils import timezone

from marketplace.catalog.models import Dataset

from . import actions, audit
from .actions import ActionRefused
from .models import Appeal, AuditEntry
from .notifications import notify
from .policy import APPEAL_MAX, STATEMENT_MAX
from .receivers import role_of

APPEALABLE = {"dataset.reject": "rejection", "dataset.delist": "delisting", "dataset.remove": "removal"}
OUTCOMES = {"upheld": Appeal.Status.UPHELD, "reversed": Appeal.Status.REVERSED}


def _statement(text, what="statement", most=APPEAL_MAX) -> str:
    text = (text or "").strip()
    if not text:
        raise ActionRefused("invalid_statement", f"Write your {what}.", status=400)
    if len(text) > most:
        raise ActionRefused("invalid_statement", f"The {what} is {len(text):,} characters long; at most "
                            f"{most:,}.", status=400)
    return text


def appealable_entry(entry_id) -> tuple[AuditEntry, Dataset]:
    """The decision entry and its dataset; ActionRefused 404 for an entry that is not a decision
    about a dataset, 400 for one that cannot be appealed."""
    entry = AuditEntry.objects.filter(pk=entry_id, target_type="dataset").first() if str(entry_id).isdigit() \
        else None
    dataset = Dataset.objects.select_related("owner").filter(pk=int(entry.target_id)).first() if entry and \
        entry.target_id.isdigit() else None
    if entry is None or dataset is None:
        raise ActionRefused("not_found", "No decision about a dataset has this number.", status=404)
    if entry.action not in APPEALABLE:
        raise ActionRefused("not_appealable", "Only a rejection, a delisting or a removal can be appealed.",
                            status=400)
    return entry, dataset


def still_stands(entry, dataset) -> bool:
    """The decision still holds: the dataset is removed, delisted (or being delisted), or rejected."""
    if entry.action == "dataset.remove":
        return dataset.removed_at is not None
    if entry.action == "dataset.delist":
        # A removal since is a decision of its own: it is contested by a counter-notice, not
        # undone by reversing the delisting before it.
        return actions.state(dataset) in ("delisting", Dataset.Status.DELISTED)
    return dataset.status == Dataset.Status.REJECTED


def file(*, publisher, entry_id, statement) -> Appeal:
    """A publisher's appeal of the decision `entry_id` (a counter-notice when it is a removal)."""
    entry, dataset = appealable_entry(entry_id)
    if dataset.owner_id != publisher.pk:
        raise ActionRefused("not_yours", "Only the dataset's publisher can appeal a decision about it.", status=403)
    kind = Appeal.Kind.COUNTER_NOTICE if entry.action == "dataset.remove" else Appeal.Kind.APPEAL
    statement = _statement(statement, "counter-notice" if kind == Appeal.Kind.COUNTER_NOTICE else "appeal")
    try:
        with transaction.atomic():
            dataset = Dataset.objects.select_for_update(of=("self",)).select_related("owner").get(pk=dataset.pk)
            if Appeal.objects.filter(dataset=dataset, status=Appeal.Status.OPEN).exists():
                raise ActionRefused("appeal_open", "An appeal about this dataset is open already: wait for its "
                                    "decision.")
            if not still_stands(entry, dataset):
                raise ActionRefused("decision_undone", "This decision no longer stands (the dataset was restored "
                                    "or decided again since): there is nothing to appeal.")
            appeal = Appeal.objects.create(dataset=dataset, publisher=publisher, kind=kind, entry_id=entry.pk,
                                           decision=entry.action, decided_by_id=entry.actor_id, statement=statement)
            audit.record(action="appeal.file", target_type="dataset", target_id=dataset.pk, actor=publisher,
                         actor_role="publisher", statement=statement,
                         details={"appeal": appeal.pk, "entry": entry.pk, "kind": kind, "decision": entry.action})
            notify(publisher, kind="appeal.file", text=f"Your {appeal.get_kind_display().lower()} about "
                   f"{dataset.title} was received; another moderator will decide it.", link="/me/audit")
    except IntegrityError:  # two at once: the partial unique index kept one
        raise ActionRefused("appeal_open", "An appeal about this dataset is open already: wait for its "
                            "decision.") from None
    return appeal


def _later_decision(appeal):
    """A decision about the whole dataset taken after the one appealed (a delisting, removal or
    rejection of it), or None. A rejected text edit, version or preview is not one: reversing the
    appeal does not undo it."""
    return (audit.dataset_decisions(appeal.dataset_id, ("dataset.delist", "dataset.remove", "dataset.reject"))
            .filter(pk__gt=appeal.entry_id).first())


def decide(appeal_id, *, moderator, outcome, statement) -> Appeal:
    """Uphold or reverse an open appeal; a reversal restores the dataset. The moderator who took
    the decision appealed cannot decide it (403)."""
    if outcome not in OUTCOMES:
        raise ActionRefused("invalid_outcome", "Choose upheld or reversed.", status=400)
    statement = _statement(statement, "statement of reasons", most=STATEMENT_MAX)
    with transaction.atomic():
        appeal = Appeal.objects.select_for_update().filter(pk=appeal_id).first()
        if appeal is None:
            raise ActionRefused("not_found", "No appeal has this number.", status=404)
        if appeal.status != Appeal.Status.OPEN:
            raise ActionRefused("decided_already", f"This appeal was decided already: "
                                f"{appeal.get_status_display().lower()}.")
        if appeal.decided_by_id is not None and appeal.decided_by_id == moderator.pk:
            raise ActionRefused("own_decision", "You took the decision this appeal contests: another moderator "
                                "must decide it.", status=403)
        # The dataset's row lock: a removal or delisting being taken now is seen, or waits.
        dataset = Dataset.objects.select_for_update(of=("self",)).select_related("owner").get(pk=appeal.dataset_id)
        restored = None
        if outcome == "reversed":
            later = _later_decision(appeal)
            if later is not None:
                raise ActionRefused("decision_superseded", f"A later decision took the place of the one this appeal "
                                    f"contests (audit entry #{later.pk}, {later.action}): reversing it would undo "
                                    "that one too. Uphold this appeal; the later decision has its own appeal or "
                                    "counter-notice.")
            try:
                restored = actions.restore(dataset, moderator=moderator, statement=statement, appeal=appeal)
            except ActionRefused as refused:
                if refused.code != "nothing_to_restore":
                    raise
        appeal.status, appeal.moderator, appeal.answer = OUTCOMES[outcome], moderator, statement
        appeal.decided_at = timezone.now()
        appeal.save(update_fields=["status", "moderator", "answer", "decided_at"])
        action = "appeal.reverse" if outcome == "reversed" else "appeal.uphold"
        audit.record(action=action, target_type="dataset", target_id=dataset.pk, actor=moderator,
                     actor_role=role_of(moderator), statement=statement,
                     details={"appeal": appeal.pk, "entry": appeal.entry_id, "kind": appeal.kind,
                              "decision": appeal.decision, "restored": restored is not None})
        what = APPEALABLE.get(appeal.decision, "decision")
        verdict = (f"the {what} was reversed and the dataset restored" if outcome == "reversed"
                   else f"the {what} stands")
        notify(appeal.publisher, kind=action, text=f"Your {appeal.get_kind_display().lower()} about {dataset.title} "
               f"was decided: {verdict}. Reasons: {statement}", link="/me/audit")
    return appeal
