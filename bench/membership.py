"""Membership pipeline benchmark (issue: 1,000,000 synthetic application rows covering every rule).

Prints, from one run on this machine:
  - classify_applications throughput (rows/s; target >= 500,000 on 2 cores);
  - the floor: DuckDB reading the same CSV and writing it to Parquet;
  - one partition's full materialisation (read -> classify -> write both outputs, with its checks)
    through Dagster, with Dagster's fixed per-run overhead (the same run on a 1-row file) reported
    separately; target: within 5x of the floor;
  - the peak memory (max RSS) of the process that materialised the 1M-row partition (target < 1.5 GB);
  - the `members` load of those rows into PostgreSQL, for information.

    .venv/bin/python bench/membership.py [--rows 1000000]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb


def best_of(runs: int, action) -> float:
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        timings.append(time.perf_counter() - start)
    return min(timings)


def run_partition(data_dir: str, pg_dsn: str, batch: str, with_members: bool) -> dict:
    """Materialise one partition in this (fresh) process; called through a subprocess."""
    os.environ.update({"MEMBERFLOW_DATA_DIR": data_dir, "MEMBERFLOW_PG_DSN": pg_dsn})
    import dagster as dg

    from memberflow_assets.definitions import defs
    from memberflow_assets.membership.partitions import application_files

    job = defs.resolve_job_def("membership_batch")
    selection = ["raw_applications", "classified_applications", "successful_applications", "unsuccessful_applications"]
    if with_members:
        selection.append("members")
    subset = job.get_subset(asset_selection={dg.AssetKey(name) for name in selection})
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(application_files.name, [batch])
        start = time.perf_counter()
        result = subset.execute_in_process(instance=instance, partition_key=batch, raise_on_error=False)
        seconds = time.perf_counter() - start
        step_seconds = {}
        for event in result.all_events:
            if event.event_type_value == "STEP_SUCCESS":
                step_seconds[event.step_key] = event.event_specific_data.duration_ms / 1000
    return {
        "success": result.success,
        "seconds": seconds,
        "steps": step_seconds,
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def partition_in_subprocess(data_dir: str, pg_dsn: str, batch: str, with_members: bool = False) -> dict:
    command = [sys.executable, __file__, "--child", data_dir, pg_dsn, batch]
    if with_members:
        command.append("--members")
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()

    import pgserver

    from memberflow_assets.membership.reader import read_applications
    from memberflow_assets.membership.rules import classify_applications
    from memberflow_assets.membership.samples import generate_applications
    from memberflow_assets.postgres import ensure_database, with_database

    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="mfbench", dir="/tmp") as work:
        data_dir = Path(work, "data")
        landing = data_dir / "landing" / "applications"
        landing.mkdir(parents=True)
        csv_path = landing / "bench_1m.csv"
        start = time.perf_counter()
        generate_applications(args.rows, seed=42).to_csv(csv_path, index=False)
        (landing / "bench_1row.csv").write_text(
            "name,email,date_of_birth,mobile_no\nAnn Lee,ann@mail.net,1985-02-03,81234567\n"
        )
        megabytes = csv_path.stat().st_size / 1e6
        print(f"generated {args.rows:,} rows ({megabytes:.1f} MB) in {time.perf_counter() - start:.1f}s")

        # 1. The rules alone.
        frame = read_applications(str(csv_path), csv_path.name)
        classify_seconds = best_of(3, lambda: classify_applications(frame))
        classified = classify_applications(frame)
        print(
            f"classify_applications: {args.rows / classify_seconds:,.0f} rows/s ({classify_seconds:.2f}s; "
            f"target >= 500,000) — {classified['is_successful'].mean():.1%} successful"
        )
        frame = classified = None  # free the memory before the partition runs

        # 2. The floor: DuckDB CSV -> Parquet of the same file.
        floor_target = Path(work, "floor.parquet")
        with duckdb.connect() as connection:
            connection.execute("SET enable_progress_bar = false")
            floor_seconds = best_of(
                3,
                lambda: connection.execute(
                    f"COPY (SELECT * FROM read_csv('{csv_path}', all_varchar = true)) "
                    f"TO '{floor_target}' (FORMAT parquet)"
                ),
            )
        print(f"floor (DuckDB CSV -> Parquet): {floor_seconds:.2f}s = {args.rows / floor_seconds:,.0f} rows/s")

        # 3. A full partition through Dagster, each in a fresh process (memory is that process's peak).
        server = pgserver.get_server(Path(work, "pg"), cleanup_mode="delete")
        try:
            ensure_database(server.get_uri(), "memberflow")
            dsn = with_database(server.get_uri(), "memberflow")
            overhead = min(
                (partition_in_subprocess(str(data_dir), dsn, "bench_1row") for _ in range(2)),
                key=lambda run: run["seconds"],
            )
            full = partition_in_subprocess(str(data_dir), dsn, "bench_1m")
            assert overhead["success"] and full["success"], (overhead, full)
            data_seconds = full["seconds"] - overhead["seconds"]
            print(f"dagster fixed per-run overhead (1-row partition, in-process executor): {overhead['seconds']:.2f}s")
            print(
                f"full partition, 1M rows: {full['seconds']:.2f}s in Dagster; {data_seconds:.2f}s beyond the fixed "
                f"overhead = {args.rows / data_seconds:,.0f} rows/s = {data_seconds / floor_seconds:.1f}x the floor "
                f"(target <= 5x)"
            )
            print("  steps: " + ", ".join(f"{step} {seconds:.2f}s" for step, seconds in full["steps"].items()))
            print(f"peak memory of the 1M-row partition process: {full['max_rss_mb']:,.0f} MB (target < 1,536 MB)")
            members = partition_in_subprocess(str(data_dir), dsn, "bench_1m", with_members=True)
            print(f"  with the members load into PostgreSQL: {members['steps'].get('members', float('nan')):.2f}s")
        finally:
            server.cleanup()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(run_partition(sys.argv[2], sys.argv[3], sys.argv[4], "--members" in sys.argv)))
    else:
        main()
