"""Zero trust between Bazar's processes, against real ones: what an eavesdropper on the
wire and a stranger who reaches a replica or a Raft port can and cannot do.

The eavesdropper: one order replica listens on 127.0.0.2 while the others reach it at
127.0.0.1, where a recording TCP relay passes every byte on (both its Raft and its HTTP
port). Everything the cluster sends that replica is then in the recording.
"""
from __future__ import annotations

import json
import os
import pickle
import re
import signal
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest
import requests
import yaml

from bazar.local.cluster import LocalCluster, write_config
from bazar.web.signing import PeerAuth
from tests.integration.probes import settled_content

SECRET = "zero-trust-cluster-secret-7f3a-0c9d1e"
ADMIN_TOKEN = "zero-trust-admin-token-91c2"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
REPO = Path(__file__).resolve().parents[2]


class RecordingRelay:
    """Listens on `front` and relays every connection to `back`, keeping every byte."""

    def __init__(self, front: tuple[str, int], back: tuple[str, int]) -> None:
        self.back = back
        self.chunks: list[bytes] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(front)
        self._sockets: list[socket.socket] = [self._listener]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def recorded(self) -> bytes:
        with self._lock:
            return b"".join(self.chunks)

    def close(self) -> None:
        self._closed = True
        for sock in self._sockets:
            try:
                sock.close()
            except OSError:
                pass

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
                upstream = socket.create_connection(self.back, timeout=5)
            except OSError:
                continue
            upstream.settimeout(None)
            self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                with self._lock:
                    self.chunks.append(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@pytest.fixture(scope="module")
def watched(tmp_path_factory):
    """A 1+3+1 cluster with a secret and an admin token, order1 behind recording relays."""
    directory = tmp_path_factory.mktemp("zero-trust")
    path = write_config(directory, catalog=1, order=3)
    doc = yaml.safe_load(path.read_text())
    doc["order"][0]["listen"] = "127.0.0.2"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    cluster = LocalCluster(path, log_dir=directory / "logs",
                           env={"BAZAR_SECRET": SECRET, "BAZAR_ADMIN_TOKEN": ADMIN_TOKEN})
    order1 = cluster.config.order[0]
    relays = [RecordingRelay(("127.0.0.1", a.port), ("127.0.0.2", a.port)) for a in (order1.raft, order1.http)]
    try:
        cluster.start(timeout=60)
        yield cluster, relays
    finally:
        cluster.stop()
        for relay in relays:
            relay.close()


def _buy_through(cluster: LocalCluster, count: int, prefix: str) -> None:
    for i in range(count):
        response = requests.post(f"{cluster.frontend_url}/purchase/{1 + i % 7}",
                                 headers={"Idempotency-Key": f"{prefix}-{i}"}, timeout=30)
        assert response.status_code in (200, 409), response.text


def test_the_secret_and_the_admin_token_never_cross_the_wire(watched):
    cluster, relays = watched
    _buy_through(cluster, 30, "watched")
    restock = requests.put(f"{cluster.frontend_url}/books/2", json={"restock": 1}, headers=ADMIN, timeout=30)
    assert restock.status_code == 200, restock.text
    requests.get(f"{cluster.frontend_url}/orders?limit=5", headers=ADMIN, timeout=30).raise_for_status()
    raft_bytes, http_bytes = (relay.recorded() for relay in relays)
    # The relays did see the cluster talk to order1 (else this test proves nothing).
    assert len(raft_bytes) > 1000
    assert b"/records" in http_bytes or b"/orders" in http_bytes, http_bytes[:300]
    for recorded in (raft_bytes, http_bytes):
        assert SECRET.encode() not in recorded
        assert ADMIN_TOKEN.encode() not in recorded


def _recorded_requests(http_bytes: bytes) -> list[bytes]:
    """Whole requests (head and body) found in a relay's recording."""
    found = []
    for match in re.finditer(rb"(POST|GET) /[^ ]* HTTP/1\.1\r\n.*?\r\n\r\n", http_bytes, re.S):
        head = match.group(0)
        length = re.search(rb"(?i)content-length: *(\d+)", head)
        body = http_bytes[match.end():match.end() + int(length.group(1))] if length else b""
        found.append(head + body)
    return found


def _send_raw(address: tuple[str, int], data: bytes) -> tuple[int, bytes]:
    with socket.create_connection(address, timeout=10) as conn:
        conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1]), answer


def test_a_recorded_internal_request_played_back_is_refused(watched):
    cluster, relays = watched
    _buy_through(cluster, 5, "replayed")
    # The frontend asks every replica's /status (readiness), and sends purchases to the
    # order leader, which order1 may or may not be: replay whatever passed.
    recorded = _recorded_requests(relays[1].recorded())
    assert recorded, "no request passed the relay"
    order1 = cluster.config.order[0]
    before = settled_content(cluster, order1.id)
    for request in recorded[-3:] + [r for r in recorded if r.startswith(b"POST")][-3:]:
        status, answer = _send_raw(("127.0.0.2", order1.http.port), request)
        assert status == 403, answer[:300]
        assert b"replay" in answer or b"clock" in answer
        # Changed on the way (another path): the signature no longer matches.
        forged = request.replace(b" /status ", b" /state ").replace(b'"id":', b'"id": 3, "x":')
        status, answer = _send_raw(("127.0.0.2", order1.http.port), forged)
        assert status == 403, answer[:300]
    assert settled_content(cluster, order1.id) == before


def test_a_request_recorded_for_one_replica_is_refused_by_its_siblings(watched):
    """Each replica remembers only the nonces it saw itself; the replica a request is meant
    for (as its sender names it) is signed, so played to a sibling within the window it is
    refused there too, and changes nothing."""
    cluster, relays = watched
    _buy_through(cluster, 5, "sibling")
    recorded = _recorded_requests(relays[1].recorded())[-4:]
    assert recorded, "no request passed the relay"
    for sibling in cluster.config.order[1:]:
        before = settled_content(cluster, sibling.id)
        for request in recorded:
            status, answer = _send_raw((sibling.http.host, sibling.http.port), request)
            assert status == 403, (sibling.id, answer[:300])
            assert b"signature is wrong" in answer
        assert settled_content(cluster, sibling.id) == before


INTERNAL = [("catalog", "GET", "/status", None), ("catalog", "GET", "/state", None),
            ("catalog", "GET", "/books", None), ("catalog", "GET", "/books/1", None),
            ("catalog", "GET", "/topics", None), ("catalog", "GET", "/search/distributed%20systems", None),
            ("catalog", "GET", "/purchases/k1", None),
            ("catalog", "POST", "/purchase", {"id": 1, "order_id": "stranger-1"}),
            ("catalog", "POST", "/purchases", {"purchases": [{"id": 1, "order_id": "stranger-3"}]}),
            ("catalog", "GET", "/unrecorded", None),
            ("catalog", "POST", "/recorded", {"order_ids": ["k1"]}),
            ("catalog", "PUT", "/books/1", {"stock": 0}),
            ("catalog", "POST", "/books", {"title": "Forged", "topic": "x", "price": 1, "stock": 1}),
            ("order", "GET", "/status", None), ("order", "GET", "/state", None),
            ("order", "GET", "/orders", None), ("order", "GET", "/orders/k1", None),
            ("order", "POST", "/purchase", {"id": 1, "order_id": "stranger-2"}),
            ("order", "POST", "/purchases", {"purchases": [{"id": 1, "order_id": "stranger-4"}]}),
            ("catalog", "GET", "/members", None), ("order", "GET", "/backup", None),
            ("catalog", "POST", "/members", {"op": "remove", "id": "catalog1", "raft": "127.0.0.1:1"})]


@pytest.mark.parametrize("group, method, path, body", INTERNAL, ids=[f"{g}{m}{p}" for g, m, p, _ in INTERNAL])
def test_a_replica_refuses_every_request_its_peers_did_not_sign(watched, group, method, path, body):
    cluster, _ = watched
    node = cluster.config.group(group)[-1]
    before = settled_content(cluster, node.id)
    for how in ({}, {"auth": PeerAuth("another cluster's secret")},
                {"headers": {"X-Bazar-Secret": SECRET}}):  # the old way: the secret in clear
        response = requests.request(method, node.http.url + path, json=body, timeout=10, **how)
        assert response.status_code == 403, (how, response.status_code, response.text[:200])
        assert response.headers["Content-Type"].startswith("application/json")
        assert "error" in response.json()
    assert settled_content(cluster, node.id) == before
    # Its peers' signed requests do pass.
    if method == "GET":
        signed = requests.get(node.http.url + path, timeout=10, auth=cluster.peer_auth)
        # A backup is read on the leader; this replica may be a follower, which says so.
        allowed = (200, 404, 503) if path == "/backup" else (200, 404)
        assert signed.status_code in allowed, signed.text[:200]


def test_liveness_and_the_public_cluster_view_show_no_pid_and_no_address(watched):
    cluster, _ = watched
    for url in [n.http.url for n in cluster.config.catalog + cluster.config.order] + [cluster.frontend_url]:
        health = requests.get(url + "/healthz", timeout=10)
        assert health.status_code == 200 and "pid" not in health.json()
    public = requests.get(cluster.frontend_url + "/cluster", timeout=10)
    text = public.text
    assert public.status_code == 200 and public.json()["ready"] is True
    for node in cluster.config.catalog + cluster.config.order:
        assert f":{node.raft.port}" not in text and f":{node.http.port}" not in text
    private = requests.get(cluster.frontend_url + "/cluster", headers=ADMIN, timeout=10).text
    assert f":{cluster.config.catalog[0].raft.port}" in private


def _numbers(value, path: str = "") -> dict[str, float]:
    """Every number in a JSON value, by its path (`groups.order.nodes.1.commit_index`)."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _numbers(item, f"{path}.{key}").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in _numbers(item, f"{path}.{i}").items()}
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {path: value}
    return {}


def _anonymous_views(cluster: LocalCluster) -> dict[str, dict]:
    """What a client without the admin token reads of the cluster: /cluster, and the
    dashboard page's own copy (the JSON it embeds for its first draw)."""
    page = requests.get(cluster.frontend_url + "/dashboard", headers={"Accept": "text/html"}, timeout=10)
    assert page.status_code == 200, page.text[:200]
    embedded = re.search(r'<script id="initial-stats" type="application/json">(.*?)</script>', page.text, re.S)
    return {"/cluster": requests.get(cluster.frontend_url + "/cluster", timeout=10).json(),
            "/dashboard": json.loads(embedded.group(1))}


def _order_commit_index(cluster: LocalCluster) -> int:
    view = requests.get(cluster.frontend_url + "/cluster", headers=ADMIN, timeout=10).json()
    return max(n.get("commit_index", 0) for n in view["groups"]["order"]["nodes"])


def test_an_anonymous_client_learns_no_store_wide_counter(watched):
    """The public /cluster (and the dashboard page's copy of it) showed each replica's commit
    and applied index, its commit count, the frontend's request histogram and cache counters:
    numbers that grow with every purchase, so any visitor could read the store's sales off
    them; and the frontend's /metrics counted every purchase for anyone. Now nothing a client
    without the admin token reads from the frontend changes when books are sold."""
    from bazar.frontend.app import CLUSTER_VIEW_SECONDS

    cluster, _ = watched
    before = _anonymous_views(cluster)
    committed = _order_commit_index(cluster)
    _buy_through(cluster, 5, "counted")
    deadline = time.monotonic() + 10
    while _order_commit_index(cluster) <= committed:  # the admin's view saw the sales
        assert time.monotonic() < deadline, "the purchases never showed in the admin's view"
        time.sleep(0.1)
    time.sleep(CLUSTER_VIEW_SECONDS * 2)  # the shared view is surveyed again
    after = _anonymous_views(cluster)
    for where in before:
        changed = {path: (value, _numbers(after[where]).get(path))
                   for path, value in _numbers(before[where]).items() if _numbers(after[where]).get(path) != value}
        assert not changed, f"anonymous {where} moved with 5 purchases: {changed}"
        assert after[where]["ready"] is True and after[where]["groups"]["order"]["leader"]
    metrics = requests.get(cluster.frontend_url + "/metrics", timeout=10)
    assert metrics.status_code == 401, (metrics.status_code, metrics.text[:300])
    assert "bazar_" not in metrics.text and "error" in metrics.json()
    wrong = requests.get(cluster.frontend_url + "/metrics", headers={"Authorization": "Bearer nope"}, timeout=10)
    assert wrong.status_code == 401


def test_the_admin_sees_the_whole_cluster_view_and_the_frontends_metrics(watched):
    """The admin (its token as a bearer) keeps every index, the follower's lag, the cache and
    traffic counters and each replica's addresses; `bazar status` and the dashboard rely on them."""
    cluster, _ = watched
    committed = _order_commit_index(cluster)
    _buy_through(cluster, 3, "admin-view")
    deadline = time.monotonic() + 10
    while _order_commit_index(cluster) <= committed:
        assert time.monotonic() < deadline, "the admin's view never saw the purchases"
        time.sleep(0.1)
    view = requests.get(cluster.frontend_url + "/cluster", headers=ADMIN, timeout=10).json()
    for group in view["groups"].values():
        for node in group["nodes"]:
            assert node["reachable"], node
            assert {"role", "term", "commit_index", "applied_index", "commits", "http", "raft"} <= set(node), node
    assert {"applied_index", "leader_commit_index", "lag_seconds", "caught_up"} <= set(view["frontend"]["follower"])
    assert {"hits", "misses", "invalidations", "size", "capacity"} <= set(view["cache"])
    assert view["traffic"]["count"] > 0 and view["view"] == "admin"
    # A wrong token is told so, not quietly given the public view.
    wrong = requests.get(cluster.frontend_url + "/cluster", headers={"Authorization": "Bearer nope"}, timeout=10)
    assert wrong.status_code == 401 and "error" in wrong.json()
    metrics = requests.get(cluster.frontend_url + "/metrics", headers=ADMIN, timeout=10)
    assert metrics.status_code == 200
    assert 'bazar_http_requests_total{method="POST",route="/purchase/<raw_id>",status="200"}' in metrics.text


def test_listing_orders_and_their_keys_needs_the_admin_token(watched):
    cluster, _ = watched
    _buy_through(cluster, 1, "listed")
    anonymous = requests.get(cluster.frontend_url + "/orders", timeout=10)
    assert anonymous.status_code == 401 and "error" in anonymous.json()
    listing = requests.get(cluster.frontend_url + "/orders", headers=ADMIN, timeout=10)
    assert "listed-0" in {o["order_id"] for o in listing.json()["orders"]}
    # One order, by the id its buyer chose, stays public.
    assert requests.get(cluster.frontend_url + "/orders/listed-0", timeout=10).json()["status"] == "completed"


def test_replica_data_is_readable_by_its_owner_only(watched):
    cluster, _ = watched
    data = cluster.config.data_dir
    for directory in [data] + [data / n.id for n in cluster.config.catalog + cluster.config.order]:
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    files = [p for p in data.rglob("*") if p.is_file()]
    assert any(p.name.startswith("journal") for p in files)
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, f"{path} is {oct(path.stat().st_mode)}"


def test_orders_for_unknown_books_are_never_recorded(watched):
    cluster, _ = watched
    for raw in ("999", "0", "-1", str(10 ** 30), "abc", "1.5"):
        response = requests.post(f"{cluster.frontend_url}/purchase/{raw}",
                                 headers={"Idempotency-Key": f"unknown-{abs(hash(raw))}"}, timeout=10)
        assert response.status_code in (400, 404) and "error" in response.json(), (raw, response.text)
    leader = cluster.admin.leader("order")
    # Asked directly, as a peer that skips the frontend's check would: answered, not kept.
    direct = requests.post(f"{cluster.config.node(leader).http.url}/purchase", timeout=10,
                           json={"id": 999, "order_id": "unknown-direct"}, auth=cluster.peer_auth)
    assert direct.status_code == 200 and direct.json()["error"] == "not_found", direct.text
    # Its `begin` was recorded before the catalog was asked; `finish`, which follows the
    # answer (with the next round, or within 20 ms), drops it: kept only that moment.
    deadline = time.monotonic() + 10
    while True:
        recorded = cluster.admin.state(leader)["state"]["orders"]
        if not [k for k in recorded if k.startswith("unknown-")] or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not [k for k in recorded if k.startswith("unknown-")]


# -- a man in the middle who rewrites a replica's answers ------------------------------

class ForgingProxy:
    """A man in the middle at the HTTP level: listens on `front`, passes every request on to
    `back` exactly as sent (so its signature is still good and the replica serves it), and
    hands the client back what `forge(path, status, headers, body)` makes of the answer.
    `forged` counts the answers rewritten (`forge` None: passed on as they are)."""

    HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "date", "server"}

    def __init__(self, front: tuple[str, int], back: tuple[str, int], forge=None) -> None:
        import urllib3
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        proxy = self
        self.forge = forge
        self.forged = 0
        upstream = urllib3.PoolManager(retries=False)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                sent = {k: v for k, v in self.headers.items() if k.lower() not in proxy.HOP_BY_HOP}
                answer = upstream.request(self.command, f"http://{back[0]}:{back[1]}{self.path}", body=body or None,
                                          headers=sent, redirect=False, timeout=30)
                status, headers, data = answer.status, {k: v for k, v in answer.headers.items()
                                                        if k.lower() not in proxy.HOP_BY_HOP}, answer.data
                if proxy.forge is not None:
                    status, headers, data = proxy.forge(self.path, status, headers, data)
                    proxy.forged += 1
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = _relay

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(front, Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


FORGED_PRICE = 0.01
FORGED_TITLE = "FORGED"


def _forge_catalog_answer(me: str):
    """What the man in the middle in front of catalog replica `me` (its advertised
    `host:port`) answers: every book at FORGED_PRICE and renamed, every
    purchase a success, itself the leader, and a newer membership of itself alone (every
    client would then call only it)."""
    def rewrite(value):
        if isinstance(value, dict):
            value = {k: rewrite(v) for k, v in value.items()}
            if "price" in value:
                value.update(price=FORGED_PRICE, title=FORGED_TITLE)
            if "ok" in value:
                value.update(ok=True, error=None)
            return value
        return [rewrite(v) for v in value] if isinstance(value, list) else value

    def forge(path, status, headers, body):
        headers = {**headers, "X-Bazar-Leader": f"http://{me}", "X-Bazar-Members": "99"}
        if path.startswith("/members"):
            listing = {"changed_index": 99, "members": [{"id": "catalog1", "raft": me, "http": f"http://{me}"}]}
            return 200, headers, json.dumps(listing).encode()
        try:
            return (200 if status == 409 else status), headers, json.dumps(rewrite(json.loads(body))).encode()
        except ValueError:
            return status, headers, body

    return forge


@pytest.fixture
def forged(make_cluster):
    """A 3+1+1 cluster whose catalog1 is reached (HTTP and Raft) through a man in the middle:
    relays on 127.0.0.1 in front of catalog1 listening on 127.0.0.2. The HTTP one passes
    everything on until the test sets its `forge`. catalog1 is made a follower first, so that
    writes have a leader whose answers arrive unchanged."""
    cluster = make_cluster(catalog=3, order=1, start=False, env={"BAZAR_SECRET": SECRET,
                                                                   "BAZAR_ADMIN_TOKEN": ADMIN_TOKEN})
    doc = yaml.safe_load(cluster.config_path.read_text())
    doc["catalog"][0]["listen"] = "127.0.0.2"
    cluster.config_path.write_text(yaml.safe_dump(doc, sort_keys=False))
    cluster = LocalCluster(cluster.config_path, log_dir=cluster.log_dir,
                           env={"BAZAR_SECRET": SECRET, "BAZAR_ADMIN_TOKEN": ADMIN_TOKEN})
    catalog1 = cluster.config.catalog[0]
    raft = RecordingRelay(("127.0.0.1", catalog1.raft.port), ("127.0.0.2", catalog1.raft.port))
    proxy = ForgingProxy(("127.0.0.1", catalog1.http.port), ("127.0.0.2", catalog1.http.port))
    try:
        cluster.start(timeout=60)
        if cluster.admin.leader("catalog") == "catalog1":
            cluster.kill("catalog1", signal.SIGTERM)  # a leader told to stop hands its role over
            deadline = time.monotonic() + 30
            while cluster.is_running("catalog1") and time.monotonic() < deadline:
                time.sleep(0.1)
            cluster.start_process("catalog1")
            cluster.wait_ready(timeout=60)
        while cluster.admin.status("catalog1") is None:
            time.sleep(0.2)
        yield cluster, proxy
    finally:
        cluster.stop()
        proxy.close()
        raft.close()


def _strong_book(url: str, book: int, timeout: float = 20.0) -> dict:
    """A book read strongly, asked again while the answer is a 503 (the catalog group may be
    electing a leader right after the fixture restarted catalog1: CI, 2026-12-07, KeyError
    'price' on such an answer)."""
    deadline = time.monotonic() + timeout
    while True:
        response = requests.get(f"{url}/info/{book}?consistency=strong", timeout=10)
        if response.status_code != 503 or time.monotonic() > deadline:
            assert response.status_code == 200, response.text
            return response.json()
        time.sleep(0.2)


def test_answers_forged_on_the_way_are_never_believed(forged):
    """Everything the man in front of catalog1 answers is forged: prices, purchase results,
    the leader, the membership. The frontend never serves his price or title (nor caches
    them: a forged /info answer would otherwise be served from the cache), purchases record the catalog's real outcome, and neither the frontend's clients
    nor the admin follow his leader or his members. (Before answers were signed, a third
    of the frontend's reads, then all of them, came back at his price.)"""
    from bazar.web.client import GroupClient

    cluster, proxy = forged
    url = cluster.frontend_url
    catalog1 = cluster.config.catalog[0]
    real = {i: _strong_book(url, i) for i in range(1, 8)}
    proxy.forge = _forge_catalog_answer(str(catalog1.http))

    served = []
    for round_ in range(4):
        for i in range(1, 8):
            for query in ("", "?consistency=strong"):
                response = requests.get(f"{url}/info/{i}{query}", timeout=30)
                served.append((i, response.status_code, response.text))
    purchases = [requests.post(f"{url}/purchase/{1 + i % 7}", headers={"Idempotency-Key": f"mitm-{i}"},
                               timeout=30) for i in range(6)]
    searched = requests.get(f"{url}/search/distributed%20systems", timeout=30)

    for i, status, text in served:
        assert FORGED_TITLE not in text, (i, status, text[:200])
        if status == 200:
            assert (json.loads(text)["price"], json.loads(text)["title"]) == (real[i]["price"], real[i]["title"])
    for i in real:  # and the cache holds no forged answer either
        assert requests.get(f"{url}/info/{i}", timeout=10).json()["price"] == real[i]["price"]
    assert sum(status == 200 for _, status, _ in served) >= len(served) // 2, "the honest replicas served too few"
    for response in purchases:
        assert FORGED_TITLE not in response.text, response.text[:200]
        assert response.status_code in (200, 409), response.text[:200]
    assert FORGED_TITLE not in searched.text
    # The stock the catalog really holds went down by exactly the purchases acknowledged.
    bought = {}
    for response in purchases:
        if response.status_code == 200:
            bought[response.json()["id"]] = bought.get(response.json()["id"], 0) + 1
    # (Once it has applied what its leader had committed: a follower learns of a commit with
    # the next round or heartbeat, after the buyer's answer.)
    honest = cluster.config.catalog[1].id
    state = settled_content(cluster, honest)["books"]
    for i, count in bought.items():
        assert state[str(i)]["stock"] == real[i]["stock"] - count, (i, state[str(i)], real[i])

    # Neither a group client nor the admin follows his leader or his membership.
    client = GroupClient([n.http.url for n in cluster.config.catalog], SECRET, timeout=10)
    for i in range(9):
        assert FORGED_TITLE not in client.read(f"/books/{1 + i % 7}").body.decode()
    # A fresh client asks catalog1 too (the frontend's own reads may all be answered by its
    # follower, and the order leader's client knows the real leader from its sweeps).
    assert proxy.forged > 0, "the man in the middle was never asked: the test proves nothing"
    assert client.urls == [n.http.url for n in cluster.config.catalog] and client.leader != catalog1.http.url
    groups = cluster.admin.collect()
    assert [(n["id"], n["reachable"]) for n in groups["catalog"]["nodes"]] == [
        ("catalog1", False), ("catalog2", True), ("catalog3", True)]
    assert groups["catalog"]["leader"] in ("catalog2", "catalog3")
    public = requests.get(f"{url}/cluster", timeout=10).json()
    assert [n["id"] for n in public["groups"]["catalog"]["nodes"]] == ["catalog1", "catalog2", "catalog3"]


# -- the default `bazar up`: never without a secret ------------------------------------

class _CreateFile:
    """A pickle that creates a file when loaded: proof that code ran on the node."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_bazar_up_without_a_secret_makes_one_and_runs_no_strangers_pickle(tmp_path):
    path = write_config(tmp_path, catalog=1, order=1)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BAZAR_SECRET", "BAZAR_ADMIN_TOKEN"))}
    proc = subprocess.Popen([sys.executable, "-m", "bazar", "--config", str(path), "up"], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "ready" in line or proc.poll() is not None:
                break
        output = "".join(lines)
        assert "generated one" in output, output
        token_file = tmp_path / "data" / "admin-token"
        assert f"admin token (for PUT/POST /books and GET /orders: Authorization: Bearer <token>) in {token_file}" \
            in output, output
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        store = "http://" + yaml.safe_load(path.read_text())["frontends"][0]["http"]
        assert requests.put(f"{store}/books/1", json={"price": 0.01}, timeout=10).status_code == 401
        assert requests.get(f"{store}/orders", timeout=10).status_code == 401
        token = {"Authorization": f"Bearer {token_file.read_text().strip()}"}
        assert requests.get(f"{store}/orders", headers=token, timeout=10).status_code == 200
        secret_file = tmp_path / "data" / "secret"
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(secret_file.parent.stat().st_mode) == 0o700
        config = yaml.safe_load(path.read_text())
        marker = tmp_path / "pwned"
        for node in config["catalog"] + config["order"]:
            host, port = node["raft"].rsplit(":", 1)
            data = zlib.compress(pickle.dumps(_CreateFile(str(marker))))
            with socket.create_connection((host, int(port)), timeout=5) as conn:
                conn.sendall(struct.pack("i", len(data)) + data)
                time.sleep(0.5)
        time.sleep(1)
        assert not marker.exists(), "an unauthenticated pickle ran under the default bazar up"
        for node in config["catalog"] + config["order"]:
            unsigned = requests.get(f"http://{node['http']}/state", timeout=10)
            assert unsigned.status_code == 403, (node["id"], unsigned.status_code)
        # `bazar status` on this machine finds the generated secret and sees every replica.
        status = subprocess.run([sys.executable, "-m", "bazar", "--config", str(path), "status"], cwd=REPO,
                                env=env, capture_output=True, text=True, timeout=60)
        assert status.returncode == 0, status.stdout + status.stderr
        assert "DOWN" not in status.stdout
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_a_replica_started_by_hand_on_loopback_without_a_secret_takes_the_machines_one(tmp_path):
    """`bazar node` given no secret, all on loopback: it takes the cluster's secret from the
    data directory, made there if missing (as `bazar up` does), so it never runs open; and
    the admin token likewise."""
    path = write_config(tmp_path, catalog=1, order=1)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BAZAR_SECRET", "BAZAR_ADMIN_TOKEN"))}
    config = yaml.safe_load(path.read_text())
    node = config["catalog"][0]
    proc = subprocess.Popen([sys.executable, "-m", "bazar", "--config", str(path), "node", node["id"]], cwd=REPO,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://{node['http']}/healthz", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        secret_file = tmp_path / "data" / "secret"
        assert secret_file.is_file() and stat.S_IMODE(secret_file.stat().st_mode) == 0o600
        token_file = tmp_path / "data" / "admin-token"  # for the frontends started beside it
        assert token_file.is_file() and stat.S_IMODE(token_file.stat().st_mode) == 0o600
        unsigned = requests.get(f"http://{node['http']}/state", timeout=10)
        assert unsigned.status_code == 403, unsigned.status_code
        signed = requests.get(f"http://{node['http']}/status", timeout=10,
                              auth=PeerAuth(secret_file.read_text().strip()))
        assert signed.status_code == 200, signed.text[:200]
        marker = tmp_path / "pwned-by-hand"
        host, port = node["raft"].rsplit(":", 1)
        data = zlib.compress(pickle.dumps(_CreateFile(str(marker))))
        with socket.create_connection((host, int(port)), timeout=5) as conn:
            conn.sendall(struct.pack("i", len(data)) + data)
            time.sleep(1.5)
        assert not marker.exists(), "an unauthenticated pickle ran on a replica started by hand"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.parametrize("where", ["catalog-http", "frontend-http"])
def test_a_process_with_a_public_http_address_refuses_to_start_without_a_secret(tmp_path, where):
    path = write_config(tmp_path, catalog=1, order=1)
    doc = yaml.safe_load(path.read_text())
    entry = doc["catalog"][0] if where == "catalog-http" else doc["frontends"][0]
    entry["http"] = "192.0.2.10:8101"  # TEST-NET-1: never contacted, we refuse first
    path.write_text(yaml.safe_dump(doc))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BAZAR_SECRET")}
    command = ["node", "catalog1"] if where == "catalog-http" else ["frontend"]
    result = subprocess.run([sys.executable, "-m", "bazar", *command, "--config", str(path)],
                            env=env, capture_output=True, text=True, timeout=30, cwd=REPO)
    assert result.returncode != 0
    assert "BAZAR_SECRET" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_store_reachable_off_loopback_without_an_admin_token_has_no_admin(make_cluster):
    """Its catalog cannot be changed and its orders not listed by anyone; buying works."""
    cluster = make_cluster(catalog=1, order=1, start=False, generate_admin_token=False)
    doc = yaml.safe_load(cluster.config_path.read_text())
    doc["frontends"][0]["listen"] = "0.0.0.0"  # a container's frontend, reachable from outside
    cluster.config_path.write_text(yaml.safe_dump(doc, sort_keys=False))
    cluster = LocalCluster(cluster.config_path, log_dir=cluster.log_dir,
                           env={**{k: v for k, v in os.environ.items() if k != "BAZAR_ADMIN_TOKEN"},
                                "BAZAR_SECRET": SECRET}, generate_admin_token=False)
    try:
        cluster.start(timeout=60)
        url = cluster.frontend_url
        before = requests.get(f"{url}/info/1?consistency=strong", timeout=10).json()
        for method, path, body in (("PUT", "/books/1", {"stock": 0}),
                                   ("POST", "/books", {"title": "T", "topic": "t", "price": 1, "stock": 1}),
                                   ("GET", "/orders", None)):
            response = requests.request(method, url + path, json=body, timeout=10)
            assert response.status_code == 403, (path, response.text)
            assert "BAZAR_ADMIN_TOKEN" in response.json()["error"]
        assert requests.get(f"{url}/info/1?consistency=strong", timeout=10).json() == before
        assert requests.post(f"{url}/purchase/1", timeout=30).status_code == 200
        assert ":" + str(cluster.config.catalog[0].raft.port) not in requests.get(f"{url}/cluster", timeout=10).text
    finally:
        cluster.stop()


def test_a_loopback_store_given_no_admin_token_has_no_open_admin(make_cluster):
    """It let everyone be the admin: behind a reverse proxy on the same host, or to a page
    that rebinds its name to 127.0.0.1, the public could set prices and read every buyer's
    key. Now a token is made (data_dir/admin-token, 0600) and the admin routes need it."""
    cluster = make_cluster(catalog=1, order=1, env={"BAZAR_ADMIN_TOKEN": "", "BAZAR_ADMIN_TOKEN_FILE": ""})
    url = cluster.frontend_url
    before = requests.get(f"{url}/info/1?consistency=strong", timeout=10).json()
    for method, path, body in (("PUT", "/books/1", {"price": 0.01}), ("GET", "/orders", None),
                               ("POST", "/books", {"title": "T", "topic": "t", "price": 1, "stock": 1})):
        response = requests.request(method, url + path, json=body, timeout=10)
        assert response.status_code == 401, (method, path, response.status_code, response.text[:200])
        assert "error" in response.json()
    assert requests.get(f"{url}/info/1?consistency=strong", timeout=10).json() == before
    public = requests.get(f"{url}/cluster", timeout=10).text
    assert f":{cluster.config.catalog[0].raft.port}" not in public
    token_file = cluster.config.data_dir / "admin-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert cluster.admin_headers == {"Authorization": f"Bearer {token_file.read_text().strip()}"}
    changed = requests.put(f"{url}/books/1", json={"price": 24.5}, headers=cluster.admin_headers, timeout=10)
    assert changed.status_code == 200 and changed.json()["price"] == 24.5


def _status_requests_answered(node) -> float:
    """How many GET /status the replica has answered (its public metrics)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(node.http.url + "/metrics", timeout=10).text
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == "bazar_http_requests_total" and sample.labels.get("route") == "/status")


def test_anonymous_cluster_and_readyz_calls_share_one_fan_out_per_period(watched):
    """Each anonymous /cluster or /readyz sent a signed /status to every replica: a crowd of
    them cost the replicas six requests each. Now the frontend answers them from one view,
    surveyed at most once per CLUSTER_VIEW_SECONDS, whoever asks and however often."""
    from concurrent.futures import ThreadPoolExecutor

    from bazar.frontend.app import CLUSTER_VIEW_SECONDS

    cluster, _ = watched
    replicas = cluster.config.catalog + cluster.config.order
    before = {node.id: _status_requests_answered(node) for node in replicas}
    calls = 120
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=12) as pool:
        statuses = list(pool.map(lambda i: requests.get(f"{cluster.frontend_url}/{('cluster', 'readyz')[i % 2]}",
                                                        timeout=30).status_code, range(calls)))
    elapsed = time.monotonic() - started
    assert set(statuses) == {200}, statuses
    # At most one survey per period (and one more for the period the calls began in); each
    # survey asks each replica once. Without the shared view: `calls` each.
    surveys_allowed = int(elapsed / CLUSTER_VIEW_SECONDS) + 2
    for node in replicas:
        asked = _status_requests_answered(node) - before[node.id]
        assert asked <= surveys_allowed, (node.id, asked, surveys_allowed, f"{elapsed:.2f} s")
    print(f"{calls} anonymous calls in {elapsed:.2f} s: at most {surveys_allowed} /status per replica allowed")
