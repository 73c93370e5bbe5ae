"""deploy/grafana-dashboard.json charts every family the README promises, and names no other.

(Whether its queries run is checked against a real Prometheus in tests/integration/test_prometheus.py.)
"""
from __future__ import annotations

import json
import re
from pathlib import Path

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
FAMILIES = {
    "bazar_http_requests_total", "bazar_http_request_duration_seconds", "bazar_raft_term",
    "bazar_raft_commit_index", "bazar_raft_applied_index", "bazar_raft_is_leader",
    "bazar_raft_leader_changes_total", "bazar_raft_commit_duration_seconds", "bazar_raft_commit_failures_total",
    "bazar_cache_hits_total", "bazar_cache_misses_total", "bazar_cache_invalidations_total",
    "bazar_cache_flushes_total", "bazar_follower_lag_seconds", "bazar_purchase_stage_duration_seconds",
    "bazar_orders_pending", "bazar_journal_fsync_duration_seconds", "bazar_journal_bytes",
}


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
