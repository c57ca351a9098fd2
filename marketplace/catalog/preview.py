"""What the public sees of a version's file: the publisher decides.

Always public (unless the column is hidden): each column's name and types, its null count, the
row count, and the range (min and max) of number and date columns. Public only when the publisher
chose so: the first rows (`show_sample`) and the value distributions (`show_distributions`: top
values, histograms, distinct counts, means), where a value or a bin seen fewer than
MIN_PUBLIC_COUNT times is never shown (an empty bin looks the same as one of those), nor one
other count that would give it away by subtraction from the row count, nor the mean (`withheld`). A hidden
column is absent from all of it (sample rows included). A hidden name matches a column whatever
its case and surrounding spaces (`column_key`), and the duplicates of that column DuckDB renamed
(`Email_1` beside `email`: `hides`); once the file is analysed the names are stored as
the file spells them, and a version one of whose hidden names matches no column cannot be
approved (`unmatched_hidden`). The owner sees everything.
"""
from dataclasses import dataclass
import re

MIN_PUBLIC_COUNT = 5
RANGE_TYPES = {"integer", "float", "decimal", "date", "timestamp"}
ALWAYS_PUBLIC = ("name", "type", "duckdb_type", "null_count")
DISTRIBUTION_KEYS = ("distinct_count", "mean", "histogram", "top_values", "sampled")


@dataclass(frozen=True)
class PreviewSettings:
    """A version's preview choice; `shows_more_than` tells whether a change needs a moderator."""

    hidden_columns: tuple[str, ...] = ()
    show_sample: bool = False
    show_distributions: bool = False

    @classmethod
    def of(cls, version) -> "PreviewSettings":
        return cls(tuple(sorted(version.hidden_columns or ())), version.show_sample, version.show_distributions)

    @classmethod
    def from_json(cls, data: dict) -> "PreviewSettings":
        return cls(tuple(sorted(data.get("hidden_columns") or ())), bool(data.get("show_sample")),
                   bool(data.get("show_distributions")))

    def to_json(self) -> dict:
        return {"hidden_columns": list(self.hidden_columns), "show_sample": self.show_sample,
                "show_distributions": self.show_distributions}

    def shows_more_than(self, other: "PreviewSettings") -> bool:
        """True when this shows anything `other` does not: a column it hides, its sample or its
        distributions."""
        return (bool(set(other.hidden_columns) - set(self.hidden_columns))
                or (self.show_sample and not other.show_sample)
                or (self.show_distributions and not other.show_distributions))

    def at_most(self, other: "PreviewSettings") -> "PreviewSettings":
        """What both allow: the most this shows without showing more than `other`."""
        return PreviewSettings(tuple(sorted(set(self.hidden_columns) | set(other.hidden_columns))),
                               self.show_sample and other.show_sample,
                               self.show_distributions and other.show_distributions)


def column_key(name) -> str:
    """What a hidden name and a column's name are matched on: `Email` and ` email ` are one."""
    return str(name).strip().casefold()


_RENAMED = re.compile(r"(.+)_\d+")


def hides(keys: set[str], column) -> bool:
    """Whether hidden names with these keys hide `column`: the same key, or the column is the
    key's duplicate as DuckDB renames it, adding `_1` until the name is new (a header
    `email,Email` reads as `email`, `Email_1`; `email_1,email,Email` as `email_1`, `email`,
    `Email_1_1`): a publisher hiding `Email` means one of them, and all are hidden."""
    key = column_key(column)
    while True:
        if key in keys:
            return True
        renamed = _RENAMED.fullmatch(key)
        if renamed is None:
            return False
        key = renamed.group(1)


def match_hidden(hidden, columns) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the `columns` the `hidden` names hide, the `hidden` names that match none of them)."""
    keys = {column_key(name) for name in hidden}
    matched = {str(column) for column in columns if hides(keys, column)}
    found = {column_key(column) for column in matched}
    return tuple(sorted(matched)), tuple(sorted(name for name in hidden if column_key(name) not in found))


def unmatched_hidden(version, settings: PreviewSettings | None = None) -> list[str]:
    """The hidden names that match no column of the version's file (none while its columns are
    not known): the column the publisher meant to hide may be public under another name."""
    settings = settings or PreviewSettings.of(version)
    names = column_names(version)
    return list(match_hidden(settings.hidden_columns, names)[1]) if names else []


def public_columns(version, settings: PreviewSettings | None = None) -> list[dict]:
    """The column statistics the public may see (see the module's docstring)."""
    settings = settings or PreviewSettings.of(version)
    hidden = {column_key(name) for name in settings.hidden_columns}
    shown = []
    for column in version.columns or []:
        if hides(hidden, column.get("name")):
            continue
        non_null = (version.row_count or 0) - (column.get("null_count") or 0)
        public = {key: column.get(key) for key in ALWAYS_PUBLIC if key in column}
        if column.get("type") in RANGE_TYPES:
            public["min"], public["max"] = column.get("min"), column.get("max")
        if settings.show_distributions:
            for key in DISTRIBUTION_KEYS:
                if key in column:
                    public[key] = column[key]
            # Exact counts (not a sample's) add up to the column's non-null rows: what they leave
            # out (values past the top ones, NaN and infinities outside the bins) is one more
            # count the public can work out, and withheld like the rest.
            exact = not column.get("sampled")
            top_values = column.get("top_values") or []
            value_counts = [t.get("count") for t in top_values]
            withheld_values = withheld(value_counts, rest=_rest(non_null, value_counts) if exact else 0)
            public["top_values"] = [t for i, t in enumerate(top_values) if i not in withheld_values]
            # A withheld bin keeps its place but not its count, and an empty bin reads the same: a
            # column with one bin per value (small integers, days) would otherwise tell which rare
            # values exist.
            histogram = column.get("histogram") or []
            bin_counts = [b.get("count") for b in histogram]
            withheld_bins = withheld(bin_counts, rest=_rest(non_null, bin_counts) if exact and histogram else 0)
            public["histogram"] = [
                {**bin_, "count": None} if i in withheld_bins or not bin_.get("count") else bin_
                for i, bin_ in enumerate(histogram)
            ]
            if withheld_values or withheld_bins:
                # With the bins' values the mean would solve for a withheld count, and the number
                # of distinct values would tell how many counts are withheld.
                public.pop("mean", None)
                public.pop("distinct_count", None)
        if 0 < non_null < MIN_PUBLIC_COUNT <= (version.row_count or 0):
            # Fewer than MIN_PUBLIC_COUNT of the rows hold a value: their count, and a number
            # column's range (their values), are not shown. (A file of fewer rows than that shows
            # its ranges, as the default says: its row count is public anyway.)
            for key in ("null_count", "min", "max"):
                public.pop(key, None)
        shown.append(public)
    return shown


def _rest(non_null: int, counts) -> int:
    return max(0, non_null - sum(count or 0 for count in counts))


def withheld(counts, rest: int = 0) -> set[int]:
    """The positions of the counts a public distribution withholds. `rest`: rows the counts leave
    out, never shown but known by subtraction. Every count below MIN_PUBLIC_COUNT is withheld and,
    when one is (the rest included), the smallest other ones too until at least two are withheld
    adding up to MIN_PUBLIC_COUNT or more. The row and null counts are public, so a single
    withheld count would be the total less the counts shown (a boolean true 3 times in 1,000
    rows shows neither count)."""
    nonzero = sorted((count, i) for i, count in enumerate(counts) if count)
    rare = [(count, i) for count, i in nonzero if count < MIN_PUBLIC_COUNT]
    if not rare and not 0 < rest < MIN_PUBLIC_COUNT:
        return set()
    chosen = {i for _, i in rare}
    total = sum(count for count, _ in rare) + rest
    cells = len(chosen) + (1 if rest else 0)
    for count, i in nonzero:
        if cells >= 2 and total >= MIN_PUBLIC_COUNT:
            break
        if i not in chosen:
            chosen.add(i)
            total += count
            cells += 1
    return chosen


def public_sample(version, settings: PreviewSettings | None = None) -> list[dict]:
    """The sample rows the public may see: none unless chosen, never a hidden column."""
    settings = settings or PreviewSettings.of(version)
    if not settings.show_sample:
        return []
    hidden = {column_key(name) for name in settings.hidden_columns}
    return [{k: v for k, v in row.items() if not hides(hidden, k)}
            for row in version.sample or [] if isinstance(row, dict)]


def public_analysis_message(version) -> str:
    """What the public reads of the analysis: its outcome and counts only. The analysis's own
    message quotes column names and values from the file (e.g. the line that could not be read),
    which may be hidden or rare, so only the owner reads it."""
    status = version.analysis_status
    if status == version.Analysis.DONE_WITH_REJECTS:
        return f"Analysed with {version.rejected_rows:,} rejected rows."
    if status == version.Analysis.FAILED:
        return "The file could not be analysed; its publisher knows why."
    if status == version.Analysis.NOT_TABULAR:
        return "Not a tabular file: no preview."
    if status == version.Analysis.RUNNING:
        return "Analysing the file."
    return ""


def column_names(version) -> list[str]:
    names = [c.get("name") for c in version.columns or [] if c.get("name") is not None]
    if not names and version.sample and isinstance(version.sample[0], dict):
        names = list(version.sample[0])
    return names
