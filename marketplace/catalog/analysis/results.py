"""What an analysis returns: per-column statistics, the whole analysis, and the failure a
publisher reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

@dataclass
class ColumnStats:
    name: str
    # "integer" | "float" | "decimal" | "boolean" | "date" | "timestamp" | "string" | "other"
    type: str
    duckdb_type: str
    null_count: int
    # Exact for booleans, for columns with few distinct values and for files sampled whole;
    # otherwise an estimate, typically within a per cent or two (see DISTINCT_HASHES_KEPT).
    distinct_count: int
    min: Any = None  # numbers as int/float (decimals as str), dates and timestamps as ISO strings
    max: Any = None
    mean: float | None = None  # numbers only
    histogram: list[dict] = field(default_factory=list)  # {"start", "end", "count"}, numbers/dates
    # {"value", "count"}, most frequent first, for text (unless nearly unique) and booleans
    top_values: list[dict] = field(default_factory=list)
    # True when the histogram and top-value counts are estimates from a uniform sample of the rows
    # (scaled to the column's exact count); null counts, min, max and mean are always exact.
    sampled: bool = False


@dataclass
class Analysis:
    format: str  # "csv" | "jsonl" | "parquet"
    row_count: int
    columns: list[ColumnStats]
    sample: list[dict]  # the first SAMPLE_ROWS rows, JSON-safe
    rejected_rows: int = 0  # rows a lenient read skipped
    warnings: list[str] = field(default_factory=list)
    # Rows the histograms and top values were counted on (row_count when the file is its own sample)
    stats_sample_rows: int = 0


NEEDS_MORE_MEMORY = "The file needs more memory to analyse than the server allows."


class AnalysisFailed(Exception):
    """The file cannot be analysed; `reason` says why in words for the publisher."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason
