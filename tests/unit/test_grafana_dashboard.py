"""deploy/grafana-dashboard.json charts every family web/metrics.py defines, and names no other.

The families are read from the code's own registry (every process's collectors, built on
stand-ins), not listed by hand, so a family added there fails this test until it is charted.
(Whether the dashboard's queries run is checked against a real Prometheus in
tests/integration/test_prometheus.py.)
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

from bazar.web import metrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def defined_families() -> set[str]:
    """Every bazar_* family a frontend, catalog or order process registers, as Prometheus
    names it (counters with _total)."""
    registry = metrics.Metrics()  # every process: the HTTP families
    member = SimpleNamespace(
        status=lambda: {"term": 1, "commit_index": 1, "applied_index": 1, "role": "leader"},
        journal_bytes=0, leader_changes=0,
        raft_port_stats=lambda: {"closed": {"handshake_timeout": 0}, "listener_rebinds": 0},
        state=SimpleNamespace(read=lambda query: (query(SimpleNamespace(remembered=lambda: 0)),)))
    metrics.RaftMetrics(registry, "catalog", member)  # replicas
    metrics.OrderMetrics(registry, lambda: 0)  # order replicas
    metrics.CatalogMetrics(registry, lambda: (0, None))  # catalog replicas
    stats = dict.fromkeys([key for key, _ in metrics.FrontendCollector.COUNTERS] + ["size"], 0)
    registry.registry.register(metrics.FrontendCollector(  # the frontend
        SimpleNamespace(snapshot_stats=lambda: stats),
        SimpleNamespace(member=SimpleNamespace(seconds_since_leader=lambda: None))))
    return {family.name + ("_total" if family.type == "counter" else "")
            for family in registry.registry.collect() if family.name.startswith("bazar_")}


FAMILIES = defined_families()

def named(expression: str) -> set[str]:
    return {re.sub(r"_(bucket|sum|count)$", "", name) for name in re.findall(r"bazar_[a-z_]+", expression)}


def test_every_family_is_charted_and_nothing_unknown_is():
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    used = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            used |= named(target["expr"])
    assert used == FAMILIES


def test_panels_do_not_overlap():
    cells = set()
    for panel in json.loads((DEPLOY / "grafana-dashboard.json").read_text())["panels"]:
        box = panel["gridPos"]
        assert box["x"] + box["w"] <= 24, panel["title"]
        mine = {(x, y) for x in range(box["x"], box["x"] + box["w"]) for y in range(box["y"], box["y"] + box["h"])}
        assert not mine & cells, panel["title"]
        cells |= mine


def test_the_families_are_read_from_the_code():
    # A stand-in for each kind of process, not a partial list: spot-check one family of each.
    assert {"bazar_http_requests_total", "bazar_raft_commit_failures_total", "bazar_outcomes_remembered",
            "bazar_orders_pending", "bazar_cache_entries"} <= FAMILIES
