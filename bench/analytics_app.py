"""Notebook app benchmark (issue 12): from opening the app to every chart drawn, in headless Chromium,
on the bench/sales.py warehouse (100,000 members, ~1,000,000 transactions, ~3,000,000 lines) plus 7 days
of image metadata (1,000,000 rows in 168 hourly files). Target: <= 3 s.

A measurement runs from `driver.get` until all seven charts are in the page with their marks, each page a
new app session that runs the notebook:
  - "new browser": a fresh profile (nothing cached), as an analyst's first visit;
  - "return visit": a new tab in a browser that opened the app before, as every later visit.
"first" is the first page after the app started. Baselines from the same run:
  - the seven chart queries alone, run directly (the floor of a first page on a new version);
  - the same app on a tiny warehouse (the app's fixed cost: session, kernel, page, charts);
  - with --baseline DIR, the app of another source tree (e.g. `git archive main | tar -x -C DIR`) on the
    same warehouses, its pages taken in turn with this tree's so that both see the same machine load.

    .venv/bin/python bench/analytics_app.py [--runs 5] [--fresh] [--baseline DIR]

Needs Debian's chromium and chromium-driver (./dev.sh test installs them). The PostgreSQL data of
bench/sales.py is generated once (~4 minutes) under bench/out/sales and reused.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg2

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH), str(BENCH.parent)]

import images as images_bench  # noqa: E402
import sales as sales_bench  # noqa: E402

from memberflow_assets.postgres import apply_migrations, ensure_database, with_database  # noqa: E402
from memberflow_assets.sales.demo_data import DemoSpec, seed_demo_sales  # noqa: E402
from memberflow_assets.testing.browser import chromium, wait_for_charts  # noqa: E402
from memberflow_assets.testing.network import free_port  # noqa: E402
from memberflow_assets.warehouse.analyst import CHART_QUERIES, AnalystWarehouse  # noqa: E402
from memberflow_assets.warehouse.charts import CHARTS, TITLES  # noqa: E402
from memberflow_assets.warehouse.refresh import refresh_warehouse  # noqa: E402
from memberflow_assets.zones import Zones  # noqa: E402

OUT = BENCH / "out" / "analytics"
TARGET_SECONDS = 3.0


def build(name: str, dsn: str, image_rows: int, outcome_rows: int) -> tuple[str, Zones]:
    zones = Zones(str(OUT / name / "zones"))
    sales_bench.write_application_outcomes(zones, outcome_rows)
    week_ago = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=7)
    images_bench.write_metadata(zones, image_rows, week_ago)
    warehouse = str(OUT / name / "warehouse.duckdb")
    result = refresh_warehouse(dsn, warehouse, zones, full=True)
    print(f"{name}: {result.fact_rows:,} fact rows, {result.fact_transaction_rows:,} transactions, "
          f"{image_rows:,} image rows; built in {result.seconds:.1f}s")  # fmt: skip
    return warehouse, zones


def tiny_database(server_uri: str) -> str:
    ensure_database(server_uri, "bench_analytics_tiny")
    dsn = with_database(server_uri, "bench_analytics_tiny")
    apply_migrations(dsn)
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute("TRUNCATE sales.transactions, sales.members CASCADE")
    connection.close()
    sales_bench.add_members(dsn, 0, 50, "tiny")
    connection = psycopg2.connect(dsn)
    with connection:
        seed_demo_sales(connection, DemoSpec(seed=1, manufacturers=5, items=20, transactions_per_member=3))
    connection.close()
    return dsn


def query_floor(warehouse: str, zones: Zones, runs: int) -> float:
    """The seven chart queries run directly on the sandboxed connection (not the app's shared results)."""
    analyst = AnalystWarehouse(warehouse, zones)
    analyst.current()
    queries = [(CHART_QUERIES / f"{name}.sql").read_text() for name in CHARTS]
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        for query in queries:
            assert analyst.run(query).error is None
        timings.append(time.perf_counter() - started)
    return min(timings)


def serve(tree: Path, warehouse: str, zones: Zones) -> tuple[subprocess.Popen, str]:
    """`memberflow analytics` from the source tree `tree`, serving; returns the process and its address."""
    port = free_port()
    environment = {
        **os.environ,
        "MEMBERFLOW_WAREHOUSE": warehouse,
        "MEMBERFLOW_DATA_DIR": zones.root,
        "PYTHONPATH": str(tree),  # before the installed (editable) project: that tree's code and notebook
    }
    app = subprocess.Popen(
        [sys.executable, "-m", "memberflow_assets.cli", "analytics", "--port", str(port)], env=environment, cwd=tree
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return app, url
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or app.poll() is not None:
            app.kill()
            raise SystemExit(f"the app of {tree} did not start")
        time.sleep(0.2)


def seconds_to_charts(driver, url: str) -> float:
    started = time.perf_counter()
    driver.get(url)
    wait_for_charts(driver, set(TITLES.values()), timeout=120)
    return time.perf_counter() - started


def page_loads(trees: dict[str, Path], warehouse: str, zones: Zones, runs: int) -> dict[str, dict[str, list[float]]]:
    """Per tree: seconds to every chart drawn in a new browser (the first page after the app started,
    then `runs` more) and on `runs` return visits; the trees' pages are taken in turn."""
    apps = {label: serve(tree, warehouse, zones) for label, tree in trees.items()}
    timings = {label: {"new browser": [], "return visit": []} for label in trees}
    try:
        for _ in range(runs + 1):
            for label, (_, url) in apps.items():
                with chromium() as driver:
                    driver.set_window_size(1400, 1500)
                    timings[label]["new browser"].append(seconds_to_charts(driver, url))
        for label, (_, url) in apps.items():
            with chromium() as driver:
                driver.set_window_size(1400, 1500)
                seconds_to_charts(driver, url)  # the analyst's first visit
                for _ in range(runs):
                    driver.switch_to.new_window("tab")
                    timings[label]["return visit"].append(seconds_to_charts(driver, url))
        return timings
    finally:
        for app, _ in apps.values():
            app.terminate()
            app.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--fresh", action="store_true", help="regenerate bench/sales.py's PostgreSQL data")
    parser.add_argument("--baseline", type=Path, help="another source tree's app to compare with (e.g. main's)")
    args = parser.parse_args()

    import pgserver

    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} (shared machine: figures are noisy)")
    sales_bench.OUT.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(sales_bench.OUT / "pg", cleanup_mode="stop")
    big_dsn = sales_bench.prepare_database(server.get_uri(), args.members, args.fresh)
    big = build("1M", big_dsn, 1_000_000, int(args.members * 1.5))
    tiny = build("tiny", tiny_database(server.get_uri()), 168 * 5, 100)

    trees = {"this tree": BENCH.parent}
    if args.baseline is not None:
        trees = {f"baseline {args.baseline}": args.baseline.resolve(), **trees}
    floor = query_floor(*big, args.runs)
    loads = {"tiny warehouse": page_loads(trees, *tiny, args.runs), "1M warehouse": page_loads(trees, *big, args.runs)}
    print(f"\nthe seven chart queries alone on the 1M warehouse (best of {args.runs}): {floor:.2f}s")
    print(f"{'page open -> all charts drawn':<58} {'best':>7} {'median':>7} {'first':>7}")
    for warehouse, by_tree in loads.items():
        for tree, kinds in by_tree.items():
            for kind, seconds in kinds.items():
                first, later = (seconds[0], seconds[1:]) if kind == "new browser" else (None, seconds)
                line = f"  {warehouse}, {tree}, {kind}"
                print(f"{line:<58} {min(later):>6.2f}s {statistics.median(later):>6.2f}s "
                      f"{'' if first is None else f'{first:>6.2f}s'}")  # fmt: skip
    ours = loads["1M warehouse"]["this tree"]
    for kind in ("new browser", "return visit"):
        median = statistics.median(ours[kind][1:] if kind == "new browser" else ours[kind])
        verdict = "ok" if median <= TARGET_SECONDS else "OVER TARGET"
        line = f"target <= {TARGET_SECONDS:.0f}s, 1M warehouse, {kind}: median {median:.2f}s [{verdict}]"
        for tree, kinds in loads["1M warehouse"].items():
            if tree != "this tree":
                theirs = statistics.median(kinds[kind][1:] if kind == "new browser" else kinds[kind])
                line += f"; {theirs / median:.1f}x faster than {tree} ({theirs:.2f}s)"
        print(line)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
