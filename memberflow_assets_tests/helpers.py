"""Shared test helpers: landing files and running a batch the way the sensor's runs do; waiting for a
condition; a stand-in for `memberflow start`; stop signals the tests' processes obey."""

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import psycopg2

from memberflow_assets.definitions import build_defs
from memberflow_assets.membership.layout import SOURCE_FILE_TAG, batch_key
from memberflow_assets.settings import Settings
from memberflow_assets.zones import Zones

HEADER = "name,email,date_of_birth,mobile_no"


def land(zones: Zones, name: str, content: bytes | str) -> str:
    data = content.encode() if isinstance(content, str) else content
    relpath = f"landing/applications/{name}"
    zones.write_bytes(relpath, data)
    return relpath


def deployment_defs() -> dg.Definitions:
    """The code location as Dagster loads it in the test's environment (memberflow_env and the like)."""
    return build_defs(Settings.from_env())


def run_partition(
    instance: dg.DagsterInstance, job_name: str, key: str, tags: dict | None = None, run_config: dict | None = None
) -> dg.ExecuteInProcessResult:
    """Materialise one partition of a job (assets and their checks) the way a sensor-launched run does."""
    job = deployment_defs().resolve_job_def(job_name)
    partitions_name = job.partitions_def.name
    if not instance.has_dynamic_partition(partitions_name, key):
        instance.add_dynamic_partitions(partitions_name, [key])
    return job.execute_in_process(
        instance=instance, partition_key=key, tags=tags, run_config=run_config, raise_on_error=False
    )


def run_batch(instance: dg.DagsterInstance, key: str, tags: dict | None = None) -> dg.ExecuteInProcessResult:
    """One membership batch (a landed applications file)."""
    return run_partition(instance, "membership_batch", key, tags=tags)


def run_file(instance: dg.DagsterInstance, name: str) -> dg.ExecuteInProcessResult:
    """The batch of one landed file, tagged with its name as the landing sensor tags it."""
    return run_batch(instance, batch_key(name), tags={SOURCE_FILE_TAG: name})


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {evaluation.check_name: evaluation.passed for evaluation in result.get_asset_check_evaluations()}


def checks_failing_with_error(result: dg.ExecuteInProcessResult) -> list[str]:
    """The checks that failed with severity ERROR (a WARN check, such as membership ID collisions, warns)."""
    return [
        evaluation.check_name
        for evaluation in result.get_asset_check_evaluations()
        if not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    ]


def materialized_metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    for event in result.get_asset_materialization_events():
        materialization = event.materialization
        if materialization.asset_key == dg.AssetKey(asset):
            return {key: value.value for key, value in materialization.metadata.items()}
    raise AssertionError(f"{asset} was not materialised")


def fetch_all(dsn: str, query: str) -> list[tuple]:
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute(query)
        rows = cursor.fetchall()
    connection.close()
    return rows


def members_rows(dsn: str) -> list[tuple]:
    return fetch_all(
        dsn,
        "SELECT membership_id, first_name, last_name, email, date_of_birth::text, mobile_no, source_batch "
        "FROM sales.members ORDER BY membership_id",
    )


def read_output(zones: Zones, kind: str, batch: str) -> pd.DataFrame:
    return zones.read_parquet(f"members/{kind}/{batch}.parquet").to_pandas()


def read_reason(data_dir: Path, name: str) -> dict:
    return json.loads((data_dir / "quarantine" / "applications" / f"{name}.reason.txt").read_text())


def wait_until(condition, timeout: float = 120, what: str = "the condition", every: float = 0.1):
    """Poll `condition` until it returns something true (returned), for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)
    return value


BESIDE_DAGSTER = """
import os, time
from {module} import start_beside_dagster
start_beside_dagster({{}})
os.write({ready_fd}, b"started")
time.sleep(600)  # stands in for `dagster dev`
"""


def start_beside_dagster(module: str, timeout: float = 120) -> subprocess.Popen:
    """A process doing what `memberflow start` does with `module.start_beside_dagster` before it becomes
    `dagster dev`, then sleeping in its place; returned once start_beside_dagster has returned (told on a
    pipe of its own, which the processes it starts do not inherit)."""
    ready, ready_writer = os.pipe()
    try:
        process = subprocess.Popen(
            [sys.executable, "-c", BESIDE_DAGSTER.format(module=module, ready_fd=ready_writer)],
            pass_fds=[ready_writer],
            stderr=subprocess.DEVNULL,
        )
        os.close(ready_writer)
        if not select.select([ready], [], [], timeout)[0] or os.read(ready, 16) != b"started":
            process.kill()
            process.wait()
            raise AssertionError(f"{module}.start_beside_dagster did not return within {timeout:g} s")
    finally:
        os.close(ready)
    return process


def children_of(pid: int) -> list[int]:
    """The ids of the processes whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def restore_stop_signals() -> None:
    """Let SIGINT and SIGTERM act again in a test process started with them ignored (a background job of a
    non-interactive shell starts with SIGINT ignored). Otherwise every process the tests start ignores
    SIGTERM and cannot be stopped: Dagster gives SIGTERM SIGINT's disposition after each in-process run,
    and an ignored signal stays ignored in the processes started after."""
    for signum, handler in ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, signal.SIG_DFL)):
        if signal.getsignal(signum) == signal.SIG_IGN:
            signal.signal(signum, handler)
