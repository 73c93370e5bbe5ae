"""The dashboard's live charts in headless Chromium: they render, they move when load
arrives, and a leader change is marked on the time axis. The screenshot the README shows
(docs/dashboard.png) is taken here, with the load running after the failover; a run
writes it there only with BAZAR_UPDATE_SCREENSHOT=1 (otherwise into the test's temporary
directory), so the suite leaves the checkout as it found it.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.browser.conftest import open_dashboard

ROOT = Path(__file__).resolve().parents[2]
README_SCREENSHOT = ROOT / "docs" / "dashboard.png"
CHARTS = ("rps", "latency", "commit", "hits")


class Load:
    """Store traffic from a thread: cached reads and, every tenth request, a purchase."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Load":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            try:
                if self.sent % 10 == 9:
                    session.post(f"{self.url}/purchase/{1 + self.sent % 7}", timeout=5)
                else:
                    session.get(f"{self.url}/info/{1 + self.sent % 7}", timeout=5)
            except requests.RequestException:
                time.sleep(0.05)  # a failover in progress
            self.sent += 1
            time.sleep(0.01)


def count(browser, css: str) -> int:
    """How many elements match `css` (SVG ones included, which have no innerText)."""
    return browser.run_script("return document.querySelectorAll(arguments[0]).length", css)


def latest(browser, chart: str) -> str:
    return browser.text(f'[data-latest="{chart}"]')


def first_number(text: str) -> float | None:
    head = text.split()[0]
    return None if head == "\u2014" else float(head)


def path_of(browser, chart: str, series: int = 0) -> str:
    return browser.run_script(
        "const p = document.querySelector(`[data-chart='${arguments[0]}'] path[data-series='${arguments[1]}']`);"
        "return p ? p.getAttribute('d') : null", chart, str(series))


@pytest.mark.timeout(180)
def test_charts_render_move_under_load_and_mark_leader_changes(browser, own_cluster, tmp_path):
    cluster = own_cluster
    browser.driver.set_window_size(1280, 1500)
    open_dashboard(browser, cluster.frontend_url, operator=True)  # the charts are the operator's
    for chart in CHARTS:  # drawn at once: a frame, axes, one path per series
        browser.wait_until(lambda: count(browser, f'[data-chart="{chart}"] svg rect.frame') == 1, 10,
                           f"the {chart} chart is drawn")
    browser.wait_until(lambda: first_number(latest(browser, "rps")) is not None, 10, "a first request rate")
    idle_rate = first_number(latest(browser, "rps"))
    assert idle_rate < 5, idle_rate  # nothing but this page's own polling, which is not counted
    idle_path = path_of(browser, "rps")

    with Load(cluster.frontend_url) as load:
        browser.wait_until(lambda: (first_number(latest(browser, "rps")) or 0) > 10, 20,
                           "the request rate rises under load")
        assert path_of(browser, "rps") != idle_path
        browser.wait_until(lambda: first_number(latest(browser, "latency")) is not None, 10, "a p50 under load")
        browser.wait_until(lambda: (first_number(latest(browser, "hits")) or 0) > 50, 10,
                           "cached reads hit the cache")
        browser.wait_until(lambda: "\u2014" not in latest(browser, "commit").split("/")[1], 10,
                           "an order commit latency (purchases commit in the order group)")
        assert path_of(browser, "latency", 1)  # p99 drawn beside p50
        assert count(browser, ".leader-change") == 0

        old = cluster.leader("catalog")
        cluster.kill(old)
        browser.wait_until(lambda: count(browser, '.leader-change[data-group="catalog"]') >= 1, 20,
                           "the catalog leader change is marked")
        time.sleep(4)  # the load goes on after the failover: what the screenshot shows
        shot = README_SCREENSHOT if os.environ.get("BAZAR_UPDATE_SCREENSHOT") == "1" else tmp_path / "dashboard.png"
        shot.parent.mkdir(exist_ok=True)
        browser.screenshot(shot)
        assert load.sent > 100
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
