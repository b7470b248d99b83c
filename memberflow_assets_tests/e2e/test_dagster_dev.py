"""End to end: a real `dagster dev` (webserver + daemon) on PostgreSQL storage picks up dropped files."""

import os
from pathlib import Path

import pytest

from memberflow_assets_tests.e2e.graphql import PARTITION_STATS, graphql
from memberflow_assets_tests.helpers import HEADER, wait_until

pytestmark = pytest.mark.e2e


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
