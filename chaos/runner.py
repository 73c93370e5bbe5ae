"""`bazar chaos`: start a cluster, run the workload and the nemesis, heal, check.

Every process, firewall rule and paused process is restored on the way out,
also after Ctrl-C, SIGTERM, or an exception in the runner itself.
"""
from __future__ import annotations

import json
import logging
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from bazar import plotting
from bazar.chaos import checker, plot
from bazar.chaos.history import save_history
from bazar.chaos.nemesis import COMPACTION_FORCED, FAULT_KINDS, NEEDS_FIREWALL, Nemesis, plan
from bazar.chaos.network import Firewall, unavailable_reason
from bazar.chaos.workload import Recorder, Workload
from bazar.consensus.storage import POWER_CUT_ENV
from bazar.local.cluster import LocalCluster, write_config

log = logging.getLogger("bazar.chaos")

INITIAL_STOCK = 60
HEAL_TIMEOUT = 60.0
CONVERGE_TIMEOUT = 30.0


@dataclass
class ChaosOptions:
    duration: float = 60.0
    clients: int = 6
    faults: tuple[str, ...] = FAULT_KINDS
    seed: int = 1
    out: Path = Path("chaos-results")
    items: tuple[int, ...] = (1, 2, 3)
    target: Path | None = None  # a running cluster's file: workload and checks only, no faults


def run(options: ChaosOptions) -> int:
    """Run one chaos experiment; print a summary; 0 only if every check passed.

    The timeline plot is drawn when matplotlib is installed; without it one line says so,
    and the results and the exit status are the same."""
    options.out.mkdir(parents=True, exist_ok=True)
    unavailable = {}
    firewall_reason = unavailable_reason() if NEEDS_FIREWALL & set(options.faults) else None
    if firewall_reason:
        unavailable = {kind: firewall_reason for kind in options.faults if kind in NEEDS_FIREWALL}
    kinds = [k for k in options.faults if k not in unavailable]

    if options.target is not None and kinds:
        raise ValueError("a running cluster is not ours to kill, pause or cut: use --faults none with --target")
    workdir = Path(tempfile.mkdtemp(prefix="bazar-chaos-"))
    # kill-compacting needs compactions to kill: force one every few hundred entries (that also
    # keeps journals short, which the power-cut test mode copies whole at every fsync).
    sections = {"raft": COMPACTION_FORCED} if {"kill-compacting", "power-cut"} & set(kinds) else {}
    config_path = options.target or write_config(workdir, distinct_hosts=True, **sections)
    # power-cut needs the storage test mode: every replica keeps a copy of what it made durable.
    env = {POWER_CUT_ENV: str(workdir / "durable")} if "power-cut" in kinds else None
    # A running cluster (--target) keeps the secret and admin token it has: never make them for it.
    cluster = LocalCluster(config_path, log_dir=options.out / "logs", env=env,
                           generate_secret=options.target is None, generate_admin_token=options.target is None)
    firewall = Firewall() if NEEDS_FIREWALL & set(kinds) else None
    previous_sigterm = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        if firewall is not None:
            firewall.open()
        if options.target is None:
            cluster.start(timeout=HEAL_TIMEOUT)
        cluster.wait_ready(HEAL_TIMEOUT)
        initial = prepare_items(cluster, options.items)
        schedule = plan(kinds, options.duration, options.seed)
        t0 = time.monotonic()
        recorder = Recorder(t0)
        write_load = threading.Event()
        nemesis = Nemesis(cluster, firewall, write_load)
        workload = Workload(cluster.frontend_url, list(options.items), options.clients, options.seed,
                            recorder, lambda: nemesis.current.kind if nemesis.current else None,
                            admin_token=cluster.admin_token, write_load=write_load)
        stop = threading.Event()
        workload.start()
        windows = nemesis.run(schedule, t0, stop)
        stop.wait(max(0.0, t0 + options.duration - time.monotonic()))
        workload.finish()
        nemesis.heal_all()

        healed_at = time.monotonic()
        cluster.wait_ready(HEAL_TIMEOUT)
        _wait_no_pending_orders(cluster)
        final = final_state(cluster, initial)
        converge_seconds = round(time.monotonic() - healed_at, 2)
        report = checker.check(recorder.operations, final, [w.to_json() for w in windows])
        _write_outputs(options, recorder, windows, final, report, unavailable, converge_seconds, schedule)
        timeline = options.out / "timeline.png"
        if not plot.timeline(recorder.operations, [w.to_json() for w in windows], timeline):
            print(plotting.skipped_line(timeline))
        print(_summary(options, recorder, windows, report, unavailable, converge_seconds))
        return 0 if report.ok else 1
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)
        if firewall is not None:
            firewall.close()
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _raise_keyboard_interrupt(*_) -> None:
    raise KeyboardInterrupt


def prepare_items(cluster: LocalCluster, items: tuple[int, ...]) -> dict:
    """Give the workload's items a known stock; return every book's initial state."""
    for item in items:
        response = requests.put(f"{cluster.frontend_url}/books/{item}", json={"stock": INITIAL_STOCK}, timeout=10,
                                headers=cluster.admin_headers)
        response.raise_for_status()
    leader = cluster.config.node(cluster.leader("catalog"))
    books = requests.get(f"{leader.http.url}/books", timeout=10, auth=cluster.peer_auth).json()["books"]
    return {str(b["id"]): {"stock": b["stock"], "price": b["price"], "title": b["title"]} for b in books}


def _wait_no_pending_orders(cluster: LocalCluster) -> None:
    """Give the order group's sweeper time to record and finish the orders whose
    coordinator died: none pending in the order group, none unrecorded in the catalog."""
    deadline = time.monotonic() + CONVERGE_TIMEOUT
    while time.monotonic() < deadline:
        states, catalogs = _states(cluster, "order"), _states(cluster, "catalog")
        if (states and catalogs
                and not any(o["status"] == "pending" for s in states.values() for o in s["state"]["orders"].values())
                and not any(s["state"].get("unrecorded") for s in catalogs.values())):
            return
        time.sleep(0.5)


def final_state(cluster: LocalCluster, initial: dict) -> dict:
    """Every replica's state after healing, once they agree (or the bound has passed)."""
    deadline = time.monotonic() + CONVERGE_TIMEOUT
    while True:
        catalog, order = _states(cluster, "catalog"), _states(cluster, "order")
        digests = {s["digest"] for s in catalog.values()}, {s["digest"] for s in order.values()}
        reachable = len(catalog) + len(order) == len(cluster.config.catalog) + len(cluster.config.order)
        if (reachable and all(len(d) == 1 for d in digests)) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    return {
        "initial": initial,
        "catalog": {name: {"books": {k: {"stock": b["stock"], "price": b["price"]}
                                     for k, b in s["state"]["books"].items()},
                           "applied_orders": {oid: p["took_stock"] for oid, p in s["state"]["purchases"].items()},
                           "digest": s["digest"]} for name, s in catalog.items()},
        "order": {name: {"orders": {oid: {"book_id": o["id"], "status": o["status"]}
                                    for oid, o in s["state"]["orders"].items()},
                         "digest": s["digest"]} for name, s in order.items()},
        "unreachable": [n.id for n in cluster.config.catalog + cluster.config.order
                        if n.id not in catalog and n.id not in order],
    }


def _states(cluster: LocalCluster, group: str) -> dict:
    return cluster.admin.states(group)


def _write_outputs(options, recorder, windows, final, report, unavailable, converge_seconds, schedule) -> None:
    save_history(options.out / "history.jsonl", recorder.operations)
    results = {
        "ok": report.ok,
        "seed": options.seed, "duration": options.duration, "clients": options.clients,
        "faults_requested": list(options.faults),
        "faults_unavailable": unavailable,
        "schedule": [vars(f) for f in schedule],
        "fault_windows": [w.to_json() for w in windows],
        "seconds_to_converge_after_healing": converge_seconds,
        "report": report.to_json(),
        "final_state": final,
    }
    (options.out / "results.json").write_text(json.dumps(results, indent=2))


def _summary(options, recorder, windows, report, unavailable, converge_seconds) -> str:
    ops = recorder.operations
    counts = {o: sum(1 for op in ops if op.outcome == o) for o in ("ok", "fail", "unknown")}
    lines = [f"bazar chaos: seed {options.seed}, {options.duration:.0f} s, {options.clients} clients, "
             f"{len(ops)} operations ({counts['ok']} ok, {counts['fail']} failed, {counts['unknown']} unknown)",
             "faults: " + (", ".join(f"{w.kind}@{w.start:.1f}s[{','.join(w.targets)}]" for w in windows) or "none")]
    lines += [f"  {w.kind}@{w.start:.1f}s: {w.detail}" for w in windows if w.detail]
    cuts = power_cut_line(windows)
    if cuts:
        lines.append(cuts)
    for kind, reason in unavailable.items():
        lines.append(f"fault {kind}: UNAVAILABLE ({reason})")
    lines.append(f"replicas converged {converge_seconds:.1f} s after healing")
    lines.append(report.summary())
    lines.append(f"{'PASS' if report.ok else 'FAIL'}: results in {options.out}")
    return "\n".join(lines)


def power_cut_line(windows) -> str | None:
    """How many of the run's power cuts dropped bytes that were not yet durable (None: no cuts).

    A cut that dropped nothing struck when every write had reached the disk: it tested only
    a restart, not what fsync protects, and the line says so."""
    cuts = [w for w in windows if w.kind == "power-cut" and w.lost_bytes is not None]
    if not cuts:
        return None
    dropping = [w for w in cuts if w.lost_bytes > 0]
    if not dropping:
        return (f"power cuts: NONE of {len(cuts)} dropped bytes that were not yet durable "
                f"(each struck with every write on disk: only a restart was tested)")
    return (f"power cuts: {len(dropping)} of {len(cuts)} dropped bytes that were not yet durable "
            f"({sum(w.lost_bytes for w in dropping)} bytes in all)")
