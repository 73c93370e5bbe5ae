"""Ask every replica how it sees its group; summarise who leads and who is reachable."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import requests

from cluster.config import GROUPS, ClusterConfig, NodeConfig

POLL_TIMEOUT = 0.5


def collect(config: ClusterConfig, headers: dict | None = None) -> dict:
    """Each group's replicas (role, term, commit and applied index, reachable) and its leader."""
    nodes = list(config.catalog + config.order)
    with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
        reports = list(pool.map(lambda n: _poll(n, headers), nodes))
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


def ready(groups: dict) -> bool:
    """True while both groups have a leader with quorum that has finished starting up."""
    return all(g["has_quorum"] and g["serving"] for g in groups.values())


def _poll(node: NodeConfig, headers: dict | None) -> dict:
    report = {"id": node.id, "group": node.group, "http": node.http.url, "raft": str(node.raft)}
    try:
        response = requests.get(node.http.url + "/status", timeout=POLL_TIMEOUT, headers=headers)
        status = response.json()
    except (requests.RequestException, ValueError):
        return {**report, "reachable": False}
    return {**report, "reachable": True, "role": status["role"], "term": status["term"],
            "commit_index": status["commit_index"], "applied_index": status["applied_index"],
            "has_quorum": status["has_quorum"], "serving": status.get("serving", True)}


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
