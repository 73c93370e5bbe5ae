"""A real headless Chromium for the storefront's browser tests.

Chromium and its driver come from Debian (`apt-get install chromium
chromium-driver`) and Selenium from pip (the "test" extra in setup.py);
nothing is downloaded at test time. When any of them is missing the tests
fail and say what to install: a storefront nobody has looked at in a browser
must not pass quietly.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
import requests

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1200,900",
]
INSTALL_HINT = ("install the browser with `apt-get install -y chromium chromium-driver` and Selenium "
                "with `pip install -e .[test]`")


class Browser:
    """One headless Chromium tab, with the few verbs the storefront tests need."""

    def __init__(self, driver) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver = driver
        self._by_css = By.CSS_SELECTOR
        self._wait = WebDriverWait

    def open(self, url: str) -> None:
        """Load `url` and return once the page has loaded."""
        self.driver.get(url)

    @property
    def url(self) -> str:
        return self.driver.current_url

    @property
    def title(self) -> str:
        return self.driver.title

    def texts(self, css: str) -> list[str]:
        """The visible text of every element matching `css`, in page order.

        Read in one script, so a page that re-renders itself cannot change under the read.
        """
        return self.run_script(
            "return Array.from(document.querySelectorAll(arguments[0]), e => e.innerText.trim())", css)

    def text(self, css: str) -> str:
        """The visible text of the first element matching `css`; fails if there is none."""
        found = self.texts(css)
        assert found, f"nothing on {self.url} matches {css!r}"
        return found[0]

    def count(self, css: str) -> int:
        return len(self.texts(css))

    def type(self, css: str, text: str) -> None:
        field = self.driver.find_element(self._by_css, css)
        field.clear()
        field.send_keys(text)

    def click_and_load(self, css: str) -> None:
        """Click `css` (a link or a submit button) and wait until the next page has loaded."""
        old_page = self.driver.find_element(self._by_css, "html")
        self.driver.find_element(self._by_css, css).click()
        self.wait_until(lambda: _is_stale(old_page), 10, f"no new page after clicking {css}")
        self.wait_until(lambda: self.run_script("return document.readyState") == "complete", 10,
                        f"the page after clicking {css} did not finish loading")

    def run_script(self, source: str, *args):
        return self.driver.execute_script(source, *args)

    def wait_until(self, condition, timeout: float, message: str):
        """Poll `condition()` until it is truthy and return its value; fail with `message` after `timeout` s."""
        return self._wait(self.driver, timeout, poll_frequency=0.1).until(
            lambda _driver: condition(), message)

    def screenshot(self, path: Path, whole_page: bool = False) -> Path:
        """Save what the window shows as a PNG; with `whole_page`, the window is first made as
        tall as the page (and then given its size back), so nothing below the fold is cut."""
        if not whole_page:
            self.driver.save_screenshot(str(path))
            return path
        size = self.driver.get_window_size()
        chrome = size["height"] - self.run_script("return window.innerHeight")
        height = self.run_script("return document.documentElement.scrollHeight")
        self.driver.set_window_size(size["width"], height + chrome)
        try:
            self.driver.save_screenshot(str(path))
        finally:
            self.driver.set_window_size(size["width"], size["height"])
        return path


def _is_stale(element) -> bool:
    """Whether `element` is gone from the window's document (a new page replaced it).
    Chrome says so in two ways: a stale reference, or, asked while the new page is being
    put in place, an inspector error that the node "does not belong to the document"
    (CI, 2026-12-07: test_buying_from_a_book_page_records_one_order failed on it)."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

    try:
        element.tag_name
    except StaleElementReferenceException:
        return True
    except WebDriverException as error:
        if "does not belong to the document" in str(error):
            return True
        raise
    return False


def _missing_prerequisites() -> list[str]:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium Python package")
    return missing


def _start_chromium(profile: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium with a fresh profile, quit and wiped after the module.

    Fails (never skips) when Chromium, chromedriver or Selenium is missing.
    """
    missing = _missing_prerequisites()
    if missing:
        pytest.fail(f"browser tests need {', '.join(missing)}: {INSTALL_HINT}", pytrace=False)
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never download a driver
    profile = tempfile.mkdtemp(prefix="bazar-chromium-")
    try:
        try:
            driver = _start_chromium(profile)
        except Exception as exc:  # the driver's own message says what went wrong
            pytest.fail(f"could not start headless Chromium: {exc}", pytrace=False)
        try:
            yield Browser(driver)
        finally:
            driver.quit()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


# The admin headers of each storefront the fixtures hand out, by its base URL: the tests'
# helpers set stock and list orders (admin routes) knowing only the URL.
ADMIN_HEADERS: dict[str, dict[str, str]] = {}


def admin_headers(store: str) -> dict[str, str]:
    """What an admin request to the storefront at `store` sends."""
    return ADMIN_HEADERS[store]


def open_dashboard(browser: Browser, store: str, operator: bool) -> None:
    """Open `store`'s /dashboard in a tab that holds no admin token; as the `operator`, type
    the store's admin token into the page's form, as an operator does, and wait for the
    operator view (charts, indexes, counters)."""
    browser.open(store + "/dashboard")
    browser.run_script("sessionStorage.clear()")  # the module's earlier tests may have left one
    browser.open(store + "/dashboard")
    if not operator:
        return
    token = admin_headers(store)["Authorization"].removeprefix("Bearer ")
    browser.wait_until(lambda: browser.run_script("return !document.getElementById('operator').hidden"), 5,
                       "the admin token form is shown")
    browser.type("#admin-token", token)
    browser.driver.find_element(browser._by_css, "#use-token").click()
    browser.wait_until(lambda: browser.text("#view") == "operator view", 10, "the operator view")


def _require_pages(frontend_url: str) -> None:
    """Fail clearly when the frontend does not serve HTML pages (frontend/pages.py not wired in)."""
    response = requests.get(frontend_url + "/", headers={"Accept": "text/html"}, timeout=5)
    if not response.headers.get("Content-Type", "").startswith("text/html"):
        pytest.fail("the frontend answers browsers without HTML pages: wire frontend/pages.py into "
                    "frontend/app.py as in frontend/app_with_pages.py.example", pytrace=False)


@pytest.fixture(scope="module")
def store(shared_cluster) -> str:
    """The base URL of the shared cluster's storefront, which serves HTML pages."""
    _require_pages(shared_cluster.frontend_url)
    ADMIN_HEADERS[shared_cluster.frontend_url] = shared_cluster.admin_headers
    return shared_cluster.frontend_url


@pytest.fixture
def own_cluster(make_cluster):
    """A fresh 3+3+1 cluster for one test that may break it; its frontend serves HTML pages."""
    cluster = make_cluster()
    _require_pages(cluster.frontend_url)
    ADMIN_HEADERS[cluster.frontend_url] = cluster.admin_headers
    return cluster
