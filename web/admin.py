"""Bazar's own look inside a running cluster: each replica's /status and /state.

One client for everything that watches replicas: `bazar status`, the frontend's
/cluster and /readyz, the local cluster runner, chaos, bench and the tests. It
talks to replicas directly (never through a frontend), signs its requests
(web/signing.py), and never raises for a replica that does not answer: a
replica that is down, paused or cut off is simply reported as unreachable (None).

What it reads:
- `/status`: role, term, leader, commit and applied index, quorum, `serving`.
- `/state`: the replicated state as the state machine's `view()` (plain JSON with
  named fields, stable across snapshot formats) and its digest; equal digests mean
  equal states.
- `/backup`: on a group's leader, the state as its snapshot holds it, read at a
  committed index (`bazar backup`).
"""
from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable

import urllib3
from urllib3.exceptions import HTTPError

from bazar.cluster.config import GROUPS, ClusterConfig, NodeConfig
from bazar.web.signing import Signer

log = logging.getLogger("bazar.admin")

STATUS_TIMEOUT = 0.5  # a replica that takes longer is paused, cut off or overloaded
STATE_TIMEOUT = 5.0   # a whole state can be large
BACKUP_TIMEOUT = 60.0  # a whole state read on a leader that serves its load meanwhile


class Admin:
    """Ask the replicas of `config` how they are. `secret`: the cluster secret to send
    (by default the one this process is given, `config.secret()`)."""

    def __init__(self, config: ClusterConfig, secret: str | None = None) -> None:
        self.config = config
        self.signer = Signer(secret if secret is not None else config.secret())
        # Thread-safe (the frontend's request threads share one Admin, and collect() asks every
        # replica at once), keep-alive, and never through a proxy: replicas are reached directly.
        self._pool = urllib3.PoolManager(maxsize=4, block=False, retries=False)

    def status(self, node: str | NodeConfig, timeout: float = STATUS_TIMEOUT) -> dict | None:
        """The replica's GET /status, or None if it does not answer in time."""
        return self._get(node, "/status", timeout)

    def state(self, node: str | NodeConfig, timeout: float = STATE_TIMEOUT) -> dict | None:
        """The replica's GET /state (`id`, `applied_index`, `digest`, `state`), or None."""
        return self._get(node, "/state", timeout)

    def backup(self, node: str | NodeConfig, timeout: float = BACKUP_TIMEOUT) -> dict | None:
        """The replica's GET /backup (its group's state at a committed index; the leader
        alone answers), or None."""
        return self._get(node, "/backup", timeout)

    def states(self, group: str, nodes: Iterable[str] | None = None,
               timeout: float = STATE_TIMEOUT) -> dict[str, dict]:
        """/state of every replica of `group` (or of `nodes`) that answers, by node id."""
        wanted = [n.id for n in self.config.group(group)] if nodes is None else list(nodes)
        found = {}
        for node_id in wanted:
            state = self.state(node_id, timeout)
            if state is not None:
                found[node_id] = state
        return found

    def leader(self, group: str, among: Iterable[str] | None = None) -> str | None:
        """The replica of `group` (or of `among`) that says it leads, in the highest term."""
        names = [n.id for n in self.config.group(group)] if among is None else list(among)
        leaders = []
        for name in names:
            status = self.status(name)
            if status is not None and status.get("role") == "leader":
                leaders.append((status["term"], name))
        return max(leaders)[1] if leaders else None

    def collect(self) -> dict:
        """Each group's replicas (role, term, commit and applied index, reachable) and leader."""
        nodes = list(self.config.catalog + self.config.order)
        with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
            reports = list(pool.map(self._report, nodes))
        groups = {}
        for name in GROUPS:
            members = [r for r in reports if r["group"] == name]
            leaders = [m["id"] for m in members if m.get("role") == "leader"]
            reachable = sum(1 for m in members if m["reachable"])
            leader = next((m for m in members if m["id"] == leaders[0]), {}) if len(leaders) == 1 else {}
            groups[name] = {
                "leader": leader.get("id"),
                "has_quorum": bool(leader.get("has_quorum")) and reachable > len(members) // 2,
                "serving": bool(leader.get("serving")),
                "nodes": members,
            }
        return groups

    def _report(self, node: NodeConfig) -> dict:
        report = {"id": node.id, "group": node.group, "http": node.http.url, "raft": str(node.raft)}
        status = self.status(node)
        if status is None:
            return {**report, "reachable": False}
        return {**report, "reachable": True, "role": status["role"], "term": status["term"],
                "commit_index": status["commit_index"], "applied_index": status["applied_index"],
                "has_quorum": status["has_quorum"], "serving": status.get("serving", True),
                "commits": status.get("commits")}

    def _get(self, node: str | NodeConfig, path: str, timeout: float) -> dict | None:
        url = (self.config.node(node) if isinstance(node, str) else node).http.url + path
        try:
            response = self._pool.request("GET", url, headers=self.signer.headers("GET", url), redirect=False,
                                          timeout=urllib3.Timeout(total=timeout))
            if response.status == 403:
                log.warning("%s refused this process's signed request (is this the cluster's "
                            "secret? see README, Security model): %s", url, response.data[:200])
            if response.status != 200:
                return None
            return json.loads(response.data)
        except (HTTPError, ValueError):
            return None


def ready(groups: dict) -> bool:
    """True while both groups have a leader with quorum that has finished starting up."""
    return all(g["has_quorum"] and g["serving"] for g in groups.values())


def format_table(groups: dict) -> str:
    """A fixed-width table of every replica, for `bazar status`."""
    lines = [f"{'group':8} {'node':10} {'role':10} {'term':>5} {'commit':>8} {'applied':>8}  address"]
    for name, group in groups.items():
        for node in group["nodes"]:
            if node["reachable"]:
                lines.append(f"{name:8} {node['id']:10} {node['role']:10} {node['term']:>5} "
                             f"{node['commit_index']:>8} {node['applied_index']:>8}  {node['http']}")
            else:
                lines.append(f"{name:8} {node['id']:10} {'DOWN':10} {'-':>5} {'-':>8} {'-':>8}  {node['http']}")
        leader = group["leader"] or "none"
        lines.append(f"{'':8} leader: {leader}, quorum: {'yes' if group['has_quorum'] else 'NO'}")
    return "\n".join(lines)
