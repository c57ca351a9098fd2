"""The policy list a moderator's refusal cites: the code stored as the audit entry's `reason`,
and the label moderators and publishers read. A rejection or a request for changes names one, with
a statement of reasons in the moderator's words."""

REASONS = {
    "illegal_content": "Illegal content",
    "personal_data": "Personal data without a lawful basis",
    "copyright": "Copyright or licence infringement",
    "misleading": "Misleading title, description or data",
    "spam": "Spam or duplicate listing",
    "low_quality": "Too low in quality to be useful",
    "other": "Another reason (see the statement)",
}

STATEMENT_MAX = 2000  # characters of a statement of reasons
NOTE_MAX = 5000  # characters of an internal note


def label(code: str) -> str:
    return REASONS.get(code, code)
