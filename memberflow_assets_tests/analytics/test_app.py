"""The analysts' notebook app in a real browser: `memberflow analytics` on a warehouse with known data,
opened in headless Chromium with the network closed. The charts show the known figures, nothing is
loaded from off the machine, the SQL cell runs, and a newer version shows up without a restart.

The README's screenshots come from this test: run it with MEMBERFLOW_SCREENSHOTS=docs/screenshots.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg2
import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys

from memberflow_assets.settings import REPO_ROOT, Settings
from memberflow_assets.testing.browser import (
    CHROMEDRIVER,
    CHROMIUM,
    charts,
    chromium,
    deep_elements,
    off_machine,
    page_text,
    requested_urls,
)
from memberflow_assets.testing.browser import wait_for_charts as wait_for
from memberflow_assets.testing.network import free_port
from memberflow_assets.warehouse.charts import TITLES
from memberflow_assets.warehouse.refresh import refresh_warehouse
from memberflow_assets_tests.helpers import children_of, start_beside_dagster, wait_until
from memberflow_assets_tests.sales_data import add_transaction
from memberflow_assets_tests.warehouse_data import KNOWN, build_known_warehouse

needs_chromium = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
    reason="Debian's chromium and chromium-driver are not installed (./dev.sh test installs them as root)",
)


def serving(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def app(memberflow_env, pg_dsn, zones):
    """`memberflow analytics` on the known warehouse; returns its URL."""
    build_known_warehouse(pg_dsn, zones, Settings.from_env().warehouse)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "memberflow_assets.cli", "analytics", "--port", str(port)],
        env={**os.environ, "MEMBERFLOW_ANALYTICS_CHECK_EVERY": "1s"},
        cwd=REPO_ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: serving(url) or server.poll() is not None, 120, "the app to serve")
        assert server.poll() is None, "the app did not start"
        yield url
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def chart_texts(driver) -> dict[str, list[str]]:
    return {title: chart["texts"] for title, chart in charts(driver).items()}


def screenshot(driver, name: str, folder: Path) -> None:
    driver.save_screenshot(str(folder / name))
    if os.environ.get("MEMBERFLOW_SCREENSHOTS"):  # the README's pictures, from this very run
        target = REPO_ROOT / os.environ["MEMBERFLOW_SCREENSHOTS"]
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(folder / name, target / name)


def run_in_sql_cell(driver, sql: str) -> None:
    [editor] = [element for element in deep_elements(driver, ".cm-content") if element.is_displayed()]
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", editor)
    editor.click()
    ActionChains(driver).key_down(Keys.CONTROL).send_keys("a").key_up(Keys.CONTROL).send_keys(Keys.DELETE).perform()
    ActionChains(driver).send_keys(sql).perform()
    [run] = [button for button in deep_elements(driver, "button") if button.text.strip() == "Run query"]
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", run)
    run.click()


@needs_chromium
def test_the_app_draws_every_chart_offline_runs_sql_and_follows_new_versions(app, pg_dsn, zones, tmp_path):
    with chromium() as driver:
        driver.set_window_size(1400, 1500)
        driver.get(app)
        wait_for(driver, set(TITLES.values()), timeout=120)
        texts = chart_texts(driver)
        name, total = KNOWN["top_member"]
        assert f"1. {name}" in texts[TITLES["top_members"]] and total in texts[TITLES["top_members"]]
        assert f"2. {KNOWN['second_member'][0]}" in texts[TITLES["top_members"]]
        assert [f"{rank}. {item}" for rank, item in enumerate(KNOWN["top_items"], 1)] == [
            text for text in texts[TITLES["top_items"]] if text[:2] in ("1.", "2.", "3.")
        ]
        assert KNOWN["revenue_2025_03_03"] in texts[TITLES["sales_per_day"]]
        reason, count = KNOWN["top_rejection"]
        assert {reason, "accepted", "under_18", str(count)} <= set(texts[TITLES["applications_by_outcome"]])
        assert {"processed", "rejected"} <= set(texts[TITLES["images_per_hour"]])
        assert {"JPEG", "PNG", str(KNOWN["image_formats"]["JPEG"])} <= set(texts[TITLES["image_formats"]])
        assert {"1: < 0.5 MP", "2: 0.5-2 MP", "3: 2-8 MP"} <= set(texts[TITLES["image_sizes"]])
        assert all(chart["marks"] > 0 for chart in charts(driver).values())
        urls = requested_urls(driver)
        assert urls and off_machine(urls) == []  # everything came from the app itself: no CDN
        time.sleep(1)  # the page at rest for the picture
        screenshot(driver, "analytics-charts.png", tmp_path)

        # The SQL cell: a query runs; anything but one SELECT is refused with a message.
        run_in_sql_cell(driver, "SELECT item_name, times_bought FROM bi.top_items_by_purchases ORDER BY rank")
        wait_until(lambda: "Kettle" in page_text(driver) and "3 rows in" in page_text(driver), 60, "the query result")
        [editor] = [element for element in deep_elements(driver, ".cm-content") if element.is_displayed()]
        driver.execute_script("arguments[0].scrollIntoView({block: 'start'})", editor)
        time.sleep(1)  # let the table settle before the picture
        screenshot(driver, "analytics-sql.png", tmp_path)
        run_in_sql_cell(driver, "COPY (SELECT 1) TO '/tmp/evil.csv'")
        wait_until(lambda: "one SELECT statement (or an EXPLAIN of one)" in page_text(driver), 60, "the refusal")
        assert not os.path.exists("/tmp/evil.csv")
        assert off_machine(requested_urls(driver)) == []

        # A newer version is published: the open page follows it without a restart or a reload.
        with psycopg2.connect(pg_dsn) as connection, connection.cursor() as cursor:
            add_transaction(cursor, "turing_f6a7b", [(3, 4)], created_at="2025-03-04T10:00:00Z")  # 4 toasters
        connection.close()
        refresh_warehouse(pg_dsn, Settings.from_env().warehouse, zones)
        wait_until(lambda: "1. Alan Turing" in chart_texts(driver).get(TITLES["top_members"], []), 60, "the new data")
        assert "196.50" in chart_texts(driver)[TITLES["top_members"]]

        # The analyst comes back (a new tab: a new session): the new version's charts, and marimo's page
        # assets from the browser's cache, none asked for again.
        driver.switch_to.new_window("tab")
        driver.get(app)
        wait_for(driver, set(TITLES.values()), timeout=120)
        assert "1. Alan Turing" in chart_texts(driver)[TITLES["top_members"]]
        assets = driver.execute_script(
            "return performance.getEntriesByType('resource').map(r => [r.name, r.transferSize])"
        )
        page_assets = [(url, size) for url, size in assets if "/assets/" in url]
        assert page_assets and [url for url, size in page_assets if size > 0] == []  # (manifest.json is not hashed)


def test_browsers_keep_the_page_assets_and_ask_for_the_page_itself_each_time(app):
    page = httpx.get(app, timeout=30)
    assert "immutable" not in page.headers.get("cache-control", "")
    assets = re.findall(r'(?:src|href)="\./(assets/[^"]+)"', page.text)
    assert len(assets) > 10
    for asset in assets[:20]:
        answer = httpx.get(f"{app}/{asset}", timeout=30)
        assert answer.status_code == 200 and answer.headers["cache-control"] == "public, max-age=31536000, immutable"
    missing = httpx.get(f"{app}/assets/index-00000000.js", timeout=30)  # a name marimo never had
    assert missing.status_code == 404 and "immutable" not in missing.headers.get("cache-control", "")


BESIDE = "memberflow_assets.cli.warehouse"


def test_start_serves_the_app_beside_dagster_and_it_stops_with_it(memberflow_env, monkeypatch):
    port = free_port()
    monkeypatch.setenv("MEMBERFLOW_ANALYTICS_PORT", str(port))
    parent = start_beside_dagster(BESIDE)
    try:
        assert len(children_of(parent.pid)) == 1
        wait_until(lambda: serving(f"http://127.0.0.1:{port}"), 120, "the app beside dagster")
        assert "memberflow analytics" in httpx.get(f"http://127.0.0.1:{port}/", timeout=10).text
        parent.kill()  # `dagster dev` going away, however it goes
        parent.wait()
        wait_until(lambda: not serving(f"http://127.0.0.1:{port}"), 60, "the app to stop")
    finally:
        parent.kill()
        parent.wait()


def test_start_without_the_app(memberflow_env, monkeypatch):
    monkeypatch.setenv("MEMBERFLOW_START_ANALYTICS", "0")
    port = free_port()
    monkeypatch.setenv("MEMBERFLOW_ANALYTICS_PORT", str(port))
    parent = start_beside_dagster(BESIDE)
    try:
        assert children_of(parent.pid) == []  # start_beside_dagster has returned without starting the app
        assert not serving(f"http://127.0.0.1:{port}")
    finally:
        parent.kill()
        parent.wait()
