"""Seeing inside a running cluster: /metrics on every process, request ids that follow one
purchase through three processes' logs, elections in the replicas' logs, and the
`bazar status` / `--version` command line. Real processes, over HTTP.
"""
from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from bazar import __version__
from bazar.local.cluster import LocalCluster, write_config

ROOT = Path(__file__).resolve().parents[2]
SECRET = "observability-test-secret-0123456789"
ADMIN_TOKEN = "observability-test-admin-token"
PURCHASES = 5
BOOK = 3

EVERY_PROCESS = {"bazar_http_requests", "bazar_http_request_duration_seconds"}
REPLICA = EVERY_PROCESS | {"bazar_raft_term", "bazar_raft_commit_index", "bazar_raft_applied_index",
                           "bazar_raft_is_leader", "bazar_raft_leader_changes",
                           "bazar_raft_commit_duration_seconds", "bazar_raft_commit_failures",
                           "bazar_journal_bytes", "bazar_journal_fsync_duration_seconds",
                           "bazar_outcomes_remembered"}
ORDER_REPLICA = REPLICA | {"bazar_purchase_stage_duration_seconds", "bazar_orders_pending"}
FRONTEND = EVERY_PROCESS | {"bazar_cache_hits", "bazar_cache_misses", "bazar_cache_invalidations",
                            "bazar_cache_flushes", "bazar_follower_lag_seconds"}


ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def scrape(url: str, admin: bool = False) -> dict:
    """GET /metrics, without any credential (a replica's) or with the admin token (the
    frontend's, on the public port): {family name: [samples]}."""
    response = requests.get(url + "/metrics", headers=ADMIN if admin else {}, timeout=5)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain; version=")  # the text format
    return {family.name: family.samples for family in text_string_to_metric_families(response.text)}


def value(families: dict, sample_name: str, **labels) -> float:
    """The value of the one sample named `sample_name` with (at least) `labels`; 0 if absent."""
    family = sample_name.removesuffix("_total").removesuffix("_count").removesuffix("_sum")
    found = [s.value for s in families.get(family, []) if s.name == sample_name
             and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) <= 1, (sample_name, labels, found)
    return found[0] if found else 0.0


def purchase_count(frontend_url: str) -> float:
    return value(scrape(frontend_url, admin=True), "bazar_http_requests_total", route="/purchase/<raw_id>",
                 method="POST", status="200")


def log_lines(cluster, name: str) -> list[dict]:
    """The JSON lines of process `name`'s log (every line must be one object)."""
    lines = (cluster.log_dir / f"{name}.log").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def eventually(condition, timeout: float = 10.0, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"{message}: not within {timeout:g} s")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def cluster():
    """A 3+3+1 cluster with a secret, an admin token and JSON logs; removed afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="bazar-test-"))
    local = LocalCluster(write_config(directory), log_dir=directory / "logs",
                         env={"BAZAR_SECRET": SECRET, "BAZAR_ADMIN_TOKEN": ADMIN_TOKEN, "BAZAR_LOG_FORMAT": "json"})
    try:
        local.start(timeout=60)
        yield local
    finally:
        local.stop()
        shutil.rmtree(directory, ignore_errors=True)


def test_every_process_serves_its_families_and_no_secret(cluster):
    """A replica's /metrics needs no credential; the frontend's, on the public port, needs
    the admin token (its request and cache counters count the sales)."""
    config = cluster.config
    expected = {n.http.url: REPLICA for n in config.catalog}
    expected.update({n.http.url: ORDER_REPLICA for n in config.order})
    expected[cluster.frontend_url] = FRONTEND
    anonymous = requests.get(cluster.frontend_url + "/metrics", timeout=5)
    assert anonymous.status_code == 401 and "bazar_" not in anonymous.text
    for url, families in expected.items():
        admin = url == cluster.frontend_url
        response = requests.get(url + "/metrics", headers=ADMIN if admin else {}, timeout=5)
        assert response.status_code == 200, url
        assert SECRET not in response.text and ADMIN_TOKEN not in response.text, url
        found = set(scrape(url, admin))
        assert families <= found, (url, families - found)
    for node in config.catalog + config.order:
        raft = scrape(node.http.url)
        assert value(raft, "bazar_raft_term", group=node.group) >= 1
        assert value(raft, "bazar_journal_bytes", group=node.group) > 0
        assert value(raft, "bazar_journal_fsync_duration_seconds_count", group=node.group) > 0
    leaders = sum(value(scrape(n.http.url), "bazar_raft_is_leader", group="catalog") for n in config.catalog)
    assert leaders == 1


def test_routes_are_rules_not_paths(cluster):
    for book in (1, 2, 5):
        assert requests.get(f"{cluster.frontend_url}/info/{book}", timeout=5).status_code == 200
    requests.get(f"{cluster.frontend_url}/no/such/thing/42", timeout=5)
    families = scrape(cluster.frontend_url, admin=True)
    routes = {s.labels["route"] for s in families["bazar_http_requests"]}
    assert "/info/<raw_id>" in routes and "unmatched" in routes
    assert not any(route.startswith("/info/") and route != "/info/<raw_id>" for route in routes), routes
    assert value(families, "bazar_http_requests_total", route="unmatched", status="404") >= 1


def order_totals(cluster, sample_name: str, **labels) -> float:
    """A sample summed over the order replicas (whichever the frontend reached coordinated)."""
    return sum(value(scrape(n.http.url), sample_name, **labels) for n in cluster.config.order)


def stage_totals(cluster, stage: str) -> float:
    """A purchase stage's count on the frontend (which coordinates purchases) and the order
    replicas (which coordinate those sent to them)."""
    return (value(scrape(cluster.frontend_url, admin=True), "bazar_purchase_stage_duration_seconds_count", stage=stage)
            + order_totals(cluster, "bazar_purchase_stage_duration_seconds_count", stage=stage))


def test_counters_are_exact_after_n_purchases(cluster):
    stages = ("begin", "take_stock", "finish")
    before = purchase_count(cluster.frontend_url)
    stages_before = {s: stage_totals(cluster, s) for s in stages}
    commits_before = order_totals(cluster, "bazar_raft_commit_duration_seconds_count", group="order")
    remembered_before = {n.id: value(scrape(n.http.url), "bazar_outcomes_remembered", group="order")
                         for n in cluster.config.order}
    for i in range(PURCHASES):
        response = requests.post(f"{cluster.frontend_url}/purchase/{BOOK}",
                                 headers={"Idempotency-Key": f"exact-{i}"}, timeout=10)
        assert response.status_code == 200, response.text
    assert purchase_count(cluster.frontend_url) == before + PURCHASES
    # A purchase is answered before its record applies (node/orders/purchase.py): the finish
    # stage times the record until it has, a moment after the last answer.
    deadline = time.monotonic() + 5
    while ((stage_totals(cluster, "finish") < stages_before["finish"] + PURCHASES
            or order_totals(cluster, "bazar_orders_pending") != 0)
           and time.monotonic() < deadline):
        time.sleep(0.1)
    # A purchase the catalog decides in time is never begun (recorded pending) first.
    added = {"begin": 0, "take_stock": PURCHASES, "finish": PURCHASES}
    for stage, count in stages_before.items():
        assert stage_totals(cluster, stage) == count + added[stage], stage
    assert order_totals(cluster, "bazar_orders_pending") == 0
    # Every order replica now remembers the new orders (each applied them); wait for followers.
    for node in cluster.config.order:
        deadline = time.monotonic() + 5
        while value(scrape(node.http.url), "bazar_outcomes_remembered", group="order") != \
                remembered_before[node.id] + PURCHASES and time.monotonic() < deadline:
            time.sleep(0.1)
        assert value(scrape(node.http.url), "bazar_outcomes_remembered", group="order") == \
            remembered_before[node.id] + PURCHASES, node.id
    # one commit a purchase in the order group (record), timed by the replica that asked for it
    assert order_totals(cluster, "bazar_raft_commit_duration_seconds_count", group="order") == \
        commits_before + PURCHASES


def test_cache_counters_match_the_cluster_view(cluster):
    for _ in range(3):
        requests.get(f"{cluster.frontend_url}/info/4", timeout=5)
    families = scrape(cluster.frontend_url, admin=True)
    cache = requests.get(f"{cluster.frontend_url}/cluster", headers=ADMIN, timeout=5).json()["cache"]
    # /cluster is read after the scrape, and nothing else reads the cache meanwhile
    assert value(families, "bazar_cache_hits_total") == cache["hits"] >= 2
    assert value(families, "bazar_cache_misses_total") == cache["misses"]
    assert 0 <= value(families, "bazar_follower_lag_seconds") < 1.0


def test_a_request_id_follows_one_purchase_through_three_logs(cluster):
    request_id = "trace-me.42_x"
    response = requests.post(f"{cluster.frontend_url}/purchase/{BOOK}",
                             headers={"X-Request-ID": request_id, "Idempotency-Key": "traced"}, timeout=10)
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == request_id

    def seen_by(name: str) -> list[dict]:
        return [line for line in log_lines(cluster, name) if line.get("request_id") == request_id]

    def answered(lines: list[dict]) -> list[dict]:
        return [line for line in lines if line["logger"] == "bazar.access" and line["status"] == 200]

    def check(name: str, lines: list[dict], route: str) -> None:
        access = answered(lines)
        assert len(access) == 1, (name, lines)
        assert access[0]["method"] == "POST" and access[0]["duration_ms"] > 0
        assert access[0]["route"] == route
        for line in lines:
            assert {"ts", "level", "node", "logger", "msg", "request_id"} <= set(line)
            assert line["node"] == name

    # Access lines are written by a background thread, up to 50 ms after the answer.
    check("frontend1", eventually(lambda: answered(seen_by("frontend1")) and seen_by("frontend1"),
                                  message="frontend1 logged the request's access line"), "/purchase/<raw_id>")
    # In each group exactly one replica answered it (its leader then; which one is read from
    # the logs, so a leader change right after the purchase, under load, changes nothing).
    for group in ("order", "catalog"):
        replicas = [n.id for n in cluster.config.group(group)]

        def handled() -> dict[str, list[dict]]:
            found = {name: seen_by(name) for name in replicas}
            return {name: lines for name, lines in found.items() if answered(lines)}

        by = eventually(handled, message=f"a {group} replica logged the request's access line")
        assert len(by) == 1, (group, by)
        (name, lines), = by.items()
        # The frontend asks the catalog, then sends the order's record on to the order group.
        check(name, lines, "/records" if group == "order" else "/purchase")


@pytest.mark.parametrize("supplied", ["has space", "x" * 65, "semi;colon", "caf\u00e9"])
def test_an_invalid_request_id_is_replaced_by_a_fresh_one(cluster, supplied):
    response = requests.get(f"{cluster.frontend_url}/info/1", headers={"X-Request-ID": supplied.encode()},
                            timeout=5)
    assert response.status_code == 200
    returned = response.headers["X-Request-ID"]
    assert returned != supplied and re.fullmatch(r"[A-Za-z0-9._-]{1,64}", returned)


def test_version_in_healthz_and_on_the_command_line(cluster):
    for url in [cluster.frontend_url] + [n.http.url for n in cluster.config.catalog]:
        assert requests.get(url + "/healthz", timeout=5).json()["version"] == __version__
    done = subprocess.run([sys.executable, "-m", "bazar", "--version"], capture_output=True, text=True,
                          timeout=30, cwd=ROOT)
    assert done.returncode == 0 and done.stdout.strip() == f"bazar {__version__}"


def test_status_json_and_watch(cluster):
    command = [sys.executable, "-m", "bazar", "status", "--json", "--config", str(cluster.config_path)]
    env = {**os.environ, "BAZAR_SECRET": SECRET}  # the cluster's: replicas answer only signed requests
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert status["ready"] is True
    assert status["groups"]["catalog"]["leader"] == cluster.leader("catalog")
    assert {n["id"] for n in status["groups"]["order"]["nodes"]} == {"order1", "order2", "order3"}

    watching = subprocess.Popen(command + ["--watch", "--interval", "0.2"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    try:
        time.sleep(3)
    finally:
        watching.send_signal(signal.SIGINT)
        out, err = watching.communicate(timeout=10)
    prints = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert len(prints) >= 3, (out, err)
    assert all(p["ready"] for p in prints)
    assert watching.returncode == 0, err


def test_status_refuses_a_bad_interval(cluster):
    done = subprocess.run([sys.executable, "-m", "bazar", "status", "--watch", "--interval", "0",
                           "--config", str(cluster.config_path)], capture_output=True, text=True,
                          timeout=30, cwd=ROOT)
    assert done.returncode == 2 and "--interval must be a positive number" in done.stderr


def test_an_election_is_logged_and_counted(make_cluster):
    cluster = make_cluster(env={"BAZAR_LOG_FORMAT": "json"})
    old = cluster.leader("catalog")
    survivors = [n for n in cluster.config.catalog if n.id != old]
    before = {n.id: value(scrape(n.http.url), "bazar_raft_leader_changes_total", group="catalog") for n in survivors}
    cluster.kill(old)
    new = eventually(lambda: cluster.leader("catalog") not in (None, old) and cluster.leader("catalog"),
                     message="a new catalog leader")
    for node in survivors:
        changes = eventually(lambda: value(scrape(node.http.url), "bazar_raft_leader_changes_total",
                                           group="catalog") > before[node.id], message=f"{node.id} counted it")
        assert changes
    raft_lines = [line for line in log_lines(cluster, new) if line["logger"] == "bazar.raft"]
    assert any(line["level"] == "INFO" and "election" in line["msg"] for line in raft_lines), raft_lines
    assert any(line["level"] == "INFO" and line["msg"].startswith("now leader") for line in raft_lines), raft_lines
    assert value(scrape(cluster.config.node(new).http.url), "bazar_raft_is_leader", group="catalog") == 1


def test_every_answer_given_before_sigterm_has_its_access_line(make_cluster):
    """Access lines wait in memory for the background writer (web/logs.py): a process told
    to stop must write them all before it exits. A client reads as fast as it can until
    the frontend is gone; every id it was answered must be in the frontend's log."""
    cluster = make_cluster(catalog=1, order=1, env={"BAZAR_LOG_FORMAT": "json"})
    answered: list[str] = []
    stop = threading.Event()

    def read_until_refused() -> None:
        with requests.Session() as session:
            for i in itertools.count():
                request_id = f"before-stop-{i}"
                try:
                    response = session.get(f"{cluster.frontend_url}/info/1", timeout=5,
                                           headers={"X-Request-ID": request_id})
                except requests.RequestException:
                    if stop.is_set():
                        return
                    continue
                if response.status_code == 200:
                    answered.append(request_id)

    reader = threading.Thread(target=read_until_refused)
    reader.start()
    eventually(lambda: len(answered) >= 100, message="100 answers")
    stop.set()
    cluster.kill("frontend1", signal.SIGTERM)
    reader.join(30)
    assert cluster.processes["frontend1"].returncode == 0
    logged = {line["request_id"] for line in log_lines(cluster, "frontend1")
              if line["logger"] == "bazar.access" and line["route"] == "/info/<raw_id>"}
    missing = [request_id for request_id in answered if request_id not in logged]
    assert not missing, f"{len(missing)} of {len(answered)} answers have no access line: {missing[:5]}"


def test_a_commit_without_quorum_is_counted_as_a_failure(make_cluster):
    # An admin write to the catalog: a commit the leader must make (a purchase is refused
    # before any commit once the order leader has lost its majority).
    cluster = make_cluster(catalog=3, order=1)
    survivor = cluster.leader("catalog")
    for node in cluster.config.catalog:
        if node.id != survivor:
            cluster.kill(node.id)
    url = cluster.config.node(survivor).http.url
    before = sum(s.value for s in scrape(url).get("bazar_raft_commit_failures", []) if s.name.endswith("_total"))
    response = requests.put(f"{cluster.frontend_url}/books/1", json={"restock": 1},
                            headers={"Idempotency-Key": "no-quorum", **cluster.admin_headers}, timeout=30)
    assert response.status_code == 503
    failures = [s for s in scrape(url)["bazar_raft_commit_failures"] if s.name.endswith("_total")]
    assert sum(s.value for s in failures) > before
    assert all(s.labels["group"] == "catalog" and s.labels["reason"] for s in failures), failures
