"""The policy a moderator's decision cites: the reason codes (stored as the audit entry's `reason`)
with the words moderators and publishers read, and the limits of what people write. A rejection,
a request for changes, a delisting or a removal names one, with a statement of reasons in the
moderator's words."""

REASONS = {
    "illegal_content": "Illegal content",
    "personal_data": "Personal data without a lawful basis",
    "copyright": "Copyright or licence infringement",
    "misleading": "Misleading title, description or data",
    "spam": "Spam or duplicate listing",
    "low_quality": "Too low in quality to be useful",
    "other": "Another reason (see the statement)",
}

REASON_CODES = list(REASONS)  # the API's choices, in this order (PolicyReasonEnum)

STATEMENT_MAX = 2000  # characters of a statement of reasons
NOTE_MAX = 5000  # characters of an internal note
APPEAL_MAX = 5000  # characters of an appeal or a counter-notice


def label(code: str) -> str:
    return REASONS.get(code, code)
