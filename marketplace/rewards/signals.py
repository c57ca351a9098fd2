"""Signals the rewards app sends for other apps to hear (it imports none of them)."""
from django.dispatch import Signal

# Sent inside flags.decide's transaction for each flag decided: `flag` (its new status, decided_by
# and decided_at set) and `by` (the deciding user, or a name). The moderation app records each in its
# audit log.
flag_decided = Signal()
