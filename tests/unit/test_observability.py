"""Request ids, log formats and HTTP metrics (web/logs.py, web/metrics.py), and the Raft member's
count of leader changes, without a cluster."""
from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
from flask import Flask, jsonify

from bazar.cluster.config import RaftConfig
from bazar.consensus.member import RaftMember
from bazar.consensus.settings import syncobj_conf
from bazar.consensus.state import ReplicatedState
from bazar.node.catalog import CatalogState
from bazar.web import logs, metrics
from bazar.web.client import GroupClient
from bazar.web.protocol import REQUEST_ID_HEADER


@pytest.mark.parametrize("supplied", ["a", "abc-123", "A.b_c-9", "x" * 64])
def test_a_valid_request_id_is_kept(supplied):
    assert logs.request_id_from(supplied) == supplied


@pytest.mark.parametrize("supplied", [None, "", "x" * 65, "with space", "new\nline", "quote\"", "caf\u00e9", "a/b"])
def test_anything_else_gets_a_fresh_valid_id(supplied):
    fresh = logs.request_id_from(supplied)
    assert fresh != supplied and logs.request_id_from(fresh) == fresh
    assert logs.request_id_from(supplied) != fresh  # fresh each time


def record(message: str, **extra) -> logging.LogRecord:
    entry = logging.LogRecord("bazar.test", logging.INFO, __file__, 1, message, (), None)
    entry.__dict__.update(extra)
    return entry


def test_json_lines_carry_the_fields_and_the_request_id():
    line = json.loads(logs.JsonFormatter().format(record("bought %s", node="frontend1", request_id="r-1")))
    assert line["level"] == "INFO" and line["node"] == "frontend1" and line["logger"] == "bazar.test"
    assert line["msg"] == "bought %s" and line["request_id"] == "r-1"
    assert line["ts"].endswith("+00:00")
    outside = json.loads(logs.JsonFormatter().format(record("tick", node="catalog1", request_id=None)))
    assert "request_id" not in outside


def test_access_fields_go_into_the_json_line():
    line = json.loads(logs.JsonFormatter().format(
        record("POST /purchase 200", node="order1", request_id="r", method="POST", route="/purchase",
               status=200, duration_ms=1.5)))
    assert (line["method"], line["route"], line["status"], line["duration_ms"]) == ("POST", "/purchase", 200, 1.5)


def test_text_lines_end_with_the_request_id_only_inside_a_request():
    formatter = logs.TextFormatter()
    assert formatter.format(record("hello", node="order2", request_id="r-9")).endswith(
        "order2 INFO bazar.test: hello request_id=r-9")
    assert formatter.format(record("hello", node="order2", request_id=None)).endswith("bazar.test: hello")


@pytest.fixture
def app():
    app = Flask("test")
    app_metrics = metrics.Metrics()
    metrics.instrument(app, app_metrics)
    seen = []

    @app.get("/books/<raw_id>")
    def book(raw_id):
        seen.append(logs.current_request_id())
        return jsonify(id=raw_id)

    app.seen = seen
    app.metrics = app_metrics
    return app


def test_requests_are_counted_by_rule_and_status(app):
    client = app.test_client()
    for book in (1, 2, 3):
        assert client.get(f"/books/{book}").status_code == 200
    assert client.get("/elsewhere").status_code == 404
    m = app.metrics
    assert m.value("bazar_http_requests_total", {"route": "/books/<raw_id>", "method": "GET", "status": "200"}) == 3
    assert m.value("bazar_http_requests_total", {"route": "unmatched", "method": "GET", "status": "404"}) == 1
    assert m.value("bazar_http_request_duration_seconds_count", {"route": "/books/<raw_id>"}) == 3
    assert not [s for s in m.samples("bazar_http_requests") if s[1]["route"].startswith("/books/1")]
    text = client.get("/metrics").get_data(as_text=True)
    assert 'bazar_http_requests_total{method="GET",route="/books/<raw_id>",status="200"} 3.0' in text


def test_methods_and_paths_clients_make_up_add_no_series_and_no_long_log_line(app, caplog):
    """The method and path are the client's to choose: a label or a log line that carried
    them would grow with every one sent. Thousands of made-up ones leave /metrics the size
    it was (counts aside) and every access line short."""
    client = app.test_client()

    def made_up(count: int, start: int = 0) -> None:
        for i in range(start, start + count):
            client.open(f"/nowhere/{i}", method=f"M{i}" + "X" * 1000).close()
            client.open(f"/books/{i}", method=f"N{i}").close()
            client.open(f"/books/{i}", method="get").close()

    made_up(3)
    client.get("/metrics").close()  # the scrape's own series, made once
    before = len(client.get("/metrics").get_data())
    with caplog.at_level(logging.INFO, logger="bazar.access"):
        made_up(2000, start=3)
    growth = len(client.get("/metrics").get_data()) - before
    assert growth < 300, f"/metrics grew by {growth} bytes"
    lines = [r.getMessage() for r in caplog.records if r.name == "bazar.access"]
    assert len(lines) == 6000 and max(len(line) for line in lines) < 120, max(lines, key=len)[:200]
    labels = {labels["method"] for _, labels, _ in app.metrics.samples("bazar_http_requests")}
    assert labels <= {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other"}, labels


def test_the_request_id_is_adopted_returned_and_forgotten(app):
    client = app.test_client()
    answer = client.get("/books/1", headers={REQUEST_ID_HEADER: "mine-1"})
    assert answer.headers[REQUEST_ID_HEADER] == "mine-1" and app.seen == ["mine-1"]
    generated = client.get("/books/1", headers={REQUEST_ID_HEADER: "not valid!"}).headers[REQUEST_ID_HEADER]
    assert generated != "not valid!" and app.seen[-1] == generated
    assert logs.current_request_id() is None  # nothing leaks out of the request


def test_an_access_line_names_method_rule_status_and_duration(app, caplog):
    with caplog.at_level(logging.DEBUG, logger="bazar.access"):
        answer = app.test_client().get("/books/7", headers={REQUEST_ID_HEADER: "acc-1"})
        assert not [r for r in caplog.records if r.name == "bazar.access"]  # not before it is sent
        answer.close()  # what the server does once it has sent the answer
        app.test_client().get("/metrics").close()
    lines = {r.route: r for r in caplog.records if r.name == "bazar.access"}
    line = lines["/books/<raw_id>"]
    assert (line.method, line.status, line.levelno) == ("GET", 200, logging.INFO) and line.duration_ms >= 0
    assert line.request_id == "acc-1"
    assert lines["/metrics"].levelno == logging.DEBUG  # what monitoring polls stays quiet


@pytest.mark.parametrize("ending", ["sys.exit(0)", "logging.shutdown(); os._exit(75)"])
def test_an_access_line_noted_just_before_the_process_ends_is_written(ending):
    """A configured process writes access lines from a background thread (web/logs.py);
    one noted just before an exit, or before a fatal error's logging.shutdown() and
    os._exit, must still reach stderr."""
    code = ("import logging, os, sys\n"
            "from bazar.web import logs\n"
            "logs.setup('frontend1')\n"
            "logs.log_access('GET', '/info/<raw_id>', 200, 0.001, 'the-last-one')\n" + ending)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "frontend1 INFO bazar.access: GET /info/<raw_id> 200 1.00 ms request_id=the-last-one" in done.stderr, \
        done.stderr


class HeaderRecorder:
    """A replica stand-in that records the request id header of each request it gets."""

    def __init__(self) -> None:
        self.seen: list[str | None] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                recorder.seen.append(self.headers.get(REQUEST_ID_HEADER))
                body = b"{}"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True).start()


def test_the_group_client_passes_the_current_request_id_on():
    replica = HeaderRecorder()
    client = GroupClient([replica.url])
    try:
        token = logs.begin_request("hop-7")
        try:
            client.read("/books/1")
        finally:
            logs.end_request(token)
        client.read("/books/1")
    finally:
        replica.server.shutdown()
        replica.server.server_close()
    assert replica.seen == ["hop-7", None]


@pytest.fixture
def idle_member():
    """A real RaftMember (a non-voting follower) whose PySyncObj never ticks, so that only
    the test drives `_note_role`, with stand-ins for what a tick would see."""
    conf = syncobj_conf(RaftConfig(), None, None)
    conf.autoTick = False
    member = RaftMember(None, ["127.0.0.1:1"], ReplicatedState(CatalogState()), conf)
    yield member
    member.syncobj.destroy()


def tick(member: RaftMember, term: int, leader: str | None, role: int = 0) -> int:
    node = None if leader is None else SimpleNamespace(address=leader)
    member._note_role(SimpleNamespace(_SyncObj__raftState=role, _SyncObj__raftLeader=node,
                                      raftCurrentTerm=term, selfNode=None))
    return member.leader_changes


def test_a_leader_change_is_a_new_term_with_a_leader_counted_once(idle_member):
    """bazar_raft_leader_changes_total: one per (term, leader) seen, so the same node
    elected again in a later term counts, however many ticks see it, and an election
    still under way (no leader) does not."""
    assert tick(idle_member, 0, None) == 0
    assert [tick(idle_member, 1, "a:1") for _ in range(3)] == [1, 1, 1]  # the first leader
    assert tick(idle_member, 2, None, role=1) == 1  # an election: no leader yet
    assert [tick(idle_member, 2, "a:1") for _ in range(3)] == [2, 2, 2]  # a re-elected in term 2
    assert tick(idle_member, 3, "b:1") == 3
    assert tick(idle_member, 4, "b:1") == 4  # re-elected, its new term seen at once
