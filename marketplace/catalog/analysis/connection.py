"""The DuckDB connection an analysis runs on, and progress reported from its long statements."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import duckdb

DEFAULT_MEMORY_LIMIT = "2GB"
PROGRESS_POLL_SECONDS = 0.5

Progress = Callable[[float, str], None]


def _connect(*, threads: int | None, memory_limit: str | None, spill_dir: str):
    config: dict[str, Any] = {
        "memory_limit": memory_limit or DEFAULT_MEMORY_LIMIT,
        "temp_directory": spill_dir,
        # Row order only matters for the sample, which is read separately with order preserved.
        "preserve_insertion_order": False,
        "autoinstall_known_extensions": False,
    }
    if threads:
        config["threads"] = threads
    con = duckdb.connect(":memory:", config=config)
    # Progress is tracked (for query_progress) but never printed.
    con.execute("SET enable_progress_bar = true")
    con.execute("SET enable_progress_bar_print = false")
    # Zoned timestamps are shown in UTC, whatever the server's zone.
    con.execute("SET TimeZone = 'UTC'")
    return con


class _Reporter:
    """Calls the caller's progress callback with fractions that never go backwards."""

    def __init__(self, callback: Progress | None):
        self.callback = callback
        self.last = 0.0

    def __call__(self, fraction: float, message: str) -> None:
        if self.callback is None:
            return
        self.last = max(self.last, min(1.0, fraction))
        self.callback(self.last, message)


def _run_tracked(con, sql: str, report: _Reporter, start: float, end: float, message: str):
    """Run a long statement, reporting DuckDB's own progress between `start` and `end`.

    The statement runs on a helper thread so that the callback is only ever called from the
    caller's thread; an exception from the callback interrupts the statement.
    """
    if report.callback is None:
        return con.execute(sql).fetchall()
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(lambda: con.execute(sql).fetchall())
        while True:
            try:
                return future.result(timeout=PROGRESS_POLL_SECONDS)
            except FutureTimeout:
                percent = con.query_progress()
                if percent >= 0:
                    try:
                        report(start + (end - start) * percent / 100, message)
                    except BaseException:
                        con.interrupt()
                        try:
                            future.result()
                        except duckdb.Error:
                            pass
                        raise
