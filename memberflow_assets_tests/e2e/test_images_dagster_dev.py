"""End to end: in a real `dagster dev`, the images sensor launches a processing run (whose worker pool runs
inside Dagster's run process) and the automation runs the BI views, for images landed as the ingestion contract says."""

from datetime import UTC, datetime

import duckdb
import pytest

from memberflow_assets.images.layout import hour_key
from memberflow_assets.images.processing.hour_partition import POOL_THRESHOLD
from memberflow_assets.testing.images import jpeg
from memberflow_assets.zones import Zones
from memberflow_assets_tests.e2e.graphql import PARTITION_STATS, graphql
from memberflow_assets_tests.helpers import wait_until
from memberflow_assets_tests.images.helpers import land_image, registry_rows

pytestmark = pytest.mark.e2e

RUNS = "{ runsOrError { ... on Runs { results { jobName status assetSelection { path } tags { key value } } } } }"
# the processing job, and the views by their automation condition (the default automation sensor's runs)
IMAGE_JOBS = ("image_processing", "image_bi_views")
FINISHED = ("SUCCESS", "FAILURE", "CANCELED")


@pytest.fixture(autouse=True)
def no_wait_between_runs(monkeypatch):
    """A tick may see only some of the images landed so far: let the next tick ask for the rest at once.
    (Autouse: set before `dagster_dev` starts.)"""
    monkeypatch.setenv("MEMBERFLOW_IMAGES_RUN_INTERVAL_SECONDS", "0")


def test_landed_images_are_processed_by_the_sensor_and_daemon(dagster_dev, pg_dsn):
    port, data_dir = dagster_dev
    zones = Zones(str(data_dir))
    now = datetime.now(UTC)
    images = [land_image(zones, pg_dsn, jpeg(320, 240, seed=seed), now) for seed in range(POOL_THRESHOLD + 2)]
    land_image(zones, pg_dsn, b"not an image", now)

    key = hour_key(now)
    landed = len(images) + 1

    def runs() -> list[tuple[str, str, str | None]]:
        """(job, status, run key) of every run; a run of image_bi_views (the automation sensor's, maybe with the
        warehouse's assets) is named after it."""
        results = graphql(port, RUNS)["runsOrError"]["results"]
        return [
            (
                "image_bi_views" if {"path": ["image_bi_views"]} in (run["assetSelection"] or []) else run["jobName"],
                run["status"],
                {t["key"]: t["value"] for t in run["tags"]}.get("dagster/run_key"),
            )
            for run in results
        ]

    def image_runs_done() -> list[tuple[str, str, str | None]] | None:
        """Every run, once the sensor has asked for the hour with all its images (after which it asks for no
        more), every run of the image jobs has finished and the images are processed. Schedules (the
        warehouse every 15 minutes, retention at :01) may launch runs at any moment: those are not waited
        for, but none may have failed."""
        relpath = f"images/metadata/{key}.parquet"
        seen = runs()
        image_runs = [(job, status, run_key) for job, status, run_key in seen if job in IMAGE_JOBS]
        done = (
            any(run_key == f"{key}:{landed}" for job, _, run_key in image_runs if job == "image_processing")
            and any(job == "image_bi_views" for job, _, _ in image_runs)
            and all(status in FINISHED for _, status, _ in image_runs)
            and zones.exists(relpath)
            and zones.parquet_num_rows(relpath) == landed
        )
        return seen if done else None

    seen = wait_until(image_runs_done, 360, "the image processing and BI views runs", every=1)
    assert {status for job, status, _ in seen if job in IMAGE_JOBS} == {"SUCCESS"}
    assert [(job, status) for job, status, _ in seen if status in FINISHED and status != "SUCCESS"] == []
    stats = graphql(port, PARTITION_STATS, {"path": ["image_metadata"]})["assetNodeOrError"]["partitionStats"]
    assert stats == {"numMaterialized": 1, "numFailed": 0}
    metadata = zones.read_parquet(f"images/metadata/{key}.parquet")
    assert metadata.num_rows == landed
    assert metadata.column("status").to_pylist().count("rejected") == 1
    assert sorted({row[0] for row in registry_rows(pg_dsn).values()}) == ["processed", "rejected"]
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as connection:
        assert connection.sql("SELECT sum(images) FROM bi.images_per_hour").fetchall() == [(landed,)]
