"""Shared test helpers: landing files and running a batch the way the sensor's runs do."""

import json
from pathlib import Path

import dagster as dg
import pandas as pd
import psycopg2

from memberflow_assets.definitions import defs
from memberflow_assets.membership.batches import SOURCE_FILE_TAG, batch_key
from memberflow_assets.zones import Zones

HEADER = "name,email,date_of_birth,mobile_no"


def land(zones: Zones, name: str, content: bytes | str) -> str:
    data = content.encode() if isinstance(content, str) else content
    relpath = f"landing/applications/{name}"
    zones.write_bytes(relpath, data)
    return relpath


def run_partition(
    instance: dg.DagsterInstance, job_name: str, key: str, tags: dict | None = None, run_config: dict | None = None
) -> dg.ExecuteInProcessResult:
    """Materialise one partition of a job (assets and their checks) the way a sensor-launched run does."""
    job = defs.resolve_job_def(job_name)
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
