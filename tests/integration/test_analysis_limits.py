"""Analysis that cannot run away: each file in a child process within memory and CPU limits,
caps on what a file expands to, attempts counted in PostgreSQL, DuckDB limited to the one file,
and every demo dataset analysed. Real children, real DuckDB, real PostgreSQL (and a real worker
for the upload's path); nothing is mocked."""
import gzip
import json
import os
from pathlib import Path
import random
import signal
import subprocess
import sys
import time

from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.db import connection
import duckdb
import pytest

from marketplace.accounts.services import wallet_user
from marketplace.catalog import services
from marketplace.catalog.analysis import AnalysisFailed, Limits, Workspace
from marketplace.catalog.analysis.caps import MAX_COLUMNS, MAX_EXPANSION, MAX_JSON_DEPTH
from marketplace.catalog.analysis.sandbox import analyse_in_child
from marketplace.catalog.demo_data import demo_csv, load
from marketplace.catalog.models import Dataset, DatasetVersion
from tests.conftest import ROOT, database_url, wait_until
from tests.integration.test_publish import TOKEN, create, upload

ADDRESS = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


def stored_version(path_in_storage: str, content: bytes, fmt: str = "csv") -> DatasetVersion:
    """A version whose file is `content`, stored privately under `path_in_storage`."""
    owner = wallet_user(ADDRESS)
    dataset = Dataset.objects.create(owner=owner, slug=f"d-{random.randrange(10**9)}", title="Limits",
                                     license="CC-BY-4.0", payout_address=ADDRESS)
    name = storages["private"].save(path_in_storage, ContentFile(content))
    return DatasetVersion.objects.create(
        dataset=dataset, number=1, file=name, original_name=Path(name).name, format=fmt,
        size=len(content), content_hash="0x" + "ab" * 32, price=1, token=TOKEN)


def analysed(version: DatasetVersion) -> DatasetVersion:
    services.analyse_version(version.pk)
    version.refresh_from_db()
    return version


def unique_text_csv(rows: int) -> bytes:
    """Rows of long distinct text: holding them takes far more memory than a tiny limit."""
    return b"id,text\n" + b"".join(b"%d,%s\n" % (i, os.urandom(200).hex().encode()) for i in range(rows))


def wide_csv(columns: int, rows: int) -> bytes:
    header = ",".join(f"c{i}" for i in range(columns))
    lines = [",".join(f"{random.random():.6f}" for _ in range(columns)) for _ in range(rows)]
    return ("\n".join([header, *lines]) + "\n").encode()


# --- limits of the child process -----------------------------------------------------------------


@pytest.mark.django_db
def test_a_file_that_needs_more_memory_than_allowed_fails_with_the_memory_reason(settings):
    settings.ANALYSIS_MEMORY_LIMIT_MB = 500  # DuckDB gets 250 MB; the text alone is 40 MB on disk
    version = analysed(stored_version("limits/memory.csv", unique_text_csv(100_000)))

    assert version.analysis_status == "failed"
    assert version.analysis_message == "The file needs more memory to analyse than the server allows."


@pytest.mark.django_db
def test_the_same_file_analyses_within_the_default_memory_limit():
    version = analysed(stored_version("limits/memory.csv", unique_text_csv(100_000)))

    assert version.analysis_status == "done", version.analysis_message
    assert version.row_count == 100_000


@pytest.mark.django_db
def test_a_file_that_needs_more_cpu_time_than_allowed_fails_with_the_cpu_reason(settings):
    settings.ANALYSIS_CPU_SECONDS = 1
    started = time.monotonic()
    version = analysed(stored_version("limits/cpu.csv", wide_csv(3_000, 400)))

    assert version.analysis_status == "failed"
    assert version.analysis_message == (
        "The analysis took more than 1 s of CPU time, the most the server allows.")
    assert time.monotonic() - started < 30, "the child is stopped by its limit, not waited for"


def test_progress_comes_back_from_the_child(tmp_path):
    calls = []
    result = analyse_in_child(_small_csv(tmp_path), "csv", limits=Limits(),
                              progress=lambda fraction, message: calls.append((fraction, message)))

    assert result["row_count"] == 3
    assert calls[0] == (0.0, "reading") and calls[-1] == (1.0, "done")
    assert [f for f, _ in calls] == sorted(f for f, _ in calls)


def test_a_child_killed_from_outside_is_a_failure_not_a_hung_worker(tmp_path):
    """The kernel's OOM killer sends SIGKILL: the parent reads end-of-file and says why."""
    path = tmp_path / "big.csv"
    path.write_bytes(unique_text_csv(300_000))
    seen = []

    def kill_on_first_progress(fraction, message):
        if not seen:
            seen.append(message)
            for pid in _children():
                os.kill(pid, signal.SIGKILL)

    with pytest.raises(AnalysisFailed) as failed:
        analyse_in_child(path, "csv", limits=Limits(), progress=kill_on_first_progress)
    assert failed.value.reason == "The file needs more memory to analyse than the server allows."
    assert seen
    # The thread's next child is ready and works.
    assert analyse_in_child(_small_csv(tmp_path), "csv", limits=Limits())["row_count"] == 3


def test_a_child_its_limit_kills_leaves_no_copy_of_the_file_behind(tmp_path, monkeypatch):
    """The decompressed copy and DuckDB's spill files live in the child's directory, which the
    parent removes: a child killed for its CPU time cleans up nothing itself."""
    import tempfile

    workspaces = tmp_path / "tmp"
    workspaces.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(workspaces))  # where the next children work
    path = tmp_path / "private.csv.gz"
    path.write_bytes(gzip.compress(wide_csv(3_000, 400)))  # the child writes its decompressed copy
    with pytest.raises(AnalysisFailed, match="CPU time"):
        # Other limits than the thread's ready child has: a new child, working in `workspaces`.
        analyse_in_child(path, "csv", limits=Limits(cpu_seconds=1))

    assert any(workspaces.glob("analysis-*")), "the killed child worked here"
    assert wait_until(lambda: not list(workspaces.glob("analysis-*/data.*")), timeout=10), (
        list(workspaces.rglob("*")))


def test_a_child_that_does_not_answer_within_its_wall_time_is_killed(tmp_path):
    """A child stopped (as one blocked on a dead network disk would be) uses no CPU time: the
    wall-time limit ends it."""
    seen = []

    def stop_the_child(fraction, message):
        if not seen:
            seen.extend(_children())
            for pid in seen:
                os.kill(pid, signal.SIGSTOP)

    started = time.monotonic()
    with pytest.raises(AnalysisFailed) as failed:
        analyse_in_child(_small_csv(tmp_path), "csv", limits=Limits(wall_seconds=2), progress=stop_the_child)
    assert failed.value.reason == "The analysis took more than 2 s, the most the server allows."
    assert 2 <= time.monotonic() - started < 10
    assert seen
    assert analyse_in_child(_small_csv(tmp_path), "csv", limits=Limits())["row_count"] == 3


def test_a_child_takes_several_small_files_and_a_failure_ends_it(tmp_path):
    """Starting a child costs more CPU than a small file's analysis: one child analyses small files
    in turn, each on a DuckDB instance of its own (each file's figures are its own), until one
    fails."""
    from marketplace.catalog.analysis import sandbox

    limits = Limits(cpu_seconds=599)  # limits of their own: children of this test only
    servers, rows = [], []
    for n in range(1, 4):
        path = tmp_path / f"small{n}.csv"
        path.write_bytes(b"a,b\n" + b"".join(b"%d,x\n" % i for i in range(n)))
        rows.append(analyse_in_child(path, "csv", limits=limits)["row_count"])
        servers.append(sandbox._ready.child.result().process.pid)
    assert rows == [1, 2, 3]
    assert len(set(servers)) == 1, "the same child took the next files"
    broken = tmp_path / "broken.csv"
    broken.write_bytes(b"\xff\xfe\x00junk" * 100)
    with pytest.raises(AnalysisFailed):
        analyse_in_child(broken, "csv", limits=limits)
    assert wait_until(lambda: sandbox._ready.child.done())
    assert sandbox._ready.child.result().process.pid != servers[0], "a failure ends the child"
    assert analyse_in_child(_small_csv(tmp_path), "csv", limits=limits)["row_count"] == 3


def test_a_file_large_once_decompressed_ends_its_child(tmp_path):
    """A gzip file small on disk but over the small-file size once decompressed is a large file:
    its child takes no further file."""
    from marketplace.catalog.analysis import ONE_THREAD_MAX_BYTES, sandbox

    limits = Limits(cpu_seconds=598)  # children of this test only
    analyse_in_child(_small_csv(tmp_path), "csv", limits=limits)
    server = sandbox._ready.child.result().process.pid  # the child that takes the next file
    rows = ONE_THREAD_MAX_BYTES // 10  # about 17 bytes a line: over 6 MB decompressed
    packed = tmp_path / "packed.csv"
    packed.write_bytes(gzip.compress(b"n,label\n" + b"".join(b"%d,same text\n" % i for i in range(rows))))
    assert packed.stat().st_size < ONE_THREAD_MAX_BYTES
    assert analyse_in_child(packed, "csv", limits=limits)["row_count"] == rows
    assert wait_until(lambda: sandbox._ready.child.done())
    assert sandbox._ready.child.result().process.pid != server


def _children() -> list[int]:
    """This process's analysis children (the fork server's children)."""
    import multiprocessing

    return [child.pid for child in multiprocessing.active_children()]


def _small_csv(tmp_path) -> Path:
    path = tmp_path / "small.csv"
    path.write_bytes(b"a,b\n1,x\n2,y\n3,z\n")
    return path


# --- caps ----------------------------------------------------------------------------------------


def test_a_gzip_bomb_fails_over_twenty_times_its_size(tmp_path):
    path = tmp_path / "bomb.csv"
    path.write_bytes(gzip.compress(b"a,b\n" + b"1,1\n" * 5_000_000))  # 20 MB from about 20 KB
    assert path.stat().st_size * MAX_EXPANSION < 20_000_000

    with pytest.raises(AnalysisFailed) as failed:
        analyse_in_child(path, "csv", limits=Limits())
    assert failed.value.reason == (
        "The file expands to more than 20 times its size when decompressed; upload it uncompressed.")


def test_a_gzip_csv_within_the_cap_is_analysed(tmp_path):
    rows = b"".join(b"%d,%s\n" % (i, os.urandom(8).hex().encode()) for i in range(5_000))
    path = tmp_path / "fine.csv"
    path.write_bytes(gzip.compress(b"id,code\n" + rows))

    result = analyse_in_child(path, "csv", limits=Limits())
    assert result["row_count"] == 5_000
    assert [c["name"] for c in result["columns"]] == ["id", "code"]


def test_a_parquet_file_whose_pages_expand_over_twenty_times_fails(tmp_path):
    path = tmp_path / "bomb.parquet"
    duckdb.connect().execute(
        f"COPY (SELECT repeat(i::VARCHAR || 'x', 500) AS t FROM range(20000) r(i)) TO '{path}' "
        "(FORMAT parquet, COMPRESSION zstd)")  # 55 MB of distinct text in 90 KB

    with pytest.raises(AnalysisFailed) as failed:
        analyse_in_child(path, "parquet", limits=Limits())
    assert "more than 20 times its size" in failed.value.reason


def test_more_than_ten_thousand_columns_fail(tmp_path):
    path = tmp_path / "wide.csv"
    path.write_bytes(wide_csv(MAX_COLUMNS + 1, 2))

    with pytest.raises(AnalysisFailed) as failed:
        analyse_in_child(path, "csv", limits=Limits())
    assert failed.value.reason == "The file has 10,001 columns; at most 10,000 can be analysed."


def nested(depth: int) -> dict:
    """A line's object nesting `depth` objects and arrays, itself included."""
    value = 1
    for level in range(depth - 1):
        value = {"a": value} if level % 2 else [value]
    return {"x": value}


def test_json_nested_thirty_three_deep_fails(tmp_path):
    path = tmp_path / "deep.jsonl"
    path.write_text(json.dumps(nested(MAX_JSON_DEPTH + 1)) + "\n" + json.dumps({"x": None}) + "\n")

    with pytest.raises(AnalysisFailed) as failed:
        analyse_in_child(path, "jsonl", limits=Limits())
    assert failed.value.reason == "The file nests objects or arrays more than 32 levels deep."


def test_json_nested_thirty_two_deep_is_analysed(tmp_path):
    path = tmp_path / "deep.jsonl"
    path.write_text(json.dumps(nested(MAX_JSON_DEPTH)) + "\n")

    assert analyse_in_child(path, "jsonl", limits=Limits())["row_count"] == 1


def test_a_large_json_lines_file_is_read_in_place(tmp_path, monkeypatch):
    """Above LOAD_MAX_BYTES the file is a view read once a pass (forced small here), and every
    figure still comes out; a line DuckDB cannot read is still found and counted."""
    from marketplace.catalog.analysis import jsonl

    monkeypatch.setattr(jsonl, "LOAD_MAX_BYTES", 1_000)
    path = tmp_path / "big.jsonl"
    lines = [json.dumps({"id": i, "city": ["Paris", "Lyon"][i % 2]}) for i in range(3_000)]
    path.write_text("\n".join(lines[:1_500] + ["{not json"] + lines[1_500:]) + "\n")
    with Workspace(Limits()) as workspace:
        result = workspace.analyse(path, "jsonl")
    assert result.row_count == 3_000 and result.rejected_rows == 1
    city = next(c for c in result.columns if c.name == "city")
    assert {v["value"]: v["count"] for v in city.top_values} == {"Paris": 1_500, "Lyon": 1_500}


def test_a_nested_sample_cell_is_cut_to_a_thousand_characters(tmp_path):
    path = tmp_path / "nested.jsonl"
    path.write_text(json.dumps({"id": 1, "tags": [f"tag-{i}" for i in range(1_000)],
                                "small": {"a": [1, 2]}}) + "\n")

    row = analyse_in_child(path, "jsonl", limits=Limits())["sample"][0]
    assert isinstance(row["tags"], str) and len(row["tags"]) == 1_000
    assert row["tags"].startswith('["tag-0", "tag-1"') and row["tags"].endswith("\u2026")
    assert row["small"] == {"a": [1, 2]}  # a nested value that fits stays a value


# --- attempts and local copies ---------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_file_that_kills_its_worker_three_times_is_not_tried_a_fourth_time(tmp_path):
    """Each attempt is committed before it starts: a worker killed mid-analysis (SIGKILL, as the
    OOM killer would) three times leaves attempts at 3, and the next delivery marks it failed
    without starting a child."""
    version = stored_version("limits/killer.csv", unique_text_csv(100_000))
    env = {**os.environ, "DATABASE_URL": database_url(connection.settings_dict)}
    run = ("import django; django.setup(); from marketplace.catalog import services; "
           f"services.analyse_version({version.pk})")
    for attempt in range(1, 4):
        worker = subprocess.Popen([sys.executable, "-c", run], cwd=ROOT, env=env, start_new_session=True)
        try:
            assert wait_until(lambda: DatasetVersion.objects.filter(
                pk=version.pk, analysis_attempts=attempt, analysis_status="running").exists(),
                timeout=60, interval=0.01)
        finally:
            os.killpg(worker.pid, signal.SIGKILL)  # the worker and its analysis child
            worker.wait()
        assert DatasetVersion.objects.get(pk=version.pk).analysis_status == "running"

    version = analysed(version)
    assert version.analysis_attempts == 3
    assert version.analysis_status == "failed" and version.analysis_progress == 1.0
    assert version.analysis_message.startswith("The analysis stopped 3 times without finishing")
    services.analyse_version(version.pk)  # a late redelivery changes nothing
    assert DatasetVersion.objects.get(pk=version.pk).analysis_attempts == 3


@pytest.mark.django_db
def test_each_attempt_is_counted(settings):
    version = analysed(stored_version("limits/ok.csv", b"a,b\n1,2\n"))
    assert version.analysis_status == "done" and version.analysis_attempts == 1


@pytest.fixture
def remote_storage(settings, tmp_path):
    """A private storage whose files are not on the local disk (Django's in-memory storage, as
    S3's are not): the analysis works on a local copy."""
    settings.STORAGES = {**settings.STORAGES,
                         "private": {"BACKEND": "django.core.files.storage.InMemoryStorage"}}
    settings.UPLOAD_TMP_DIR = tmp_path / "uploads"
    settings.UPLOAD_TMP_DIR.mkdir()
    return settings.UPLOAD_TMP_DIR


@pytest.mark.django_db
@pytest.mark.parametrize("content, status", [(b"a,b\n1,2\n3,4\n", "done"), (b"a,b\n" + b"\xff\xfe,1\n" * 50, "failed")])
def test_the_local_copy_of_a_remote_file_is_removed(remote_storage, content, status):
    version = stored_version("limits/remote.csv", content)
    assert not Path(storages["private"].path(version.file)).exists()

    version = analysed(version)
    assert version.analysis_status == status, version.analysis_message
    assert list(remote_storage.iterdir()) == []


# --- DuckDB sandbox ----------------------------------------------------------------------------


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_file_named_with_brackets_stars_and_question_marks_is_analysed_by_the_worker(
        client, celery_worker):
    """The stored name keeps them; DuckDB reads the file as data.csv, so none is a glob."""
    client.force_login(wallet_user(ADDRESS))
    slug = create(client).json()["slug"]
    response = upload(client, slug, b"city,n\nParis,1\nLyon,2\n", filename="cities[2024]*?.csv")
    assert response.status_code == 201, response.json()
    version = DatasetVersion.objects.get(dataset__slug=slug)
    assert version.file.endswith("cities[2024]*?.csv")

    # Ended (done or failed): the progress reaches 1.0 a moment before the status is written.
    assert wait_until(lambda: DatasetVersion.objects.get(pk=version.pk).analysis_status in ("done", "failed"),
                      timeout=60), celery_worker.output()
    version.refresh_from_db()
    assert version.analysis_status == "done", version.analysis_message
    assert version.analysis_progress == 1.0
    assert version.row_count == 2 and version.analysis_attempts == 1


def test_the_connection_reads_only_its_file(tmp_path):
    path = tmp_path / "x'); SELECT * FROM read_csv('etc-passwd.csv"  # a name that tries SQL
    path.write_bytes(b"a,note\n1,read_csv('/etc/passwd')\n")
    other = tmp_path / "other.csv"
    other.write_bytes(b"secret\n42\n")
    with Workspace(Limits()) as workspace:
        result = workspace.analyse(path, "csv")
        assert result.row_count == 1 and result.sample[0]["note"] == "read_csv('/etc/passwd')"
        for query in (
            "SELECT * FROM read_csv('/etc/passwd')",
            f"SELECT * FROM read_csv('{other}')",
            "SELECT * FROM read_text('/etc/hostname')",
            f"COPY (SELECT 1) TO '{tmp_path / 'out.csv'}'",
            "INSTALL httpfs",
        ):
            with pytest.raises(duckdb.PermissionException):
                workspace.con.execute(query)
        for setting in ("enable_external_access = true", "allowed_directories = ['/']",
                        "autoload_known_extensions = true"):
            with pytest.raises(duckdb.InvalidInputException, match="configuration has been locked"):
                workspace.con.execute(f"SET {setting}")
    assert not Path(workspace.dir).exists()


# --- the demo catalog ----------------------------------------------------------------------------


@pytest.mark.parametrize("package, item, rows, columns", [
    ("ISLR", "NCI60", 64, 6_832),
    ("plyr", "ozone", 24, 1_729),
    ("modeldata", "permeability_qsar", 165, 1_109),
    ("mosaicData", "HELPfull", 1_472, 789),
    ("modeldata", "pd_speech", 252, 753),
    ("dslabs", "trump_tweets", 20_761, 9),
])
def test_the_demo_datasets_that_failed_are_analysed(tmp_path, package, item, rows, columns):
    frame, _ = load(package, item)
    path = tmp_path / f"{item}.csv"
    path.write_bytes(demo_csv(frame))

    result = analyse_in_child(path, "csv", limits=Limits())
    assert (result["row_count"], len(result["columns"])) == (rows, columns)
    assert result["rejected_rows"] == 0 and len(result["sample"]) == min(rows, 20)
