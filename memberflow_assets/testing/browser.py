"""Headless Chromium (Debian's chromium + chromium-driver, installed by dev.sh) driven by Selenium, with the
network closed: only loopback addresses are reachable, and every request the page makes is recorded.

Shared by the notebook app's browser test and its benchmark (bench/analytics_app.py).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
    # The network, closed: names do not resolve, and anything not on loopback goes to a dead proxy.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
    "--proxy-server=http://127.0.0.1:9",
]


@contextmanager
def chromium() -> Iterator[webdriver.Chrome]:
    with tempfile.TemporaryDirectory(prefix="memberflow-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in [*FLAGS, f"--user-data-dir={profile}"]:
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
        driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
        try:
            yield driver
        finally:
            driver.quit()


def requested_urls(driver: webdriver.Chrome) -> list[str]:
    """Every URL the page asked for since the last call (from Chromium's network log)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] in ("Network.requestWillBeSent", "Network.webSocketCreated"):
            urls.append(message["params"].get("request", {}).get("url") or message["params"].get("url"))
    return urls


def off_machine(urls: list[str]) -> list[str]:
    """The URLs that would have left the machine (data:, blob: and loopback stay)."""
    return [url for url in urls if urlsplit(url).scheme in ("http", "https", "ws", "wss")
            and urlsplit(url).hostname not in ("127.0.0.1", "localhost", "::1")]  # fmt: skip


# marimo renders outputs inside shadow roots: search them all.
DEEP = """
const deep = (root, selector, found = []) => {
    root.querySelectorAll(selector).forEach(element => found.push(element));
    root.querySelectorAll('*').forEach(element => element.shadowRoot && deep(element.shadowRoot, selector, found));
    return found;
};
"""
# Each drawn Vega chart (SVG): its title, its texts and how many marks it drew.
CHARTS = (
    DEEP
    + """
return deep(document, 'svg.marks').map(svg => ({
    title: svg.querySelector('.role-title-text')?.textContent || '',
    texts: [...svg.querySelectorAll('text')].map(text => text.textContent),
    marks: svg.querySelectorAll('g[class*="mark-"] path').length,
}));
"""
)


def charts(driver: webdriver.Chrome) -> dict[str, dict]:
    """title -> {"texts": [...], "marks": n} of every chart drawn so far."""
    return {chart["title"]: chart for chart in driver.execute_script(CHARTS)}


def wait_for_charts(driver: webdriver.Chrome, titles: set[str], timeout: float = 60) -> float:
    """Seconds until every chart titled as in `titles` is drawn with at least one mark."""
    started = time.monotonic()
    while not titles <= {title for title, chart in charts(driver).items() if chart["marks"] > 0}:
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not drawn after {timeout} s: {titles - set(charts(driver))}")
        time.sleep(0.05)
    return time.monotonic() - started


def deep_elements(driver: webdriver.Chrome, selector: str) -> list:
    """Elements matching `selector` anywhere in the page, shadow roots included."""
    return driver.execute_script(DEEP + "return deep(document, arguments[0]);", selector)


def page_text(driver: webdriver.Chrome) -> str:
    """All text of the page, shadow roots included (read in one go: marimo re-renders elements often)."""
    return driver.execute_script(
        DEEP + "return [document.body.innerText, ...deep(document, '*').filter(e => e.shadowRoot)"
        ".map(e => e.shadowRoot.textContent)].join('\\n');"
    )
