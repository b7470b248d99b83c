"""Sales warehouse benchmark (issue 3): 100,000 members, 5,000 items, ~1,000,000 transactions, ~3,000,000 lines.

Prints, from one run on this machine, each figure with its target and a baseline measured in the same run:
  - a full star-schema refresh (target <= 60 s) against DuckDB's raw scan of the same extracted CSV data;
  - an incremental refresh of ~10,000 new transactions (target <= 5 s) against the raw scan of its extract;
  - each BI view, fully read (target <= 1 s) against the raw scan of the full extract and against a plain
    scan of fact_sales (the floor any view over the star schema pays).

The PostgreSQL data is generated once (about 4 minutes) and kept under bench/out/sales for later runs;
each run first removes the transactions a previous run added for the incremental measurement.

    .venv/bin/python bench/sales.py [--runs 3] [--fresh]
"""

import argparse
import io
import os
import statistics
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import psycopg2
import pyarrow as pa

from memberflow_assets.postgres import apply_migrations, ensure_database, with_database
from memberflow_assets.sales.demo_data import DemoSpec, seed_demo_sales
from memberflow_assets.warehouse.refresh import EXTRACT_COLUMNS, extract, last_watermark, refresh_warehouse
from memberflow_assets.warehouse.versions import open_published
from memberflow_assets.zones import Zones

OUT = Path(__file__).resolve().parent / "out" / "sales"
SPEC = DemoSpec(seed=7, manufacturers=250, items=5_000, transactions_per_member=10)
INCREMENT_BATCH = "bench_increment"
VIEWS = [
    "top_members_by_spending",
    "top_items_by_purchases",
    "sales_per_day",
    "transaction_weights",
    "membership_applications_by_outcome",
]


def timed(action) -> tuple[float, object]:
    start = time.perf_counter()
    value = action()
    return time.perf_counter() - start, value


def best_of(runs: int, action) -> tuple[float, float]:
    """(best, median) seconds of `runs` calls."""
    timings = [timed(action)[0] for _ in range(runs)]
    return min(timings), statistics.median(timings)


def add_members(dsn: str, first: int, count: int, batch: str) -> None:
    rows = io.StringIO()
    for number in range(first, first + count):
        rows.write(
            f"bench{number:06d}_{number % 0xFFFFF:05x}\tFirst{number}\tLast{number}\tm{number}@example.com\t"
            f"{1950 + number % 50}-0{1 + number % 9}-1{number % 10}\t{80000000 + number}\ttrue\t{batch}\n"
        )
    rows.seek(0)
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.copy_expert(
            "COPY sales.members (membership_id, first_name, last_name, email, date_of_birth, mobile_no, above_18,"
            " source_batch) FROM STDIN",
            rows,
        )
    connection.close()


def seed(dsn: str):
    connection = psycopg2.connect(dsn)
    try:
        with connection:
            return seed_demo_sales(connection, SPEC)
    finally:
        connection.close()


def counts(dsn: str) -> tuple[int, int, int, int]:
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT count(*) FROM sales.members), (SELECT count(*) FROM sales.items),"
            " (SELECT count(*) FROM sales.transactions), (SELECT count(*) FROM sales.transaction_lines)"
        )
        result = cursor.fetchone()
    connection.close()
    return result


def prepare_database(server_uri: str, members: int, fresh: bool) -> str:
    dsn = with_database(server_uri, "bench_sales")
    admin = psycopg2.connect(server_uri)
    admin.autocommit = True
    with admin.cursor() as cursor:
        if fresh:
            cursor.execute("DROP DATABASE IF EXISTS bench_sales WITH (FORCE)")
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = 'bench_sales'")
        exists = cursor.fetchone() is not None
    admin.close()
    ensure_database(server_uri, "bench_sales")
    apply_migrations(dsn)
    if exists:
        # forget what a previous run added for the incremental measurement
        with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
            cursor.execute(
                "DELETE FROM sales.transactions WHERE membership_id IN "
                "(SELECT membership_id FROM sales.members WHERE source_batch = %s)",
                (INCREMENT_BATCH,),
            )
            cursor.execute("DELETE FROM sales.members WHERE source_batch = %s", (INCREMENT_BATCH,))
        connection.close()
        if counts(dsn)[0] == members:
            return dsn
        raise SystemExit(f"bench/out/sales holds another size; rerun with --fresh (members: {counts(dsn)[0]})")
    seconds, _ = timed(lambda: add_members(dsn, 0, members, "bench"))
    print(f"loaded {members:,} members in {seconds:.1f}s")
    seconds, result = timed(lambda: seed(dsn))
    print(
        f"generated and loaded {result.transactions_created:,} transactions / {result.lines_created:,} lines "
        f"(constraints and the totals check included) in {seconds:.1f}s"
    )
    return dsn


def write_application_outcomes(zones: Zones, rows: int) -> None:
    """Outcome files shaped like the membership outputs (batch, row_number, is_successful, reasons)."""
    rng = np.random.default_rng(3)
    reasons = np.array(["invalid_email", "under_18", "invalid_mobile_no", "invalid_date_of_birth", "missing_name",
                        "under_18;invalid_mobile_no", "invalid_email;invalid_date_of_birth"])  # fmt: skip
    successful = rng.random(rows) < 0.65
    for kind, mask in (("successful", successful), ("unsuccessful", ~successful)):
        count = int(mask.sum())
        table = pa.table(
            {
                "batch": ["bench"] * count,
                "row_number": np.flatnonzero(mask) + 1,
                "is_successful": [kind == "successful"] * count,
                "rejection_reasons": [""] * count if kind == "successful" else reasons[rng.integers(0, 7, count)],
            }
        )
        zones.write_parquet(f"members/{kind}/bench.parquet", table)


def raw_scan(folder_paths: dict[str, str]) -> None:
    """DuckDB reading every extracted CSV once (all columns, typed as the refresh types them)."""
    with duckdb.connect() as connection:
        for name, columns in EXTRACT_COLUMNS.items():
            connection.execute(
                "SELECT count(*), max(COLUMNS(*)) FROM read_csv($path, header = true, columns = $columns, "
                "auto_detect = false)",
                {"path": folder_paths[name], "columns": columns},
            ).fetchall()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--new-members", type=int, default=1_000, help="per incremental round (~10 transactions each)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--fresh", action="store_true", help="regenerate the PostgreSQL data")
    args = parser.parse_args()

    import pgserver

    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} (shared machine: figures are noisy)")
    OUT.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(OUT / "pg", cleanup_mode="stop")  # stopped when this process exits
    dsn = prepare_database(server.get_uri(), args.members, args.fresh)
    members, items, transactions, lines = counts(dsn)
    print(f"PostgreSQL: {members:,} members, {items:,} items, {transactions:,} transactions, {lines:,} lines")
    zones = Zones(str(OUT / "zones"))
    write_application_outcomes(zones, int(members * 1.5))
    warehouse = str(OUT / "warehouse.duckdb")
    results = []

    with tempfile.TemporaryDirectory(prefix="mfbench-sales-") as work:
        # 1. Full refresh vs. the raw scan of the same extract.
        full = [refresh_warehouse(dsn, warehouse, zones, full=True) for _ in range(max(2, args.runs - 1))]
        full_best, full_median = min(r.seconds for r in full), statistics.median(r.seconds for r in full)
        extract_seconds, (_, full_paths) = timed(lambda: extract(dsn, None, os.path.join(work, "full")))
        scan_best, _ = best_of(args.runs, lambda: raw_scan(full_paths))
        size_mb = sum(os.path.getsize(path) for path in full_paths.values()) / 1e6
        print(
            f"\nfull refresh: {full[-1].fact_rows:,} fact rows, {full[-1].members:,} members, {full[-1].items:,} items"
            f"\n  extract alone (PostgreSQL COPY -> {size_mb:,.0f} MB CSV): {extract_seconds:.1f}s"
        )
        results.append(("full refresh", full_best, full_median, 60.0, scan_best, "raw scan of the full extract"))

        # 2. Incremental refresh of ~10,000 new transactions, several rounds.
        incremental = []
        first_new = 10_000_000
        for round_number in range(args.runs):
            add_members(dsn, first_new + round_number * args.new_members, args.new_members, INCREMENT_BATCH)
            new = seed(dsn)
            with open_published(warehouse) as connection:
                since = last_watermark(connection)
            result = refresh_warehouse(dsn, warehouse, zones)
            _, paths = extract(dsn, since, os.path.join(work, f"increment{round_number}"))
            scan, _ = best_of(args.runs, lambda paths=paths: raw_scan(paths))
            incremental.append((result, new.transactions_created, scan))
        added = [n for _, n, _ in incremental]
        loaded = [r.transactions_loaded for r, _, _ in incremental]
        print(f"\nincremental rounds: {added} new transactions added, {loaded} loaded by the refresh")
        seconds = [r.seconds for r, _, _ in incremental]
        results.append(
            ("incremental refresh (~10k new)", min(seconds), statistics.median(seconds), 5.0,
             min(s for _, _, s in incremental), "raw scan of its extract")
        )  # fmt: skip

        # 3. Each BI view, fully read, read-only like an analyst.
        with open_published(warehouse) as connection:
            fact_scan, _ = best_of(
                args.runs,
                lambda: connection.sql(
                    "SELECT count(*), sum(line_price), sum(line_weight_kg), sum(quantity),"
                    " count(DISTINCT member_key) FROM fact_sales"
                ).fetchall(),
            )
            print(f"\nplain scan of fact_sales (count, sums, distinct members): {fact_scan:.3f}s")
            for view in VIEWS:
                best, median = best_of(args.runs, lambda view=view: connection.sql(f"FROM bi.{view}").to_arrow_table())
                rows = connection.sql(f"SELECT count(*) FROM bi.{view}").fetchall()[0][0]
                results.append(
                    (f"bi.{view} ({rows:,} rows)", best, median, 1.0, scan_best, "raw scan of the full extract")
                )
                print(f"  bi.{view}: {best / fact_scan:.1f}x the fact_sales scan")

    print(f"\n{'measure':<58} {'best':>8} {'median':>8} {'target':>7}  {'baseline':>8}  ratio")
    for name, best, median, target, baseline, baseline_name in results:
        verdict = "ok" if best <= target else "OVER TARGET"
        print(
            f"{name:<58} {best:>7.2f}s {median:>7.2f}s {target:>6.0f}s  {baseline:>7.2f}s  "
            f"{best / baseline:.2f}x {baseline_name}  [{verdict}]"
        )
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
