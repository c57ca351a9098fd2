"""The policy a moderator's decision cites: the reason codes (stored in the audit entry's `reason`)
with the words publishers read, and the limits of what a moderator writes."""

REASONS = {
    "illegal_content": "Illegal content",
    "personal_data": "Personal data without a lawful basis",
    "copyright": "Copyright or licence infringement",
    "misleading": "Misleading title, description or data",
    "spam": "Spam or duplicate",
    "low_quality": "Too low quality to sell",
    "other": "Another reason (see the statement)",
}
STATEMENT_MAX = 5000  # characters of a statement of reasons, an appeal or a note
