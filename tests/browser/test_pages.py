"""The storefront's HTML pages, in a real headless Chromium against a real cluster.

Browsers get pages; every other client keeps the JSON API exactly as it was.
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
import requests
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from bazar.frontend.pages import wants_html
from tests.browser.conftest import admin_headers, open_dashboard

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"  # Chromium's
TOPICS = ["distributed systems", "undergraduate school"]
UNDERGRADUATE_TITLES = [
    "Xen and the Art of Surviving Undergraduate School",
    "Cooking for the Impatient Undergrad",
    "How to finish Project 3 on time",
    "Why theory classes are so hard",
    "Spring in the Pioneer Valley",
]
# Each test that buys uses its own book, so the tests on the shared cluster stay independent.
BOOK_BOUGHT_IN_BROWSER = 1
BOOK_BOUGHT_TWICE_BY_FORM = 2
BOOK_BOUGHT_FROM_HOME = 4
BOOK_BOUGHT_FROM_SEARCH = 5
BOOK_OUT_OF_STOCK = 6
BOOK_SOLD_OUT = 7
ALL_BOOKS = range(1, 8)
STOREFRONT_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "storefront.png"
# Every listed book, as the page shows it (read in one script, so the page cannot change under it).
SHELF_ROWS = """return Array.from(document.querySelectorAll(arguments[0] + ' li.book'), li => ({
    id: Number(li.dataset.book), title: li.querySelector('.title').innerText.trim(),
    price: li.querySelector('.price').innerText.trim(), stock: li.querySelector('.stock').innerText.trim(),
    buttons: li.querySelectorAll('form button').length,
    action: (li.querySelector('form') || {}).action || null}))"""


# -- helpers --------------------------------------------------------------------

def eventually(condition, timeout: float = 5.0, message: str = "condition"):
    """Poll `condition()` until it is truthy and return its value; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{message}: not within {timeout:g} s")
        time.sleep(0.1)


def stock(store: str, book_id: int) -> int:
    """The book's stock as the catalog's leader has it (a linearizable read)."""
    response = requests.get(f"{store}/info/{book_id}", params={"consistency": "strong"}, timeout=10)
    response.raise_for_status()
    return response.json()["stock"]


def set_stock(store: str, book_id: int, count: int) -> None:
    response = requests.put(f"{store}/books/{book_id}", json={"stock": count}, headers=admin_headers(store),
                            timeout=10)
    response.raise_for_status()


def book(store: str, book_id: int) -> dict:
    """The book as the catalog's leader has it (a linearizable read)."""
    response = requests.get(f"{store}/info/{book_id}", params={"consistency": "strong"}, timeout=10)
    response.raise_for_status()
    return response.json()


def shelf(browser, container: str) -> dict[int, dict]:
    """The books listed inside `container` on the open page, by id."""
    return {row["id"]: row for row in browser.run_script(SHELF_ROWS, container)}


def assert_shows(row: dict, expected: dict, store: str) -> None:
    """A listed book shows its title and price, says whether it is in stock, and has a Buy
    button (posting to its purchase) exactly when it is."""
    assert row["title"] == expected["title"]
    assert row["price"] == f"${expected['price']:.2f}"
    if expected["stock"] > 0:
        assert (row["stock"], row["buttons"]) == ("In stock", 1), row
        assert row["action"] == f"{store}/purchase/{expected['id']}"
    else:
        assert (row["stock"], row["buttons"], row["action"]) == ("Out of stock", 0, None), row


def order_ids(store: str) -> set[str]:
    response = requests.get(f"{store}/orders", params={"limit": 1000}, headers=admin_headers(store), timeout=10)
    response.raise_for_status()
    return {order["order_id"] for order in response.json()["orders"]}


def group_rows(group: str) -> str:
    return f"section[data-group={group}] tr[data-node]"


def role_of(browser, node_id: str) -> str:
    return browser.text(f"tr[data-node={node_id}] td[data-field=role]")


def leaders_shown(browser, group: str) -> list[str]:
    return browser.texts(f"section[data-group={group}] tr.leader td[data-field=id]")


# -- content negotiation --------------------------------------------------------

@pytest.mark.parametrize("accept, html", [
    (None, False),
    ("*/*", False),
    ("application/json", False),
    ("text/html, application/json", False),  # a tie goes to JSON
    ("application/json;q=0.5, text/html", True),
    ("text/html", True),
    (BROWSER_ACCEPT, True),
])
def test_only_clients_preferring_html_get_pages(accept, html):
    headers = {"Accept": accept} if accept else {}
    assert wants_html(Request(EnvironBuilder(headers=headers).get_environ())) is html


@pytest.mark.parametrize("accept", ["*/*", "application/json"])
def test_the_json_api_is_unchanged_for_api_clients(store, accept):
    def get(path: str) -> requests.Response:
        response = requests.get(store + path, headers={"Accept": accept, **admin_headers(store)}, timeout=10)
        assert response.headers["Content-Type"] == "application/json", path
        return response

    search = get("/search/distributed%20systems").json()
    assert search["topic"] == "distributed systems"
    assert [item["id"] for item in search["items"]] == [1, 2]
    assert set(get("/info/3").json()) == {"id", "title", "topic", "price", "stock"}
    assert get("/info/999").json() == {"error": "no book with id 999"}
    assert get("/no/such/page").status_code == 404
    assert "orders" in get("/orders").json()
    assert set(get("/cluster").json()["groups"]) == {"catalog", "order"}
    assert "endpoints" in get("/").json()

    bought = requests.post(f"{store}/purchase/3", headers={"Accept": accept}, timeout=10)
    assert bought.headers["Content-Type"] == "application/json"
    assert set(bought.json()) == {"order_id", "id", "title", "price"}
    bare_form = requests.post(f"{store}/purchase/3", data="", timeout=10,
                              headers={"Accept": accept, "Content-Type": "application/x-www-form-urlencoded"})
    assert bare_form.headers["Content-Type"] == "application/json"


# -- shopping in the browser ----------------------------------------------------

def test_home_shows_every_book_with_its_price_stock_and_a_buy_button(browser, store):
    books = {book_id: book(store, book_id) for book_id in ALL_BOOKS}
    browser.open(store + "/")
    assert browser.texts("#topics li") == TOPICS
    rows = shelf(browser, "main")
    assert sorted(rows) == list(ALL_BOOKS)
    for book_id, row in rows.items():
        assert_shows(row, books[book_id], store)
    for topic in TOPICS:  # each topic's books on its own shelf
        titles = {b["title"] for b in books.values() if b["topic"] == topic}
        assert set(browser.texts(f"section[data-topic='{topic}'] li.book .title")) == titles
    assert sum(row["buttons"] for row in rows.values()) >= 5  # the books no test sold out


def test_buying_from_the_home_page_takes_two_clicks_to_the_order(browser, store):
    book_id = BOOK_BOUGHT_FROM_HOME
    before = book(store, book_id)
    browser.open(store + "/")

    browser.click_and_load(f"li.book[data-book='{book_id}'] button")  # click 1: buy
    assert browser.url == f"{store}/purchase/{book_id}"
    order_id = browser.text("#order-id")
    assert browser.text("#title") == before["title"]
    assert browser.text("#price") == f"${before['price']:.2f}"
    assert stock(store, book_id) == before["stock"] - 1

    browser.click_and_load("#order-link")  # click 2: the order
    assert browser.url == f"{store}/orders/{order_id}"
    assert browser.text("#order-id") == order_id
    assert browser.text("#status") == "completed"
    assert browser.text("#title") == before["title"]
    assert browser.text("#price") == f"${before['price']:.2f}"
    recorded = requests.get(f"{store}/orders/{order_id}", timeout=10).json()  # the API's view
    assert (recorded["status"], recorded["id"]) == ("completed", book_id)


def test_a_topic_found_from_the_home_page_is_bought_from_its_search_in_two_clicks(browser, store):
    book_id = BOOK_BOUGHT_FROM_SEARCH
    before = book(store, book_id)
    browser.open(store + "/")

    browser.click_and_load("#topics li:nth-child(2) a")  # click 1: the topic
    assert browser.url == store + "/search/undergraduate%20school"
    rows = shelf(browser, "#results")
    assert sorted(row["title"] for row in rows.values()) == sorted(UNDERGRADUATE_TITLES)
    for row_id, row in rows.items():
        assert_shows(row, book(store, row_id), store)

    browser.click_and_load(f"#results li.book[data-book='{book_id}'] button")  # click 2: buy
    order_id = browser.text("#order-id")
    assert browser.text("#title") == before["title"]
    eventually(lambda: order_id in order_ids(store), message=f"order {order_id} in GET /orders")
    assert stock(store, book_id) == before["stock"] - 1


def test_an_out_of_stock_book_says_so_and_offers_no_button(browser, store, tmp_path):
    book_id = BOOK_OUT_OF_STOCK
    set_stock(store, book_id, 0)
    try:
        sold_out = book(store, book_id)
        for page, container in (("/", "main"), ("/search/undergraduate%20school", "#results")):
            browser.open(store + page)
            rows = shelf(browser, container)
            assert_shows(rows[book_id], sold_out, store)
            assert rows[3]["buttons"] == 1, page  # the other books still sell
            if page == "/":  # the docs/ picture of the shop: books in stock and one sold out
                shot = (STOREFRONT_SCREENSHOT if os.environ.get("BAZAR_UPDATE_SCREENSHOT") == "1"
                        else tmp_path / "storefront.png")
                browser.screenshot(shot, whole_page=True)

        browser.open(f"{store}/info/{book_id}")
        assert browser.count("#buy") == 0 and browser.count("form[action^='/purchase']") == 0
        assert "out of stock" in browser.text("#sold-out")
    finally:
        set_stock(store, book_id, 100)


def test_search_finds_a_topics_books_from_the_search_box(browser, store):
    browser.open(store + "/")
    browser.type("#search-form input[name=q]", "undergraduate school")
    browser.click_and_load("#search-form button")
    assert browser.url == store + "/search/undergraduate%20school"
    assert sorted(browser.texts("#results li .title")) == sorted(UNDERGRADUATE_TITLES)

    browser.click_and_load("#results li:first-child a.title")
    assert re.fullmatch(rf"{re.escape(store)}/info/\d+", browser.url)
    assert browser.text("#title") in UNDERGRADUATE_TITLES
    assert browser.text("#topic") == "undergraduate school"


def test_buying_from_a_book_page_records_one_order(browser, store, tmp_path):
    book = BOOK_BOUGHT_IN_BROWSER
    before = stock(store, book)
    browser.open(f"{store}/info/{book}")
    assert browser.text("#title") == "How to get a good grade in DOS in 40 minutes a day"
    assert browser.text("#price") == "$25.00"
    assert browser.text("#stock") == str(before)
    browser.screenshot(tmp_path / "book.png")

    browser.click_and_load("#buy")
    order_id = browser.text("#order-id")
    assert browser.text("#title") == "How to get a good grade in DOS in 40 minutes a day"
    assert browser.text("#price") == "$25.00"
    eventually(lambda: order_id in order_ids(store), message=f"order {order_id} in GET /orders")
    assert stock(store, book) == before - 1


def test_buying_a_book_that_sold_out_meanwhile_shows_the_out_of_stock_page(browser, store):
    book = BOOK_SOLD_OUT
    browser.open(f"{store}/info/{book}")
    set_stock(store, book, 0)

    browser.click_and_load("#buy")
    assert "out of stock" in browser.text("#out-of-stock")
    assert "Spring in the Pioneer Valley" in browser.text("main")
    assert stock(store, book) == 0

    answer = requests.post(f"{store}/purchase/{book}", data={"idempotency_key": "sold-out-check"},
                           headers={"Accept": BROWSER_ACCEPT}, timeout=10)
    assert answer.status_code == 409
    assert answer.headers["Content-Type"].startswith("text/html")


def test_a_buy_form_submitted_twice_buys_once(store):
    book = BOOK_BOUGHT_TWICE_BY_FORM
    before = stock(store, book)
    page = requests.get(f"{store}/info/{book}", headers={"Accept": BROWSER_ACCEPT}, timeout=10).text
    key = re.search(r'name="idempotency_key" value="([^"]+)"', page).group(1)

    def submit() -> str:
        answer = requests.post(f"{store}/purchase/{book}", data={"idempotency_key": key},
                               headers={"Accept": BROWSER_ACCEPT}, timeout=10)
        assert answer.status_code == 200
        return re.search(r'id="order-id">([^<]+)<', answer.text).group(1)

    assert submit() == submit() == key
    assert stock(store, book) == before - 1


@pytest.mark.parametrize("path, status, title", [
    ("/info/999", 404, "Not found"),
    ("/info/not-a-number", 400, "Bad request"),
    ("/no/such/page", 404, "Not found"),
])
def test_errors_are_small_html_pages_for_browsers(browser, store, path, status, title):
    answer = requests.get(store + path, headers={"Accept": BROWSER_ACCEPT}, timeout=10)
    assert answer.status_code == status
    assert answer.headers["Content-Type"].startswith("text/html")
    assert "Traceback" not in answer.text

    browser.open(store + path)
    assert browser.text("#error-title") == title


# -- the dashboard ----------------------------------------------------------------

def test_dashboard_shows_every_node_and_one_leader_per_group(browser, store, tmp_path):
    open_dashboard(browser, store, operator=True)
    browser.wait_until(lambda: browser.count("tr[data-node]") == 6, 5, "six nodes on the dashboard")
    for group in ("catalog", "order"):
        assert browser.count(group_rows(group)) == 3
        assert len(leaders_shown(browser, group)) == 1
        assert browser.texts(f"section[data-group={group}] td[data-field=reachable]") == ["yes"] * 3
        assert all(text.isdigit() for text in browser.texts(f"section[data-group={group}] td[data-field=commit_index]"))
        assert browser.count(f"section[data-group={group}] td[data-field=applied_index]") == 3
    assert browser.text("#ready") == "ready"
    assert browser.text("#frontend-id") == "frontend1"
    assert browser.text("#frontend dd[data-field=caught_up]") == "yes"
    assert browser.text("#frontend dd[data-field=applied_index]").isdigit()
    assert browser.text("#cache dd[data-field=size]").endswith(" / 1000")
    assert browser.run_script("return document.querySelectorAll('[data-chart] svg rect.frame').length") == 4
    browser.screenshot(tmp_path / "dashboard.png")


def test_the_public_dashboard_shows_health_and_no_number(browser, store):
    """Without the admin token the dashboard shows who leads and who is up, and no index,
    counter or chart: numbers that grow with the sales are the operator's. A wrong token
    is refused, said so, and forgotten."""
    open_dashboard(browser, store, operator=False)
    browser.wait_until(lambda: browser.count("tr[data-node]") == 6, 5, "six nodes on the public dashboard")
    for group in ("catalog", "order"):
        assert len(leaders_shown(browser, group)) == 1
        assert browser.texts(f"section[data-group={group}] td[data-field=reachable]") == ["yes"] * 3
    assert browser.text("#ready") == "ready" and browser.text("#view") == "public view"
    assert browser.texts("#frontend dt") == ["Caught up"]
    for hidden in ("#charts-card", "#cache"):
        assert not browser.run_script("return document.querySelector(arguments[0]).checkVisibility()", hidden)
    cells = browser.run_script("return Array.from(document.querySelectorAll('#groups td'), "
                               "td => [td.dataset.field, td.innerText.trim()])")
    assert {field for field, _ in cells} == {"id", "role", "reachable"}
    assert {text for field, text in cells if field != "id"} <= {"leader", "follower", "yes"}, cells

    browser.type("#admin-token", "not-the-token")
    browser.driver.find_element(browser._by_css, "#use-token").click()
    browser.wait_until(lambda: "refused" in browser.text("#view-note"), 5, "the wrong token is refused")
    assert browser.text("#view") == "public view"
    assert browser.run_script("return sessionStorage.length") == 0


def test_dashboard_shows_a_killed_leader_down_without_reloading(browser, own_cluster):
    browser.open(own_cluster.frontend_url + "/dashboard")
    old_leader = browser.wait_until(lambda: leaders_shown(browser, "catalog"), 5, "a catalog leader")[0]
    browser.run_script("window.stillTheSamePage = true")

    own_cluster.kill(old_leader)

    browser.wait_until(lambda: role_of(browser, old_leader) == "DOWN", 5, f"{old_leader} shown DOWN")
    new_leaders = browser.wait_until(lambda: leaders_shown(browser, "catalog"), 10, "a new catalog leader")
    assert new_leaders != [old_leader]
    assert browser.run_script("return window.stillTheSamePage === true"), "the dashboard reloaded"
