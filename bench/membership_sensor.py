"""The landing sensor's per-file lookup against history: the content a partition's latest run was for
(`sensors._latest_content`, one query per rewritten file) with 300, 3,000 and 30,000 runs in a Dagster
instance's run storage (SQLite, as `dagster dev` keeps it). Prints ms per lookup and the ratio to the
smallest history; the cost of a file must not grow with the runs before it.

    .venv/bin/python bench/membership_sensor.py
"""

import tempfile
import time
import uuid

import dagster as dg

from memberflow_assets.membership.sensors import SHA256_TAG, _latest_content

RUNS_PER_PARTITION = 3
LOOKUPS = 50


def ms_per_lookup(partitions: int) -> float:
    with tempfile.TemporaryDirectory() as home, dg.instance_for_test(temp_dir=home) as instance:
        for partition in range(partitions):
            for run in range(RUNS_PER_PARTITION):
                tags = {"dagster/partition": f"batch_{partition}", SHA256_TAG: f"{partition:08x}{run:056x}"}
                instance.add_run(dg.DagsterRun(job_name="membership_batch", run_id=str(uuid.uuid4()), tags=tags))
        keys = [f"batch_{partition}" for partition in range(0, partitions, max(partitions // LOOKUPS, 1))]
        start = time.perf_counter()
        for key in keys:
            _latest_content(instance, key)
        return (time.perf_counter() - start) / len(keys) * 1000


def main() -> None:
    baseline = None
    for partitions in (100, 1_000, 10_000):
        ms = ms_per_lookup(partitions)
        baseline = baseline or ms
        print(f"{partitions * RUNS_PER_PARTITION:>7,} runs in history: {ms:.2f} ms per lookup ({ms / baseline:.2f}x)")


if __name__ == "__main__":
    main()
