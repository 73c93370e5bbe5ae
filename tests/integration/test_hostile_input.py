"""Hostile input at the frontend and at a replica: a JSON error, the right status, nothing changed.

Each case here was answered wrongly before (a 500, a parsed cross-site form, a
body parsed before the admin check, a page with no framing or script policy).
"""
from __future__ import annotations

import json
import re
import socket
import time
import urllib.parse
from pathlib import Path

import pytest
import requests

from tests.integration.probes import running_cluster

ADMIN_TOKEN = "hostile-input-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    # The token as a file (as a Docker secret would be), not in the environment: every admin
    # check below then also shows that the frontend reads it from there.
    directory = tmp_path_factory.mktemp("hostile")
    token_file = directory / "admin-token"
    token_file.write_text(ADMIN_TOKEN + "\n")
    with running_cluster(directory, env={"BAZAR_ADMIN_TOKEN": "", "BAZAR_ADMIN_TOKEN_FILE": str(token_file)},
                         catalog=1, order=1) as local:
        yield local


def _catalog_url(cluster) -> str:
    return cluster.config.catalog[0].http.url


def _where(cluster, where: str):
    """The URL to attack and how to sign: a replica is attacked as its own peers reach it."""
    return (cluster.frontend_url, None) if where == "frontend" else (_catalog_url(cluster), cluster.peer_auth)


def _book(cluster, book_id: int = 1) -> dict:
    return requests.get(f"{cluster.frontend_url}/info/{book_id}?consistency=strong", timeout=10).json()


def _book_count(cluster) -> int:
    return len(requests.get(f"{_catalog_url(cluster)}/books", timeout=10, auth=cluster.peer_auth).json()["books"])


def _assert_json_error(response: requests.Response, status: int) -> None:
    assert response.status_code == status, (response.status_code, response.text[:200])
    assert response.headers["Content-Type"].startswith("application/json")
    assert isinstance(response.json()["error"], str)


@pytest.mark.parametrize("where", ["frontend", "replica"])
def test_a_cross_site_form_body_cannot_add_a_book(cluster, where):
    """A form on another site can post text/plain or form bodies, never application/json."""
    url, auth = _where(cluster, where)
    before = _book_count(cluster)
    body = '{"title": "Forged", "topic": "x", "price": 1, "stock": 1}'
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {**ADMIN, **({"Content-Type": content_type} if content_type else {})}
        _assert_json_error(requests.post(f"{url}/books", data=body, headers=headers, timeout=10, auth=auth), 415)
    assert _book_count(cluster) == before


@pytest.mark.parametrize("where", ["frontend", "replica"])
def test_deep_nesting_and_huge_numbers_are_400_not_500(cluster, where):
    url, auth = _where(cluster, where)
    before = _book(cluster)
    bodies = ["[" * 30000 + "]" * 30000,
              '{"stock": ' + "[" * 40 + "1" + "]" * 40 + "}",
              '{"stock": ' + "9" * 5000 + "}",
              '{"price": ' + "1" * 400 + ".5}",
              '{"price": NaN}', '{"price": Infinity}',
              '{"stock": 1',                       # truncated
              b'{"title": "\xff\xfe"}']           # not UTF-8
    for body in bodies:
        response = requests.put(f"{url}/books/1", data=body, headers={**ADMIN, **JSON}, timeout=10,
                                auth=auth)
        _assert_json_error(response, 400)
    assert _book(cluster) == before


def test_a_huge_or_malformed_min_index_is_400_at_a_replica(cluster):
    """`min_index` is a log index: 5,000 digits once reached int()'s digit limit (a 500)."""
    url, auth = _where(cluster, "replica")
    for path in ("/books/1", "/search/distributed%20systems", "/topics"):
        for raw in ("9" * 19, "9" * 5000, "-1", "1e3", "0x10", "%EF%BC%91"):   # the last: a full-width 1
            response = requests.get(f"{url}{path}?min_index={raw}", timeout=10, auth=auth)
            _assert_json_error(response, 400)
        assert requests.get(f"{url}{path}?min_index=0", timeout=10, auth=auth).status_code == 200, path


def test_brackets_inside_strings_do_not_count_as_nesting(cluster):
    title = "[" * 100 + "{" * 100
    response = requests.post(f"{cluster.frontend_url}/books", headers=ADMIN, timeout=10,
                             json={"title": title, "topic": "nesting", "price": 1, "stock": 0})
    assert response.status_code == 201, response.text
    assert response.json()["title"] == title


def test_the_frontend_checks_the_admin_token_before_it_reads_the_body(cluster):
    before = _book(cluster)
    response = requests.put(f"{cluster.frontend_url}/books/1", data="not json at all", headers=JSON, timeout=10)
    _assert_json_error(response, 401)
    assert response.headers["WWW-Authenticate"] == "Bearer"
    response = requests.post(f"{cluster.frontend_url}/books", data="[" * 30000, headers=JSON, timeout=10)
    _assert_json_error(response, 401)
    assert _book(cluster) == before


def test_pages_carry_a_script_policy_and_refuse_framing(cluster):
    for path in ("/", "/info/1", "/search/distributed%20systems", "/orders/no-such-order", "/dashboard",
                 "/no-such-page"):
        response = requests.get(cluster.frontend_url + path, headers={"Accept": "text/html"}, timeout=10)
        assert response.headers["Content-Type"].startswith("text/html"), path
        policy = response.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in policy and "default-src 'none'" in policy, path
        assert response.headers["X-Content-Type-Options"] == "nosniff", path
        assert response.headers["X-Frame-Options"] == "DENY", path
        nonce = re.search(r"'nonce-([^']+)'", policy).group(1)
        tags = re.findall(r"<(script|style)\b([^>]*)>", response.text)
        executable = [attrs for tag, attrs in tags if 'type="application/json"' not in attrs]
        assert executable, path
        assert all(f'nonce="{nonce}"' in attrs for attrs in executable), (path, executable)
    nonces = [re.search(r"'nonce-([^']+)'", requests.get(cluster.frontend_url + "/", timeout=10,
                        headers={"Accept": "text/html"}).headers["Content-Security-Policy"]).group(1)
              for _ in range(2)]
    assert nonces[0] != nonces[1], "a nonce must not repeat"
    api = requests.get(f"{cluster.frontend_url}/info/1", timeout=10)
    assert api.headers["X-Content-Type-Options"] == "nosniff"


def test_markup_in_a_book_is_shown_as_text_on_every_page_that_lists_it(cluster):
    """An admin's typo or a stolen token must not put markup into the shop: titles and topics
    are escaped wherever they appear (home, search, the book, the confirmation, the order)."""
    title, topic = "<img src=x onerror=alert(1)>", "<script>alert(2)</script>"
    added = requests.post(f"{cluster.frontend_url}/books", json={"title": title, "topic": topic, "price": 3,
                                                                 "stock": 5}, headers=ADMIN, timeout=10)
    assert added.status_code == 201, added.text
    book_id = added.json()["id"]
    bought = requests.post(f"{cluster.frontend_url}/purchase/{book_id}", data={"idempotency_key": "markup-1"},
                           headers={"Accept": "text/html"}, timeout=10)
    assert bought.status_code == 200, bought.text[:300]
    pages = {"/": None, "/search/" + urllib.parse.quote(topic, safe=""): None, f"/info/{book_id}": None,
             "/orders/markup-1": None}
    for path in pages:
        response = requests.get(cluster.frontend_url + path, headers={"Accept": "text/html"}, timeout=10)
        assert response.status_code == 200, (path, response.text[:300])
        pages[path] = response.text
    pages["purchase"] = bought.text
    for path, html in pages.items():
        assert "<img src=x" not in html and "<script>alert" not in html, path
        assert "&lt;img src=x onerror=alert(1)&gt;" in html, path
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in pages["/"]


def test_a_purchase_form_posted_from_another_site_is_refused(cluster):
    before = _book(cluster, 2)["stock"]
    form = {"idempotency_key": "cross-site-form-1"}
    response = requests.post(f"{cluster.frontend_url}/purchase/2", data=form, timeout=10,
                             headers={"Accept": "text/html", "Origin": "http://evil.example"})
    assert response.status_code == 403
    assert _book(cluster, 2)["stock"] == before
    response = requests.post(f"{cluster.frontend_url}/purchase/2", data=form, timeout=10,
                             headers={"Accept": "text/html", "Origin": cluster.frontend_url})
    assert response.status_code == 200, response.text[:300]
    assert _book(cluster, 2)["stock"] == before - 1


def test_a_purchase_form_through_a_tls_proxy_is_accepted_and_another_site_still_refused(cluster):
    """Behind a TLS-terminating proxy that passes the Host header on, the browser names the
    page https://<host>, while the frontend itself is spoken to in plain HTTP: the same site."""
    host = urllib.parse.urlsplit(cluster.frontend_url).netloc
    before = _book(cluster, 2)["stock"]
    for origin in (f"https://{host.replace('127.0.0.1', 'localhost')}", "https://evil.example", "null"):
        response = requests.post(f"{cluster.frontend_url}/purchase/2", data={"idempotency_key": f"tls-{origin}"},
                                 timeout=10, headers={"Accept": "text/html", "Origin": origin})
        assert response.status_code == 403, (origin, response.status_code)
    assert _book(cluster, 2)["stock"] == before
    response = requests.post(f"{cluster.frontend_url}/purchase/2", data={"idempotency_key": "tls-proxied"},
                             timeout=10, headers={"Accept": "text/html", "Origin": f"https://{host}"})
    assert response.status_code == 200, response.text[:300]
    assert _book(cluster, 2)["stock"] == before - 1


def test_an_order_id_first_used_at_the_catalog_for_another_book_completes_nothing(cluster):
    """Someone who reaches a catalog replica uses order id K for book 2 first; a buyer's
    purchase of book 1 with Idempotency-Key K must not come back completed with book 2."""
    key = "first-used-for-book-2"
    direct = requests.post(f"{_catalog_url(cluster)}/purchase", json={"id": 2, "order_id": key}, timeout=10,
                           auth=cluster.peer_auth)
    assert direct.status_code == 200
    before = _book(cluster, 1)["stock"]
    response = requests.post(f"{cluster.frontend_url}/purchase/1", headers={"Idempotency-Key": key}, timeout=10)
    _assert_json_error(response, 422)
    assert _book(cluster, 1)["stock"] == before
    again = requests.post(f"{_catalog_url(cluster)}/purchase", json={"id": 1, "order_id": key}, timeout=10,
                          auth=cluster.peer_auth)
    _assert_json_error(again, 422)


def test_an_admin_idempotency_key_names_one_book_and_one_operation(cluster):
    key = {"Idempotency-Key": "admin-key-reused", **ADMIN}
    first = requests.put(f"{cluster.frontend_url}/books/3", json={"restock": 2}, headers=key, timeout=10)
    assert first.status_code == 200 and first.json()["id"] == 3
    other_before = _book(cluster, 4)
    for method, path, body in (("PUT", "/books/4", {"restock": 2}), ("PUT", "/books/3", {"price": 9}),
                               ("POST", "/books", {"title": "T", "topic": "t", "price": 1, "stock": 1})):
        response = requests.request(method, cluster.frontend_url + path, json=body, headers=key, timeout=10)
        if path == "/books/3":
            # Same book, same operation (update_book): a retry, answered with the first result.
            assert response.status_code == 200 and response.json() == first.json()
        else:
            _assert_json_error(response, 422)
    assert _book(cluster, 4) == other_before


# -- what a client chooses must not grow what the store keeps ---------------------------------

def _letters(number: int) -> str:
    """`number` written in the letters A-Z (an HTTP method is an uppercase token)."""
    word = ""
    while True:
        number, digit = divmod(number, 26)
        word += chr(ord("A") + digit)
        if not number:
            return word


def _made_up(first: int, count: int) -> list[bytes]:
    """`count` requests, each with a method and a path no client sent before (the last one
    closes the connection)."""
    made = [(f"M{_letters(i)}{'X' * 1000} /nowhere/{i}/{'p' * 500} HTTP/1.1\r\n"
             f"Host: store\r\nContent-Length: 0\r\n\r\n").encode() for i in range(first, first + count)]
    made[-1] = made[-1].replace(b"Host: store", b"Host: store\r\nConnection: close")
    return made


def _pipelined(address: tuple[str, int], sent: list[bytes]) -> list[int]:
    """Send the requests one after another on one connection: the statuses answered."""
    with socket.create_connection(address, timeout=30) as conn:
        conn.sendall(b"".join(sent))
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return [int(status) for status in re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)]


@pytest.mark.parametrize("where", ["frontend", "replica"])
def test_made_up_methods_and_paths_grow_neither_the_metrics_nor_the_log(cluster, where):
    """Every client picks its method and path: counted under fixed labels (`other`,
    `unmatched`) and logged as such, 2,000 distinct ones leave /metrics the size it was
    (counts aside) and add a short line each to the log."""
    process = cluster.config.frontends[0] if where == "frontend" else cluster.config.catalog[0]
    scraper = ADMIN if where == "frontend" else {}  # the frontend's /metrics is the admin's

    def scrape() -> bytes:
        response = requests.get(process.http.url + "/metrics", headers=scraper, timeout=10)
        assert response.status_code == 200, response.text[:200]
        return response.content

    address = (process.http.host, process.http.port)
    _pipelined(address, _made_up(0, 5))  # the series such requests have, made once
    scrape()  # and the scrape's own
    baseline = scrape()
    before = len(baseline)
    log = Path(cluster.log_path(process.id))
    logged_before = log.stat().st_size
    for batch in range(10):
        statuses = _pipelined(address, _made_up(5 + 200 * batch, 200))
        assert len(statuses) == 200 and max(statuses) < 500, statuses[:5]
    after = scrape()
    # A replica's own background calls (the order leader's sweep asks a catalog replica for
    # the purchases it keeps) may add the series of a route of theirs meanwhile: those are
    # not counted. No new series may name a made-up method or path.
    known = {_series(line) for line in baseline.decode().splitlines()}
    added = [line for line in after.decode().splitlines()
             if line.startswith("bazar_") and _series(line) not in known]
    assert not [line for line in added if "nowhere" in line or _route_of(line) not in OWN_BACKGROUND_ROUTES], \
        added[:3]
    growth = len(after) - before - sum(len(line) + 1 for line in added)
    assert growth < 1000, f"/metrics grew by {growth} bytes"
    time.sleep(0.5)  # access lines are written a batch every 50 ms
    logged = log.stat().st_size - logged_before
    assert logged < 2000 * 300, f"2,000 requests added {logged} bytes to the log"


OWN_BACKGROUND_ROUTES = {"/unrecorded", "/recorded", "/records", "/status", "/members"}


def _series(line: str) -> str:
    """A metrics line without its value: the series it is a sample of."""
    return line.rsplit(" ", 1)[0]


def _route_of(line: str) -> str | None:
    """The route label of a metrics line, if it has one."""
    found = re.search(r'route="([^"]*)"', line)
    return found.group(1) if found else None


def _get_raw(url: str, path: str) -> tuple[int, bytes]:
    """GET `path` exactly as written (requests, like browsers, would remove dot segments)."""
    address = urllib.parse.urlsplit(url)
    with socket.create_connection((address.hostname, address.port), timeout=30) as conn:
        conn.sendall(f"GET {path} HTTP/1.1\r\nHost: {address.netloc}\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@pytest.mark.parametrize("path", ["/search/..", "/search/%2E%2E", "/orders/..", "/orders/%2e", "/search/a%2F.."])
def test_a_dot_segment_is_refused_at_the_frontend_and_never_signed_for_a_replica(cluster, path):
    """Such a path was signed as written, sent without its dots by urllib3, refused by every
    replica, and retried as if they were down (503 after the whole deadline, hundreds of log
    lines). Now: 400 at once, and no replica refuses anything."""
    frontend = cluster.config.frontends[0]
    log = Path(cluster.log_path(frontend.id))
    logged_before = log.stat().st_size
    status, body = _get_raw(cluster.frontend_url, path)
    assert status == 400, (status, body[:200])
    assert "error" in json.loads(body)
    with open(log, "rb") as lines:
        lines.seek(logged_before)
        assert b"refused" not in lines.read()


def test_a_cross_site_purchase_with_a_simple_body_is_refused_and_api_clients_still_buy(cluster):
    """A page on another site can post text/plain (or no body) without asking first; its
    browser then names that site in Origin. Refused on both purchase routes; a client that
    sends no Origin (curl, requests) and the store's own pages still buy."""
    assert requests.put(f"{cluster.frontend_url}/books/5", json={"stock": 10}, headers=ADMIN,
                        timeout=10).status_code == 200
    for route in ("purchase", "buy"):
        for n, headers in enumerate(({"Content-Type": "text/plain", "Origin": "http://evil.example"},
                                     {"Origin": "https://evil.example"},
                                     {"Content-Type": "text/plain", "Origin": "null"})):
            response = requests.post(f"{cluster.frontend_url}/{route}/5", data="x", timeout=10,
                                     headers={**headers, "Idempotency-Key": f"cross-site-{route}-{n}"})
            _assert_json_error(response, 403)
    assert _book(cluster, 5)["stock"] == 10
    api = requests.post(f"{cluster.frontend_url}/purchase/5", headers={"Idempotency-Key": "no-origin"}, timeout=10)
    assert api.status_code == 200, api.text[:200]
    own = requests.post(f"{cluster.frontend_url}/purchase/5", data="x", timeout=10,
                        headers={"Content-Type": "text/plain", "Origin": cluster.frontend_url})
    assert own.status_code == 200, own.text[:200]
    assert _book(cluster, 5)["stock"] == 8


def test_a_public_order_shows_no_cluster_wide_counter(cluster):
    """An order's `seq` numbered every order the store took, and its catalog index every
    catalog write: two orders' difference was the store's sales in between."""
    response = requests.post(f"{cluster.frontend_url}/purchase/6", headers={"Idempotency-Key": "counted"}, timeout=10)
    assert response.status_code == 200, response.text[:200]
    order = requests.get(f"{cluster.frontend_url}/orders/counted", timeout=10).json()
    assert order["status"] == "completed" and order["order_id"] == "counted" and order["id"] == 6
    assert not {"seq", "catalog_index"} & order.keys(), order


# -- DNS rebinding: a page whose own name now resolves to this machine -----------------------

def _send_as(url: str, host: str, method: str = "GET", path: str = "/", extra: str = "") -> tuple[int, bytes]:
    """`method path` with `Host: host`, as a browser sends it after its page's name was
    rebound to the frontend's address (requests would send the URL's own host)."""
    address = urllib.parse.urlsplit(url)
    with socket.create_connection((address.hostname, address.port), timeout=30) as conn:
        conn.sendall(f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Content-Length: 0\r\n"
                     f"Connection: close\r\n\r\n".encode())
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def test_a_host_name_rebound_to_the_store_is_refused_before_any_route_runs(cluster):
    """A page at attacker.example rebinds its name to 127.0.0.1: the browser then reaches the
    frontend, sending `Host: attacker.example:<port>`, and would read what it answers (same
    origin to the browser). Every route refuses that Host with a JSON 421 and changes nothing;
    the store's own names (its address, localhost, 127.0.0.1) are answered."""
    port = urllib.parse.urlsplit(cluster.frontend_url).port
    before = _book(cluster, 6)["stock"]
    for host in (f"attacker.example:{port}", "attacker.example", f"localhost.attacker.example:{port}"):
        for method, path in (("GET", "/cluster"), ("GET", "/info/6"), ("GET", "/readyz"), ("GET", "/"),
                             ("POST", "/purchase/6"), ("GET", "/orders/rebound-1"), ("GET", "/metrics")):
            status, body = _send_as(cluster.frontend_url, host, method, path,
                                    "Idempotency-Key: rebound-1\r\n" if method == "POST" else "")
            assert status == 421, (host, method, path, status, body[:200])
            assert "allowed_hosts" in json.loads(body)["error"]
    assert _book(cluster, 6)["stock"] == before
    # Loopback names on any port too: a published port (docker-compose's BAZAR_PORT) differs.
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LocalHost:{port}", "127.0.0.1:18080", "localhost"):
        status, body = _send_as(cluster.frontend_url, host, "GET", "/info/6")
        assert status == 200 and json.loads(body)["stock"] == before, (host, status, body[:200])
    # A replica's routes are signed (a rebound page has no secret): only the frontend checks Host.


def test_a_name_in_frontend_allowed_hosts_is_answered(make_cluster):
    """The public name a reverse proxy passes on is listed in the cluster file."""
    cluster = make_cluster(catalog=1, order=1, frontend={"allowed_hosts": ["shop.example.com"]})
    for host in ("shop.example.com", "shop.example.com:443"):
        status, body = _send_as(cluster.frontend_url, host, "GET", "/info/1")
        assert status == 200 and json.loads(body)["id"] == 1, (host, status, body[:200])
    status, _ = _send_as(cluster.frontend_url, "shop.example.com.attacker.example", "GET", "/info/1")
    assert status == 421
