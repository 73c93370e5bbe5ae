"""Small looks and pokes at a running bench cluster: stock, books, cache counters, memory,
the disk's own fsync time, and waiting until a cluster or a replica has settled."""
from __future__ import annotations

import os
import secrets
import statistics
import threading
import time
from pathlib import Path

import requests

from bazar.bench import measure
from bazar.local.cluster import LocalCluster

BIG_STOCK = 1_000_000
# The admin token of every cluster this bench run starts (bench/phases.py gives it to them):
# setting stock and adding books are admin writes.
ADMIN_TOKEN = secrets.token_urlsafe(32)
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SPREAD_TOPIC = "bench spread"


def journal_fsyncs(cluster: LocalCluster) -> dict[str, dict]:
    """Each replica's own count and total seconds of journal fsyncs so far, from its
    `bazar_journal_fsync_duration_seconds` histogram: {node id: {"group", "count", "seconds"}}."""
    from prometheus_client.parser import text_string_to_metric_families

    found = {}
    for node in cluster.config.catalog + cluster.config.order:
        text = requests.get(f"{node.http.url}/metrics", timeout=5).text
        totals = {"group": node.group, "count": 0.0, "seconds": 0.0}
        for family in text_string_to_metric_families(text):
            if family.name == "bazar_journal_fsync_duration_seconds":
                for sample in family.samples:
                    if sample.name.endswith("_count"):
                        totals["count"] += sample.value
                    elif sample.name.endswith("_sum"):
                        totals["seconds"] += sample.value
        found[node.id] = totals
    return found


def fsyncs_per_purchase(before: dict, after: dict, leaders: dict[str, str], purchases: int) -> dict:
    """What the group leaders' fsyncs cost each purchase, between two `journal_fsyncs` looks.

    A purchase commits in the catalog group (take the stock; the buyer waits for it) and
    then in the order group (its record, after the answer, with the records of the next
    RECORD_DELAY in one round, frontend/checkout.py); each commit waits for one fsync round, the leader's own fsync
    overlapping its followers'. The leaders' count per purchase and mean time, measured
    inside the replicas, therefore tell how much of a purchase is disk time; `path_ms`
    counts the groups on the buyer's path (PATH_GROUPS)."""
    groups = {}
    for group, leader in leaders.items():
        count = after[leader]["count"] - before[leader]["count"]
        seconds = after[leader]["seconds"] - before[leader]["seconds"]
        groups[group] = {"leader": leader, "per_purchase": round(count / purchases, 2),
                         "mean_ms": round(1000 * seconds / count, 3) if count else None,
                         "on_path": group in PATH_GROUPS}
    path = sum(g["per_purchase"] * g["mean_ms"] for g in groups.values()
               if g["mean_ms"] is not None and g["on_path"])
    return {"groups": groups, "path_ms": round(path, 3)}


PATH_GROUPS = ("catalog",)  # the groups whose commits a purchase's answer waits for


def purchase_stages(cluster: LocalCluster) -> dict[str, dict]:
    """`bazar_purchase_stage_duration_seconds` so far, summed over the frontend and the order
    replicas (whichever coordinated): {stage: {"count", "seconds"}}."""
    from prometheus_client.parser import text_string_to_metric_families

    totals: dict[str, dict] = {}
    sources = [(cluster.frontend_url, cluster.admin_headers)] + [(n.http.url, {}) for n in cluster.config.order]
    for url, headers in sources:
        text = requests.get(f"{url}/metrics", headers=headers, timeout=5).text
        for family in text_string_to_metric_families(text):
            if family.name != "bazar_purchase_stage_duration_seconds":
                continue
            for sample in family.samples:
                stage = totals.setdefault(sample.labels["stage"], {"count": 0.0, "seconds": 0.0})
                if sample.name.endswith("_count"):
                    stage["count"] += sample.value
                elif sample.name.endswith("_sum"):
                    stage["seconds"] += sample.value
    return totals


def stage_means(before: dict, after: dict) -> dict[str, dict]:
    """Each purchase stage's count and mean time between two `purchase_stages` looks. The
    buyer waits for take_stock (and begin, only when the catalog could not decide in time);
    finish times the order's record from the answer until applied."""
    means = {}
    for stage, totals in after.items():
        count = totals["count"] - before.get(stage, {}).get("count", 0.0)
        seconds = totals["seconds"] - before.get(stage, {}).get("seconds", 0.0)
        means[stage] = {"count": int(count), "mean_ms": round(1000 * seconds / count, 3) if count else None}
    return means


def process_roles(cluster: LocalCluster) -> dict[str, str]:
    """Each running process's role now: "<group> leader", "<group> follower" or "frontend"."""
    leaders = {group: cluster.leader(group) for group in ("catalog", "order")}
    roles = {frontend.id: "frontend" for frontend in cluster.config.frontends}
    for node in cluster.config.catalog + cluster.config.order:
        roles[node.id] = f"{node.group} {'leader' if leaders[node.group] == node.id else 'follower'}"
    return roles


def cpu_by_role(cpu_ms_per_op: dict[str, float], roles: dict[str, str]) -> dict[str, dict]:
    """Server CPU per request summed by role: {role: {"processes", "ms"}} (followers: all of
    them together; divide by `processes` for one)."""
    by_role: dict[str, dict] = {}
    for name, ms in cpu_ms_per_op.items():
        role = by_role.setdefault(roles.get(name, "other"), {"processes": 0, "ms": 0.0})
        role["processes"] += 1
        role["ms"] = round(role["ms"] + ms, 3)
    return by_role


def rss_mb(pid: int) -> float | None:
    """Resident set size of `pid` in MB (VmRSS from /proc/<pid>/status)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def fsync_latency(directory: Path, count: int = 200, name: str = "fsync-probe") -> dict:
    """p50 and p99 of fsync after appending a 200-byte record to a file in `directory`."""
    path = directory / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    times = []
    try:
        for _ in range(count):
            os.write(fd, b"x" * 200)
            started = time.perf_counter()
            os.fsync(fd)
            times.append((time.perf_counter() - started) * 1000)
    finally:
        os.close(fd)
        path.unlink()
    return {"p50_ms": measure.percentile(times, 50), "p99_ms": measure.percentile(times, 99)}


def concurrent_fsync_latency(directory: Path, writers: int, count: int = 200) -> float:
    """The median of the writers' p50 fsync time when `writers` threads each append to and
    fsync a file of their own in `directory` at once, as the replicas of a group sharing one
    disk do (fsync releases the GIL). On one filesystem they wait for one another."""
    results: list[float] = []
    threads = [threading.Thread(target=lambda i=i: results.append(
        fsync_latency(directory, count, name=f"fsync-probe-{i}")["p50_ms"])) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statistics.median(results)


def put(url: str, book: int, body: dict) -> dict:
    response = requests.put(f"{url}/books/{book}", json=body, timeout=10, headers=ADMIN)
    response.raise_for_status()
    return response.json()


def stock(url: str, book: int) -> int:
    """The book's stock, read linearizably (a strong read, confirmed by a read index)."""
    response = requests.get(f"{url}/info/{book}?consistency=strong", timeout=10)
    response.raise_for_status()
    return response.json()["stock"]


def settled_stock(url: str, book: int, quiet: float = 0.5, timeout: float = 30.0) -> int:
    """The book's stock once it has not moved for `quiet` seconds: purchases a load
    generator left in flight when it stopped still complete after it has gone."""
    deadline = time.monotonic() + timeout
    last = stock(url, book)
    while True:
        time.sleep(quiet)
        now = stock(url, book)
        if now == last or time.monotonic() > deadline:
            return now
        last = now


def prepare_books(url: str, count: int) -> list[int]:
    """Add `count` books with a large stock, one per client of the spread run; their ids."""
    ids = []
    for i in range(count):
        response = requests.post(f"{url}/books", json={"title": f"Bench book {i + 1}", "topic": SPREAD_TOPIC,
                                                       "price": 1.0, "stock": BIG_STOCK}, timeout=10,
                                 headers=ADMIN)
        response.raise_for_status()
        ids.append(response.json()["id"])
    return ids


def cache_stats(url: str) -> dict | None:
    """The frontend cache's counters from GET /cluster (the admin's view: the public one has
    no counter), when the frontend has a cache."""
    try:
        return requests.get(url + "/cluster", headers=ADMIN, timeout=5).json().get("cache")
    except (requests.RequestException, ValueError):
        return None


def oversold_check(initial: int, final: int, load: dict) -> dict:
    """Stock must fall by exactly the number of successful purchases, and never below zero."""
    successes = load["ok_total"]
    ambiguous = sum(n for status, n in load["statuses"].items() if status not in ("200", "409"))
    return {"initial_stock": initial, "final_stock": final, "successes": successes,
            "ambiguous": ambiguous,
            "consistent": final == initial - successes,
            "oversold": max(0, successes - initial) + max(0, -final),
            "stock_taken_without_success": max(0, (initial - final) - successes)}


def wait_settled(cluster: LocalCluster, timeout: float = 60.0) -> None:
    """Every process up, the frontend ready, and each group led by a replica all others follow."""
    cluster.wait_ready(timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(cluster.leader(g) for g in ("catalog", "order")):
            time.sleep(0.3)
            return
        time.sleep(0.05)
    raise TimeoutError("the cluster did not settle")


def wait_caught_up(cluster: LocalCluster, name: str, timeout: float = 60.0) -> None:
    """Until replica `name` follows a leader and has applied what that leader had committed."""
    node = cluster.config.node(name)
    deadline = time.monotonic() + timeout
    target = None
    while time.monotonic() < deadline:
        leader = cluster.leader(node.group)
        if leader and leader != name and target is None:
            target = (cluster.status(leader) or {}).get("commit_index")
        mine = cluster.status(name) or {}
        if target is not None and mine.get("leader") and mine.get("applied_index", 0) >= target:
            cluster.wait_ready(max(1.0, deadline - time.monotonic()))
            return
        time.sleep(0.05)
    raise TimeoutError(f"{name} did not catch up within {timeout:.0f} s")
