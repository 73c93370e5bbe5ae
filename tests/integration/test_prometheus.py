"""A real Prometheus (Debian's `prometheus` package) scrapes a running cluster, with the
configuration `bazar prometheus-config` makes for it: every target is up, and every
family dashboards and alerts rely on is there.

The package must be installed (`./bazar.sh test` installs it); the test fails, never
skips, without it. Prometheus runs on a free loopback port with its data in a temporary
directory; one cluster and one Prometheus serve the module's tests (each counts from what
was there before it) and are stopped when the module ends.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from bazar.cluster.prometheus import prometheus_yaml
from bazar.local.cluster import _die_with_parent, free_ports
from tests.integration.probes import buy_until_done

PROMETHEUS = Path("/usr/bin/prometheus")
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"

# Every bazar_* family each job serves, named as Prometheus does (counters with _total): the
# same families as web/metrics.py and docs/operations.md's table, checked both ways below (each is
# found, and a target serves no other), so a family added to the code fails here until it is
# listed. Histograms are looked up by their _count series.
EVERY_PROCESS = {"bazar_http_requests_total", "bazar_http_request_duration_seconds"}
REPLICA = EVERY_PROCESS | {"bazar_raft_term", "bazar_raft_commit_index", "bazar_raft_applied_index",
                           "bazar_raft_is_leader", "bazar_raft_leader_changes_total",
                           "bazar_raft_commit_duration_seconds", "bazar_raft_commit_failures_total",
                           "bazar_journal_bytes", "bazar_journal_fsync_duration_seconds",
                           "bazar_outcomes_remembered", "bazar_raft_connections_closed_total",
                           "bazar_raft_listener_rebinds_total"}
FAMILIES = {
    "bazar-frontend": EVERY_PROCESS | {"bazar_cache_hits_total", "bazar_cache_misses_total",
                                       "bazar_cache_invalidations_total", "bazar_cache_flushes_total",
                                       "bazar_cache_stale_fills_refused_total", "bazar_cache_entries",
                                       "bazar_follower_lag_seconds", "bazar_purchase_stage_duration_seconds"},
    "bazar-catalog": REPLICA | {"bazar_purchases_unrecorded", "bazar_purchases_unrecorded_oldest_seconds"},
    "bazar-order": REPLICA | {"bazar_purchase_stage_duration_seconds", "bazar_orders_pending"},
}
HISTOGRAMS = {"bazar_http_request_duration_seconds", "bazar_raft_commit_duration_seconds",
              "bazar_journal_fsync_duration_seconds", "bazar_purchase_stage_duration_seconds"}
# Counted only when a commit fails, by reason: no series on a healthy cluster, so only its
# metadata (the HELP and TYPE lines every scrape carries) is checked for it.
ONLY_ON_FAILURE = {"bazar_raft_commit_failures_total"}

def query(base: str, promql: str) -> list[dict]:
    response = requests.get(f"{base}/api/v1/query", params={"query": promql}, timeout=5)
    response.raise_for_status()
    return response.json()["data"]["result"]


def wait_for(condition, timeout: float, message: str):
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = condition()
        except requests.RequestException:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"{message}: not within {timeout:g} s")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def prometheus(shared_cluster):
    if not os.access(PROMETHEUS, os.X_OK):
        pytest.fail("this test needs Debian's prometheus package: apt-get install -y prometheus", pytrace=False)
    cluster = shared_cluster
    tmp_path = Path(tempfile.mkdtemp(prefix="bazar-prometheus-"))
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(prometheus_yaml(cluster.config, scrape_interval="1s"))
    shutil.copy(DEPLOY / "bazar-alerts.yml", tmp_path / "bazar-alerts.yml")
    # The frontend's /metrics needs the admin token: beside the configuration, where the
    # generated file names it (without it the frontend target would be down, 401).
    token_file = tmp_path / "admin-token"
    token_file.write_text(cluster.admin_token + "\n")
    token_file.chmod(0o600)
    port = free_ports(1, "127.0.0.1")[0]
    log = open(tmp_path / "prometheus.log", "wb")
    process = subprocess.Popen(
        [str(PROMETHEUS), f"--config.file={config_file}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h"],
        stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)  # never outlives the test
    try:
        yield cluster, f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.mark.timeout(180)
def test_prometheus_finds_every_target_up_and_every_family(prometheus):
    cluster, base = prometheus
    expected = {p.id for p in cluster.config.catalog + cluster.config.order + cluster.config.frontends}
    before = purchases_counted(cluster)
    # A purchase (stages, commits), bought as a careful client does: a 503 means "ask again".
    response = buy_until_done(cluster.frontend_url, 1, "prometheus-purchase", time.monotonic() + 15)
    assert response.status_code == 200

    wait_all_up(cluster, base)
    up = {r["metric"]["node"]: r["value"][1] for r in query(base, "up")}
    assert up == {node: "1" for node in expected}

    for job, families in FAMILIES.items():
        nodes = {n for n in expected if f"bazar-{_role(n)}" == job}
        for family in sorted(families - ONLY_ON_FAILURE):
            name = family + "_count" if family in HISTOGRAMS else family
            found = wait_for(lambda: {r["metric"]["node"] for r in query(base, f'{name}{{job="{job}"}}')} >= nodes,
                             30, f"{name} from every target of {job}")
            assert found
        # What each target told Prometheus it serves: every family of its job, and no other.
        served = wait_for(lambda: _served(base, job, len(nodes), families), 30, f"the metadata of {job}")
        assert served == {instance: families for instance in served}, (job, served)
    leaders = query(base, 'sum by (group) (bazar_raft_is_leader)')
    assert {r["metric"]["group"]: r["value"][1] for r in leaders} == {"catalog": "1", "order": "1"}
    rules = requests.get(f"{base}/api/v1/rules", timeout=5).json()["data"]["groups"]
    loaded = [rule for group in rules for rule in group["rules"]]
    written = [rule["alert"] for group in yaml.safe_load((DEPLOY / "bazar-alerts.yml").read_text())["groups"]
               for rule in group["rules"]]
    assert sorted(rule["name"] for rule in loaded) == sorted(written), loaded   # every rule, loaded
    assert all(rule["health"] != "err" for rule in loaded), loaded

    # The frontend counted exactly this purchase, and Prometheus scraped that count.
    assert purchases_counted(cluster) == before + 1
    counted = f"{before + 1:g}"
    wait_for(lambda: [r for r in query(base, PURCHASES_200) if r["value"][1] == counted], 30, "the purchase counted")
    assert [r["value"][1] for r in query(base, PURCHASES_200)] == [counted]


PURCHASES_200 = 'bazar_http_requests_total{job="bazar-frontend",route="/purchase/<raw_id>",status="200"}'


def purchases_counted(cluster) -> float:
    """The frontend's own count of purchases answered 200, from its /metrics (0 before any)."""
    response = requests.get(f"{cluster.frontend_url}/metrics", headers=cluster.admin_headers, timeout=5)
    assert response.status_code == 200, response.text[:200]
    text = response.text
    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples
               if sample.name == "bazar_http_requests_total" and sample.labels.get("route") == "/purchase/<raw_id>"
               and sample.labels.get("status") == "200")


def wait_all_up(cluster, base: str) -> None:
    expected = {p.id for p in cluster.config.catalog + cluster.config.order + cluster.config.frontends}

    def all_up():
        targets = requests.get(f"{base}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        health = {t["labels"]["node"]: t["health"] for t in targets}
        return health if set(health) == expected and all(h == "up" for h in health.values()) else None

    wait_for(all_up, 60, "every target up")


def _served(base: str, job: str, targets: int, families: set[str]) -> dict | None:
    """{instance: the bazar_* families it serves}, from Prometheus' targets metadata (what the
    HELP and TYPE lines of its last scrapes declared, series or not), once every target of
    `job` declares at least `families`."""
    response = requests.get(f"{base}/api/v1/targets/metadata", params={"match_target": f'{{job="{job}"}}'},
                            timeout=5)
    response.raise_for_status()
    served: dict[str, set[str]] = {}
    for entry in response.json()["data"]:
        names = served.setdefault(entry["target"]["instance"], set())
        if entry["metric"].startswith("bazar_"):
            names.add(entry["metric"])
    complete = len(served) == targets and all(names >= families for names in served.values())
    return served if complete else None


def _role(node: str) -> str:
    return node.rstrip("0123456789")


@pytest.mark.timeout(180)
def test_every_grafana_query_and_annotation_runs_on_real_metrics(prometheus):
    cluster, base = prometheus
    wait_all_up(cluster, base)
    for i in range(8):  # traffic over several scrapes, so that rates see counters rise
        requests.get(f"{cluster.frontend_url}/info/{1 + i % 5}", timeout=5)
        assert requests.post(f"{cluster.frontend_url}/purchase/2", timeout=10).status_code == 200
        time.sleep(0.5)
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    expressions = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    expressions += [a["expr"] for a in dashboard["annotations"]["list"]]
    wait_for(lambda: query(base, 'sum(rate(bazar_purchase_stage_duration_seconds_count[1m]))')
             and float(query(base, 'sum(rate(bazar_purchase_stage_duration_seconds_count[1m]))')[0]["value"][1]) > 0,
             60, "purchase rates")
    empty = []
    for expression in expressions:
        response = requests.get(f"{base}/api/v1/query", params={"query": expression}, timeout=5)
        assert response.status_code == 200 and response.json()["status"] == "success", (expression, response.text)
        if not response.json()["data"]["result"]:
            empty.append(expression)
    # Only what needs a failure to show can be empty on a healthy cluster.
    assert all("commit_failures" in e or "changes(" in e for e in empty), empty
