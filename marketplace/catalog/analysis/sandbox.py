"""Each analysis runs in a child process with a memory limit (RLIMIT_AS) and a CPU-time limit
(RLIMIT_CPU): the Celery worker runs a pool of threads, so Celery's per-child limits do not apply,
and a file that makes DuckDB allocate or compute without end must not take the worker with it.

Children come from a fork server that has imported DuckDB and opened a DuckDB instance once
(warm). Each worker thread keeps one child started ahead of time (limits set, its connection
configured) and has the next one started off its thread: a small file costs the worker about
10 ms more than analysing it in place (bench/analysis_small.py). A child takes up to
FILES_PER_CHILD small files in turn, each on a fresh DuckDB instance sealed to that file and with
its own CPU allowance (a child costs about 20 ms of CPU to start, which was a third of the demo
catalog's analysis); a large file or a failure ends it. The child sends progress and then the
analysis (or the reason it failed) through a pipe; a child the kernel killed for its limits
becomes a failure with the reason, never a hung or dead worker.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import resource
import shutil
import signal
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .connection import Limits, Progress
from .results import NEEDS_MORE_MEMORY, AnalysisFailed

logger = logging.getLogger(__name__)
_context = multiprocessing.get_context("forkserver")
# The main module too, so that children find it imported instead of running it again each; and
# a DuckDB instance opened once (warm), which each child uses for its one file.
_context.set_forkserver_preload(["__main__", __name__, f"{__package__}.warm"])
_ready = threading.local()  # this thread's next child (a Future of it)
# Ends used children and starts their successors off the worker's threads.
_replacer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="analysis-children")
# Small files one child analyses in turn (see _serve), and what it may spend between two: seconds
# of CPU time (closing one DuckDB instance, opening the next) and of waiting for it to say so.
FILES_PER_CHILD = 20
BETWEEN_FILES_CPU_SECONDS = 5
READY_SECONDS = 10


def analyse_in_child(
    path: str | Path, fmt: str, *, limits: Limits, progress: Progress | None = None,
) -> dict:
    """The analysis of the file at `path` (as analysis.to_json gives it), run in a child process
    within `limits`. Raises AnalysisFailed with the reason, a limit's included."""
    upcoming, _ready.child = getattr(_ready, "child", None), None
    child = upcoming.result() if upcoming else _Child(limits)
    if child.limits != limits or not child.process.is_alive():  # a ready child can be killed too
        _replacer.submit(child.stop)
        child = _Child(limits)
    try:
        return child.analyse(str(path), fmt, progress)
    finally:
        _ready.child = _replacer.submit(_replace, child, limits)


def _replace(used: _Child, limits: Limits) -> _Child:
    """The thread's next child: `used` once it says it is ready for another file (a child that
    dies before then is replaced, and nothing is blamed on a file it never got), else a new one."""
    if used.takes_more and used.ready():
        return used
    used.stop()
    return _Child(limits)


class _Child:
    def __init__(self, limits: Limits):
        self.limits = limits
        self.takes_more = False  # whether it has said it will analyse another file
        # Made and removed here, not in the child: a child its limits kill cleans up nothing, and
        # its directory holds the file's decompressed copy and DuckDB's spill files.
        self.directory = tempfile.mkdtemp(prefix="analysis-")
        self.conn, child_end = _context.Pipe()
        self.process = _context.Process(target=_serve, args=(child_end, limits, self.directory),
                                        daemon=True)
        self.process.start()
        child_end.close()

    def analyse(self, path: str, fmt: str, progress: Progress | None) -> dict:
        self.takes_more = False
        deadline = time.monotonic() + self.limits.wall_seconds
        try:
            self.conn.send((path, fmt))
            while True:
                if not self.conn.poll(max(0.0, deadline - time.monotonic())):
                    self.process.kill()
                    self.process.join()
                    raise AnalysisFailed(
                        f"The analysis took more than {self.limits.wall_seconds:,} s, the most the "
                        "server allows.")
                kind, *body = self.conn.recv()
                if kind == "progress":
                    if progress is not None:
                        progress(*body)
                elif kind == "done":
                    self.takes_more = body[1]
                    return body[0]
                else:
                    raise AnalysisFailed(body[0])
        except (EOFError, BrokenPipeError, ConnectionResetError):
            self.process.join()
            raise AnalysisFailed(self._death()) from None

    def ready(self) -> bool:
        """Whether the child, having said it takes another file, has set up for it."""
        try:
            return self.conn.poll(READY_SECONDS) and self.conn.recv() == ("ready",)
        except (EOFError, OSError):
            return False

    def _death(self) -> str:
        code = self.process.exitcode
        if code == -signal.SIGXCPU:
            return (f"The analysis took more than {self.limits.cpu_seconds:,} s of CPU time, "
                    "the most the server allows.")
        if code in (-signal.SIGKILL, -signal.SIGSEGV, -signal.SIGABRT):
            # The kernel's OOM killer, or an allocation that failed where nothing could catch it.
            return NEEDS_MORE_MEMORY
        return f"The analysis stopped unexpectedly (exit code {code})."

    def stop(self) -> None:
        self.conn.close()
        self.process.join(timeout=1)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        shutil.rmtree(self.directory, ignore_errors=True)


def _serve(conn, limits: Limits, directory: str) -> None:
    """The child: set its limits, then analyse the files it is sent, each on a DuckDB instance
    sealed to that file in a directory of its own under `directory`: up to FILES_PER_CHILD small
    files (starting a child costs about 20 ms of CPU, a fresh instance less than half of that),
    and nothing after a large file, a failure, or a peak of a quarter of its address space."""
    from . import ONE_THREAD_MAX_BYTES, Workspace, to_json, warm
    from .connection import _connect

    address_space = limits.memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
    # SIGXCPU at the soft limit ends the child (its default action); each file gets cpu_seconds
    # more than the child has used, and the hard limit is a backstop.
    cpu_hard = limits.cpu_seconds * FILES_PER_CHILD + 5
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, cpu_hard))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    con = warm.connection
    for n in range(FILES_PER_CHILD):
        place = Path(directory) / str(n)
        place.mkdir()
        with Workspace(limits, con=con, directory=place) as workspace:
            if n:
                conn.send(("ready",))
            try:
                path, fmt = conn.recv()
            except EOFError:  # never used: the worker stopped
                break
            _allow_cpu(limits.cpu_seconds, cpu_hard)
            more = False
            try:
                analysis = workspace.analyse(
                    path, fmt,
                    progress=lambda fraction, message: conn.send(("progress", fraction, message)),
                )
                # Only after a small file (its bytes as DuckDB read them, decompressed) and a
                # modest peak: a child that once held much memory leaves a clean address space
                # to its successor.
                more = (n + 1 < FILES_PER_CHILD and workspace.data_bytes <= ONE_THREAD_MAX_BYTES
                        and _address_space_peak() <= address_space // 4)
                conn.send(("done", to_json(analysis), more))
            except AnalysisFailed as failure:
                conn.send(("failed", failure.reason))
            except MemoryError:
                conn.send(("failed", NEEDS_MORE_MEMORY))
            except RuntimeError as exc:
                if "can't start new thread" not in str(exc):  # no address space left for its stack
                    raise
                conn.send(("failed", NEEDS_MORE_MEMORY))
            except Exception:
                logger.exception("analysis of %s failed unexpectedly", path)
                conn.send(("failed", "The analysis failed unexpectedly; the server's log "
                                     "says why."))
            if more:
                _allow_cpu(BETWEEN_FILES_CPU_SECONDS, cpu_hard)  # this file's allowance ends here
        if not more:
            break
        con = _connect()  # the next file's own instance, opened before that file arrives
    # Its work is sent and its directories removed: no interpreter teardown to wait on.
    os._exit(0)


def _allow_cpu(seconds: int, hard: int) -> None:
    """SIGXCPU once this process has used `seconds` more CPU time than now (whole seconds, as
    the limit counts), at most `hard`."""
    used = resource.getrusage(resource.RUSAGE_SELF)
    spent = int(used.ru_utime + used.ru_stime)
    resource.setrlimit(resource.RLIMIT_CPU, (min(spent + seconds, hard), hard))


def _address_space_peak() -> int:
    """This process's peak address space in bytes (VmPeak); its limit if unknown."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmPeak:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 62
