"""End to end: in a real `dagster dev`, the images sensor launches a processing run (whose worker pool runs
inside Dagster's run process) and the BI views run, for images landed as the ingestion contract says."""

from datetime import UTC, datetime

import duckdb
import pytest

from memberflow_assets.images.hours import POOL_THRESHOLD
from memberflow_assets.images.layout import hour_key
from memberflow_assets.zones import Zones

from .image_helpers import jpeg, land_image, registry_rows
from .test_e2e_dagster_dev import PARTITION_STATS, dagster_dev, graphql, wait_for  # noqa: F401 - fixture

pytestmark = pytest.mark.e2e

RUNS = "{ runsOrError { ... on Runs { results { jobName status } } } }"


@pytest.fixture(autouse=True)
def no_wait_between_runs(monkeypatch):
    """A tick may see only some of the images landed so far: let the next tick ask for the rest at once.
    (Autouse: set before `dagster_dev` starts.)"""
    monkeypatch.setenv("MEMBERFLOW_IMAGES_RUN_INTERVAL_SECONDS", "0")


def test_landed_images_are_processed_by_the_sensor_and_daemon(dagster_dev, pg_dsn):  # noqa: F811 - fixture
    port, data_dir = dagster_dev
    zones = Zones(str(data_dir))
    now = datetime.now(UTC)
    images = [land_image(zones, pg_dsn, jpeg(320, 240, seed=seed), now) for seed in range(POOL_THRESHOLD + 2)]
    land_image(zones, pg_dsn, b"not an image", now)

    def runs() -> list[tuple[str, str]]:
        return [(run["jobName"], run["status"]) for run in graphql(port, RUNS)["runsOrError"]["results"]]

    def done() -> bool:
        relpath = f"images/metadata/{hour_key(now)}.parquet"
        statuses = runs()
        return (
            zones.exists(relpath)
            and zones.parquet_num_rows(relpath) == len(images) + 1
            and ("refresh_image_bi_views", "SUCCESS") in statuses
            and all(status in ("SUCCESS", "FAILURE", "CANCELED") for _, status in statuses)
        )

    wait_for(done, 240, "the image processing and BI views runs")
    assert {status for _, status in runs()} == {"SUCCESS"}
    stats = graphql(port, PARTITION_STATS, {"path": ["image_metadata"]})["assetNodeOrError"]["partitionStats"]
    assert stats == {"numMaterialized": 1, "numFailed": 0}
    metadata = zones.read_parquet(f"images/metadata/{hour_key(now)}.parquet")
    assert metadata.num_rows == len(images) + 1
    assert metadata.column("status").to_pylist().count("rejected") == 1
    statuses = [row[0] for row in registry_rows(pg_dsn).values()]
    assert sorted(set(statuses)) == ["processed", "rejected"]
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as connection:
        assert connection.sql("SELECT sum(images) FROM bi.images_per_hour").fetchall() == [(len(images) + 1,)]
