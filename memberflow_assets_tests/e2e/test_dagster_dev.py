"""End to end: a real `dagster dev` (webserver + daemon) on PostgreSQL storage picks up dropped files."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from memberflow_assets.cli.platform import prepare_environment
from memberflow_assets.settings import REPO_ROOT, Settings
from memberflow_assets_tests.conftest import free_port
from memberflow_assets_tests.helpers import HEADER, wait_until

pytestmark = pytest.mark.e2e

PARTITION_STATS = """
query ($path: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) {
    ... on AssetNode { partitionStats { numMaterialized numFailed } }
  }
}
"""


def graphql(port: int, query: str, variables: dict | None = None) -> dict:
    # a loaded machine can take longer than httpx's default 5 s to answer
    response = httpx.post(
        f"http://127.0.0.1:{port}/graphql", json={"query": query, "variables": variables or {}}, timeout=60
    )
    response.raise_for_status()
    return response.json()["data"]


@pytest.fixture
def dagster_dev(tmp_path, pg_dsn, make_database, monkeypatch):
    """`dagster dev` on a temporary DAGSTER_HOME and data dir, storage in fresh PostgreSQL databases."""
    data_dir = tmp_path / "data"
    monkeypatch.setenv("MEMBERFLOW_DATA_DIR", str(data_dir))
    monkeypatch.setenv("MEMBERFLOW_PG_DSN", pg_dsn)
    monkeypatch.setenv("MEMBERFLOW_DAGSTER_PG_DSN", make_database())
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    for name in ("MEMBERFLOW_STORAGE_URL", "MEMBERFLOW_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    environment = {
        **os.environ,
        **prepare_environment(Settings.from_env()),
        "MEMBERFLOW_SENSOR_INTERVAL_SECONDS": "2",
        "MEMBERFLOW_LANDING_SETTLE_SECONDS": "1",
    }
    port = free_port()
    log = (tmp_path / "dagster_dev.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "dagster", "dev", "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"],
        cwd=REPO_ROOT,
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # so the whole process group (webserver, daemon, code server) can be stopped
    )
    try:
        wait_until(lambda: _server_up(port), 180, "the Dagster webserver", every=1)
        yield port, data_dir
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
        print((tmp_path / "dagster_dev.log").read_text()[-5000:])


def _server_up(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/server_info", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_dropped_files_are_materialised_by_the_sensor_and_daemon(dagster_dev):
    port, data_dir = dagster_dev
    landing = data_dir / "landing" / "applications"
    landing.mkdir(parents=True, exist_ok=True)
    for name, person in (("e2e_one", "Ann Lee,ann@mail.net,1985-02-03,81234567"), ("e2e_two", "Bo Tan,b@x.com,x,1")):
        temp = landing / f"{name}.csv.part"  # written under a temporary name, then renamed: how upstream should drop
        temp.write_text(f"{HEADER}\n{person}\n")
        temp.rename(landing / f"{name}.csv")

    def run_statuses() -> list[str]:
        # membership runs only: other domains' sensors and schedules launch their own runs meanwhile
        query = '{ runsOrError(filter: {pipelineName: "membership_batch"}) { ... on Runs { results { status } } } }'
        runs = graphql(port, query)["runsOrError"]["results"]
        return [run["status"] for run in runs]

    def materialized() -> bool:
        stats = graphql(port, PARTITION_STATS, {"path": ["unsuccessful_applications"]})["assetNodeOrError"]
        return stats["partitionStats"]["numMaterialized"] == 2 and run_statuses().count("SUCCESS") == 2

    wait_until(materialized, 240, "both partitions to be materialised by two successful runs", every=1)
    stats = graphql(port, PARTITION_STATS, {"path": ["successful_applications"]})["assetNodeOrError"]
    assert stats["partitionStats"] == {"numMaterialized": 2, "numFailed": 0}
    assert run_statuses() == ["SUCCESS", "SUCCESS"]  # exactly one run per file
    assert (data_dir / "members" / "successful" / "e2e_one.parquet").exists()
    assert (data_dir / "members" / "unsuccessful" / "e2e_two.parquet").exists()
    assert Path(os.environ["DAGSTER_HOME"], "dagster.yaml").exists()
