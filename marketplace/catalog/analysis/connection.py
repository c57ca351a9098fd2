"""The DuckDB connection an analysis runs on, and progress reported from its long statements."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path

import duckdb

from .values import _sql_string

PROGRESS_POLL_SECONDS = 0.5

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class Limits:
    """What one analysis may use. The child process that runs it (see sandbox) gets `memory_mb` of
    address space (RLIMIT_AS) and `cpu_seconds` of CPU time, all its threads together
    (RLIMIT_CPU); DuckDB gets half the address space as its memory_limit (the interpreter,
    thread stacks and allocator reservations take the rest) and `temp_mb` of spill files. A
    child that has not answered within `wall_seconds` is killed."""

    memory_mb: int = 4096
    cpu_seconds: int = 600
    wall_seconds: int = 1800  # from the file sent to the result: a child that waits uses no CPU
    temp_mb: int = 10_240
    threads: int | None = None  # DuckDB's threads; None: one per core

    @property
    def duckdb_memory_mb(self) -> int:
        return self.memory_mb // 2


def _connect():
    """A DuckDB instance with one thread: nothing runs beside the caller, so a fork server can
    open it once and every child forked from it starts with it open (see sandbox and warm)."""
    return duckdb.connect(":memory:", config={
        "threads": 1,
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
    })


def _configure(con, limits: Limits, spill_dir: Path) -> None:
    """Set up a connection from _connect for one analysis, not yet limited to its file (_seal).
    It keeps _connect's one thread: Workspace.analyse gives a large file more."""
    con.execute(f"SET memory_limit = '{limits.duckdb_memory_mb}MB'")
    con.execute(f"SET temp_directory = {_sql_string(str(spill_dir))}")
    con.execute(f"SET max_temp_directory_size = '{limits.temp_mb}MB'")
    # Progress is tracked (for query_progress) but never printed.
    con.execute("SET enable_progress_bar = true")
    con.execute("SET enable_progress_bar_print = false")
    # Zoned timestamps are shown in UTC, whatever the server's zone.
    con.execute("SET TimeZone = 'UTC'")


def _seal(con, data_path: Path, spill_dir: Path) -> None:
    """Limit the connection to the one file and its spill directory, for good: no other file,
    no network, no extension, and no setting can be changed back."""
    # Literals, not parameters: a parameter makes DuckDB import pandas (0.3 s in a fresh child).
    con.execute(f"SET allowed_paths = [{_sql_string(str(data_path))}]")
    con.execute(f"SET allowed_directories = [{_sql_string(str(spill_dir) + '/')}]")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


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
