"""Hostile input at the frontend and at a replica: a JSON error, the right status, nothing changed.

Each case here was answered wrongly before (a 500, a parsed cross-site form, a
body parsed before the admin check, a page with no framing or script policy).
"""
from __future__ import annotations

import re
import urllib.parse

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
