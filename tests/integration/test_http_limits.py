"""Hostile HTTP clients against a real frontend and replica: slow ones, big ones, broken
ones, and a tally of 200+ kinds of bad request, none of which may get a 5xx or change
anything."""
from __future__ import annotations

import itertools
import json
import socket
import time

import pytest
import requests

from tests.integration.probes import running_cluster, settled_content, wait_converged

ADMIN_TOKEN = "http-limits-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with running_cluster(tmp_path_factory.mktemp("limits"), env={"BAZAR_ADMIN_TOKEN": ADMIN_TOKEN},
                         catalog=1, order=1) as local:
        yield local


def _targets(cluster):
    frontend = cluster.config.frontends[0].http
    replica = cluster.config.catalog[0].http
    return {"frontend": (frontend.host, frontend.port), "replica": (replica.host, replica.port)}


def _raw(address, data: bytes, timeout: float = 10) -> bytes:
    with socket.create_connection(address, timeout=timeout) as conn:
        conn.sendall(data)
        answer = b""
        try:
            while chunk := conn.recv(65536):
                answer += chunk
                if b"\r\n\r\n" in answer and _complete(answer):
                    break
        except (ConnectionResetError, socket.timeout):
            pass
    return answer


def _complete(answer: bytes) -> bool:
    head, _, body = answer.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


def _status_and_json(answer: bytes) -> tuple[int, dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"application/json" in head.lower(), answer[:300]
    return int(head.split(b" ", 2)[1]), json.loads(body)


@pytest.mark.parametrize("where", ["frontend", "replica"])
def test_150_slow_connections_do_not_shut_out_fresh_requests(cluster, where):
    address = _targets(cluster)[where]
    slow = []
    try:
        for _ in range(150):
            conn = socket.create_connection(address, timeout=5)
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # headers never finished
            slow.append(conn)
        time.sleep(0.5)
        for conn in slow[::10]:
            conn.sendall(b"X-Slow: 1\r\n")  # still trickling
        url = f"http://{address[0]}:{address[1]}/healthz"
        for _ in range(5):
            assert requests.get(url, timeout=3).status_code == 200
        assert requests.get(f"{cluster.frontend_url}/info/1", timeout=3).status_code == 200
    finally:
        for conn in slow:
            conn.close()


def test_a_request_trickled_a_byte_a_second_is_cut_off_at_the_frontend_and_at_a_replica(cluster):
    """Each byte reset waitress's idle timer, and it has no deadline for a whole request: a
    client sending a byte a second held a connection for ever, so CONNECTION_LIMIT such
    connections held a port, a replica's as well as the frontend's (a replica has no proxy in
    front). Now a request must arrive whole within REQUEST_SECONDS of its first byte."""
    from bazar.web.server import CLEANUP_SECONDS, REQUEST_SECONDS

    slow = {where: socket.create_connection(address, timeout=5) for where, address in _targets(cluster).items()}
    cut_off: dict[str, float] = {}
    started = time.monotonic()
    try:
        for conn in slow.values():
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            conn.settimeout(0.5)
        # Generous: the deadline, the period of the check, and as long again for a busy machine.
        while len(cut_off) < len(slow) and time.monotonic() - started < 2 * (REQUEST_SECONDS + CLEANUP_SECONDS):
            for where, conn in slow.items():
                if where in cut_off:
                    continue
                try:
                    conn.sendall(b"a")  # one more byte of a header that never ends
                    if conn.recv(1) == b"":
                        cut_off[where] = time.monotonic() - started
                except socket.timeout:
                    pass  # still open, nothing said
                except OSError:  # reset
                    cut_off[where] = time.monotonic() - started
    finally:
        for conn in slow.values():
            conn.close()
    assert set(cut_off) == set(slow), f"still open after {time.monotonic() - started:.0f} s: {set(slow) - set(cut_off)}"
    for where in slow:  # and a fresh request is answered as ever
        address = _targets(cluster)[where]
        assert requests.get(f"http://{address[0]}:{address[1]}/healthz", timeout=5).status_code == 200
    print("trickling requests cut off after (s):", {k: round(v, 1) for k, v in cut_off.items()})


@pytest.mark.parametrize("where", ["frontend", "replica"])
def test_a_body_over_the_limit_is_refused_before_it_is_sent(cluster, where):
    """Announced as 200 MB: refused with 413 JSON on the headers alone, so no disk fills."""
    address = _targets(cluster)[where]
    head = (b"PUT /books/1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + ADMIN_TOKEN.encode() + b"\r\n"
            b"Content-Length: 200000000\r\n\r\n")
    started = time.monotonic()
    status, body = _status_and_json(_raw(address, head + b"{" * 1000))
    assert status == 413 and "error" in body
    assert time.monotonic() - started < 5  # answered without waiting for 200 MB
    chunked = (b"PUT /books/1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n" + (b"8000\r\n" + b" " * 0x8000 + b"\r\n") * 3)
    status, body = _status_and_json(_raw(address, chunked))
    assert status == 413 and "error" in body


@pytest.mark.parametrize("where", ["frontend", "replica"])
@pytest.mark.parametrize("request_bytes, status", [
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n", 431),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", 400),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400),
])
def test_errors_waitress_makes_itself_are_json(cluster, where, request_bytes, status):
    got, body = _status_and_json(_raw(_targets(cluster)[where], request_bytes))
    assert got == status and isinstance(body["error"], str)


# -- the tally: 200+ kinds of bad request, no 5xx, nothing changed ---------------------

BAD_IDS = ["0", "-1", "999", "1.5", "abc", "1e3", "%00", "%20", "9" * 30, "1;2", "..%2F..", "%ff", "0x1"]
BAD_BODIES = [b"", b"null", b"[]", b'"x"', b"1", b"{", b'{"stock": -1}', b'{"stock": "1"}',
              b'{"stock": 1.5}', b'{"stock": true}', b'{"price": -1}', b'{"price": "1"}', b'{"price": 1e400}',
              b'{"restock": 0}', b'{"restock": -3}', b'{"title": ""}', b'{"unknown": 1}', b'{"stock": null}',
              b"[" * 5000, b'{"a":' * 100 + b"1" + b"}" * 100, b"\xff\xfe", b'{"stock": 1, "stock": 2, ' + b'"x": 1' * 0 + b"}"]
BAD_KEYS = ["a b", "x" * 300, "a\tb", "é", "a/b", "a\\b", "<script>"]
CONSISTENCY = ["", "STRONG", "eventual", "strong;", "local,strong", "%00"]


def _tally_requests():
    for raw, body in itertools.product(BAD_IDS[:8], BAD_BODIES):
        yield "PUT", f"/books/{raw}", body, {"Content-Type": "application/json", **ADMIN}
    for body in BAD_BODIES:
        yield "POST", "/books", body, {"Content-Type": "application/json", **ADMIN}
        yield "PUT", "/books/1", body, {"Content-Type": "text/plain", **ADMIN}
    for raw in BAD_IDS:
        yield "GET", f"/info/{raw}", None, {}
        yield "POST", f"/purchase/{raw}", None, {}
        yield "GET", f"/orders/{raw}", None, {}
    for key in BAD_KEYS:
        yield "POST", "/purchase/1", None, {"Idempotency-Key": key.encode("utf-8").decode("latin-1")}
    for value in CONSISTENCY:
        yield "GET", f"/info/1?consistency={value}", None, {}
        yield "GET", f"/search/distributed%20systems?consistency={value}", None, {}
    for limit in ["0", "-1", "abc", "9" * 40, "1.5", ""]:
        yield "GET", f"/orders?limit={limit}", None, ADMIN
    for method in ["DELETE", "PATCH", "TRACE", "PROPFIND"]:
        yield method, "/books/1", None, ADMIN
        yield method, "/purchase/1", None, {}
    yield "PUT", "/books/1", b'{"stock": 0}', {"Content-Type": "application/json"}  # no token
    yield "PUT", "/books/1", b'{"stock": 0}', {"Content-Type": "application/json", "Authorization": "Bearer x"}
    yield "GET", "/" + "a" * 5000, None, {}
    yield "GET", "/search/" + "%41" * 2000, None, {}


def _content(cluster) -> dict:
    """Both groups' contents, once their replicas agree and no order is pending."""
    return {group: settled_content(cluster, next(iter(wait_converged(cluster, group))))
            for group in ("catalog", "order")}


def test_two_hundred_kinds_of_bad_request_get_no_5xx_and_change_nothing(cluster):
    kinds = list(_tally_requests())
    assert len(kinds) >= 200, len(kinds)
    before = _content(cluster)
    # Purchases with a bad key or id must not record or take anything; a 503 is not
    # expected either (the cluster is healthy), so every answer must be 4xx.
    tally: dict[int, int] = {}
    for method, path, body, headers in kinds:
        response = requests.request(method, cluster.frontend_url + path, data=body, headers=headers, timeout=15)
        tally[response.status_code] = tally.get(response.status_code, 0) + 1
        assert 400 <= response.status_code < 500, (method, path, body and body[:60], response.status_code,
                                                    response.text[:200])
        assert response.headers.get("Content-Type", "").startswith("application/json"), (method, path)
    assert _content(cluster) == before
    print("bad-request tally:", dict(sorted(tally.items())), "kinds:", len(kinds))
