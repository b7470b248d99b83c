"""The warehouse's one writer: whole versions with every view, readers never refused nor in the way,
and the DuckDB shell the project installs reading what it publishes."""

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time

import duckdb
import psycopg2
import pytest

from memberflow_assets import cli
from memberflow_assets.images.processing import bi
from memberflow_assets.settings import REPO_ROOT, Settings
from memberflow_assets.warehouse import versions
from memberflow_assets.warehouse.refresh import refresh_warehouse
from memberflow_assets_tests.helpers import deployment_defs
from memberflow_assets_tests.warehouse.readers import DUCKDB_SHELL, holding_reader, holding_shell, opening_readers
from memberflow_assets_tests.warehouse_data import KNOWN, build_known_warehouse

SALES_VIEWS = {
    "top_members_by_spending", "top_items_by_purchases", "sales_per_day", "transaction_weights",
    "membership_applications_by_outcome",
}  # fmt: skip
EVERY_VIEW = SALES_VIEWS | set(bi.IMAGE_VIEWS)
TOP_MEMBER = "SELECT first_name || ' ' || last_name, total_spent::varchar FROM bi.top_members_by_spending LIMIT 1"


@pytest.fixture
def warehouse(memberflow_env, pg_dsn, zones) -> str:
    path = Settings.from_env().warehouse
    build_known_warehouse(pg_dsn, zones, path)
    return path


def published_state(path: str, zones) -> tuple[set[str], int, tuple]:
    """(views in schema bi, images in bi.image_metadata, the top member) of the published version."""
    with versions.open_published(path, zones) as connection:
        views = {name for (name,) in connection.execute(
            "SELECT view_name FROM duckdb_views() WHERE schema_name = 'bi'").fetchall()}  # fmt: skip
        images = connection.execute("SELECT count(*) FROM bi.image_metadata").fetchone()[0]
        return views, images, connection.execute(TOP_MEMBER).fetchone()


def version_digests(path: str) -> dict[str, str]:
    """SHA-256 of every version file on disk."""
    folder = versions.versions_folder(path)
    return {entry.name: hashlib.sha256(open(entry.path, "rb").read()).hexdigest() for entry in os.scandir(folder)}


def shell(sql: str, path: str) -> subprocess.CompletedProcess:
    """The DuckDB shell, read-only, in CSV mode, answering `sql`."""
    return subprocess.run([DUCKDB_SHELL, "-readonly", "-csv", "-noheader", path], input=sql,
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def test_no_refresh_of_any_kind_loses_a_view_while_readers_hold_the_warehouse_open(warehouse, zones, instance):
    """Reproduced on main: a full refresh (CLI or Dagster) dropped every image view, and incremental
    refreshes kept the loss. Here every kind runs with a notebook-like reader and the DuckDB shell holding
    the warehouse open the whole time."""
    expected = (EVERY_VIEW, KNOWN["images"], KNOWN["top_member"])
    assert published_state(warehouse, zones) == expected
    job = deployment_defs().resolve_job_def("sales_warehouse_refresh")
    full = {"ops": {"sales_warehouse": {"config": {"full_refresh": True}}}}
    refreshes = {
        "memberflow warehouse refresh --full": lambda: cli.main(["warehouse", "refresh", "--full"]) == 0,
        "memberflow warehouse refresh": lambda: cli.main(["warehouse", "refresh"]) == 0,
        "Dagster run, full_refresh: true": lambda: job.execute_in_process(instance=instance, run_config=full).success,
        "Dagster run, incremental": lambda: job.execute_in_process(instance=instance).success,
        # (image_bi_views, materialised by its automation, publishes through the same republish_views)
        "memberflow images-bi": lambda: cli.main(["images-bi"]) == 0,
    }
    with holding_reader(warehouse) as reader, holding_shell(warehouse):
        seen_by_reader = reader.ask("SELECT count(*), max(refreshed_at) FROM meta.refreshes")
        for name, refresh in refreshes.items():
            digests = version_digests(warehouse)
            assert refresh(), name
            assert published_state(warehouse, zones) == expected, name
            assert versions.published_views(warehouse) == {
                domain: versions.views_version(zones, domain) for domain in ("sales", "images")
            }, name
            after = version_digests(warehouse)
            assert {key: after[key] for key in digests} == digests, f"{name} changed a published version"
            assert len(after) == len(digests) + 1, name
            # the shell opens every version as it is published
            answer = shell(f"{TOP_MEMBER}; SELECT count(*) FROM bi.images_per_hour;", warehouse)
            assert answer.returncode == 0 and answer.stdout.splitlines()[0] == "Grace Hopper,109.99", answer.stderr
        assert reader.ask("SELECT count(*), max(refreshed_at) FROM meta.refreshes") == seen_by_reader  # undisturbed
        assert reader.ask("SELECT count(*) FROM bi.image_metadata") == [[KNOWN["images"]]]


def test_publishing_the_image_views_with_a_reader_holding_the_warehouse_open(warehouse, zones):
    """Reproduced on main: `memberflow images-bi` wrote the published file in place and failed after a 63 s
    wait whenever an analyst had it open read-only."""
    with holding_reader(warehouse) as reader:
        started = time.monotonic()
        assert cli.main(["images-bi"]) == 0
        assert time.monotonic() - started < 30  # no lock to wait for (main waited 63 s, then failed)
        assert reader.ask("SELECT count(*) FROM bi.images_per_hour") == [[2]]  # two hours, one source each
    assert published_state(warehouse, zones)[0] == EVERY_VIEW


def test_new_readers_are_never_refused_while_versions_are_published(warehouse, zones, pg_dsn, tmp_path):
    """Reproduced on main: while images-bi wrote, 46 of 425 new read-only connections were refused."""
    with (
        holding_reader(warehouse),
        opening_readers(
            warehouse, tmp_path / "stop", "SELECT count(*) FROM bi.image_metadata, bi.top_members_by_spending"
        ) as counts,
    ):
        for number in range(6):
            if number % 2:
                refresh_warehouse(pg_dsn, warehouse, zones, full=number == 3)
            else:
                versions.republish_views(warehouse, zones)
    assert counts["refused"] == [] and counts["opened"] >= 6


def test_two_writers_at_once_publish_one_after_the_other(warehouse, zones, pg_dsn):
    errors = []

    def write(action) -> None:
        try:
            action()
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    before = len(os.listdir(versions.versions_folder(warehouse)))
    writers = [
        threading.Thread(target=write, args=(lambda: refresh_warehouse(pg_dsn, warehouse, zones, full=True),)),
        threading.Thread(target=write, args=(lambda: versions.republish_views(warehouse, zones),)),
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120)
    assert errors == []
    assert len(os.listdir(versions.versions_folder(warehouse))) == before + 2
    assert published_state(warehouse, zones) == (EVERY_VIEW, KNOWN["images"], KNOWN["top_member"])


def test_a_failed_build_publishes_nothing_and_a_dead_writers_draft_is_cleaned_up(warehouse, zones):
    current = versions.current_version(warehouse)
    folder = os.path.dirname(warehouse)
    with pytest.raises(psycopg2.OperationalError):
        refresh_warehouse("postgresql://nobody@127.0.0.1:1/none", warehouse, zones)
    with pytest.raises(RuntimeError, match="broken build"), versions.draft_version(warehouse, zones) as draft:
        draft.connection.execute("DELETE FROM fact_sales")
        raise RuntimeError("broken build")
    assert versions.current_version(warehouse) == current
    assert published_state(warehouse, zones)[2] == KNOWN["top_member"]
    # a writer killed mid-build leaves its draft (and link) behind; the next writer removes them
    leftovers = [os.path.join(folder, f".warehouse.duckdb.{'ab' * 16}.tmp"),
                 os.path.join(folder, f".warehouse.duckdb.{'cd' * 16}.link")]  # fmt: skip
    for leftover in leftovers:
        open(leftover, "wb").close()
    open(os.path.join(versions.versions_folder(warehouse), "someone's backup.duckdb"), "wb").close()
    versions.republish_views(warehouse, zones)
    assert [name for name in os.listdir(folder) if name.endswith((".tmp", ".wal", ".link"))] == []
    assert "someone's backup.duckdb" in os.listdir(versions.versions_folder(warehouse))  # not ours: left alone


def test_a_warehouse_from_an_older_release_is_rebuilt_in_the_shells_format(memberflow_env, pg_dsn, zones):
    """An older release wrote the warehouse as a plain file in DuckDB 2's own format, which the shell refuses."""
    path = Settings.from_env().warehouse
    with duckdb.connect(path) as old:
        old.execute("CREATE TABLE fact_sales (transaction_id BIGINT)")
    assert "version number" in shell("SELECT 1;", path).stderr
    build_known_warehouse(pg_dsn, zones, path)  # a full refresh
    assert refresh_warehouse(pg_dsn, path, zones).mode == "incremental"
    assert shell(TOP_MEMBER + ";", path).stdout == "Grace Hopper,109.99\n"
    assert os.path.islink(path)


def test_the_readme_duckdb_line_works_as_written_also_while_a_refresh_builds(warehouse, zones, memberflow_env):
    [line] = [line.split("#")[0].strip() for line in (REPO_ROOT / "README.md").read_text().splitlines()
              if "duckdb -readonly" in line]  # fmt: skip
    assert line == ".venv/bin/duckdb -readonly data/warehouse.duckdb"
    here = memberflow_env.parent  # as if this were the repository: ./data and ./.venv
    os.symlink(os.path.dirname(os.path.dirname(DUCKDB_SHELL)), here / ".venv")
    analyst_session = (
        ".mode csv\n.headers off\n"
        f"{TOP_MEMBER};\n"
        "SELECT rejection_reason, applications FROM bi.membership_applications_by_outcome "
        "WHERE outcome = 'unsuccessful' LIMIT 1;\n"
        "SELECT sum(images), sum(rejected) FROM bi.images_per_hour;\n"
        "SELECT count(*) FROM fact_sales;\n"
        "CREATE TABLE mine AS SELECT 1;\n"
    )

    def readme_line() -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-c", line], cwd=here, input=analyst_session, capture_output=True, text=True,
                              timeout=60)  # fmt: skip

    published = readme_line()
    assert published.stdout.splitlines() == [
        "Grace Hopper,109.99", "invalid_email,4", f"{KNOWN['images']},{KNOWN['images_rejected']}", "17",
    ], published.stderr  # fmt: skip
    assert "read-only" in published.stderr  # the CREATE TABLE: nothing can be written
    with versions.draft_version(warehouse, zones) as draft:  # a refresh building the next version
        draft.connection.execute("DELETE FROM fact_sales; DELETE FROM fact_transactions")
        during = readme_line()
        assert during.stdout == published.stdout  # readers keep working on the published version
    assert readme_line().stdout.splitlines() == published.stdout.splitlines()[1:3] + ["0"]  # no sales any more


def as_analyst(command: list[str], cwd: str) -> subprocess.CompletedProcess:
    """`command` as a person who is not the warehouse's writer: as `nobody` when the tests run as root
    (root opens any file for writing, whatever its mode), else as this user (the files' owner)."""
    if os.geteuid() == 0:
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60, env={**os.environ, "HOME": cwd})


@pytest.fixture
def shared_folder() -> str:
    """A folder every user of the machine can read, as the warehouse folder analysts use."""
    folder = tempfile.mkdtemp(prefix="memberflow-shared-")
    os.chmod(folder, 0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_a_published_version_cannot_be_opened_for_writing_and_a_changed_one_is_not_carried_forward(
    memberflow_env, pg_dsn, zones, shared_folder
):
    """Reproduced: versions were written 0644, so `.venv/bin/duckdb data/warehouse.duckdb` (no -readonly) gave
    an analyst a read-write session that locked every other reader out, and what they changed in the
    published file the next incremental refresh copied forward."""
    path = os.path.join(shared_folder, "warehouse.duckdb")
    version = build_known_warehouse(pg_dsn, zones, path)
    assert stat.S_IMODE(os.stat(version).st_mode) == 0o444
    with versions.open_published(path) as connection:
        [(facts,)] = connection.execute("SELECT count(*) FROM fact_sales").fetchall()
    opened = as_analyst(
        [sys.executable, "-c", f"import duckdb; duckdb.connect({path!r}).execute('SELECT 1')"], shared_folder
    )
    assert opened.returncode != 0 and "Permission denied" in opened.stderr
    cli = as_analyst([DUCKDB_SHELL, "-csv", "-noheader", path, "-c", "SELECT count(*) FROM fact_sales"], shared_folder)
    assert cli.returncode != 0 and cli.stdout == ""
    cli = as_analyst([DUCKDB_SHELL, "-readonly", "-csv", "-noheader", path, "-c", "SELECT count(*) FROM fact_sales"],
                     shared_folder)  # fmt: skip
    assert cli.stdout == f"{facts}\n", cli.stderr

    with duckdb.connect(version) as root:  # what no mode stops: root (or an owner who chmods) writes it
        root.execute("CREATE TABLE pwned AS SELECT 1 AS x; DELETE FROM fact_sales; CHECKPOINT")
    rebuilt = refresh_warehouse(pg_dsn, path, zones)
    assert rebuilt.mode == "full" and rebuilt.fact_rows == facts
    with versions.open_published(path) as connection:
        assert connection.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'pwned'").fetchone() == (0,)
    again = refresh_warehouse(pg_dsn, path, zones)  # its own copy of a read-only version is writable
    assert again.mode == "incremental" and again.fact_rows == facts
    assert stat.S_IMODE(os.stat(again.path).st_mode) == 0o444
