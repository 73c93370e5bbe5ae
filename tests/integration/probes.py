"""Ways for integration tests to look inside a running cluster."""
from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import requests

from bazar.local.cluster import LocalCluster, write_config

REPO = Path(__file__).resolve().parents[2]


@contextmanager
def running_cluster(directory: Path, env: dict | None = None, **sizes):
    """A cluster in `directory` (write_config's `sizes`), started, and stopped on the way out."""
    cluster = LocalCluster(write_config(directory, **sizes), log_dir=Path(directory) / "logs", env=env)
    try:
        cluster.start(timeout=60)
        yield cluster
    finally:
        cluster.stop()


def replica_states(cluster: LocalCluster, group: str) -> dict[str, dict]:
    """GET /state from every running replica of `group`, by node id (with the cluster's
    secret, if it has one: the route is for Bazar's own processes)."""
    running = [n.id for n in cluster.config.group(group)
               if cluster.is_running(n.id) and n.id not in cluster.paused]
    states = cluster.admin.states(group, running, timeout=2)
    if len(states) < len(running):
        raise requests.ConnectionError(f"not every running {group} replica answered /state")
    return states


def wait_converged(cluster: LocalCluster, group: str, timeout: float = 15.0) -> dict[str, dict]:
    """Wait until every running replica of `group` reports the same digest; return the states."""
    deadline = time.monotonic() + timeout
    states: dict[str, dict] = {}
    while time.monotonic() < deadline:
        try:
            states = replica_states(cluster, group)
        except requests.RequestException:
            time.sleep(0.2)
            continue
        if len({s["digest"] for s in states.values()}) == 1:
            return states
        time.sleep(0.2)
    digests = {node: s["digest"] for node, s in states.items()}
    raise AssertionError(f"{group} replicas did not converge: {digests}")


def settled_content(cluster: LocalCluster, node_id: str, timeout: float = 15.0) -> dict:
    """What a replica's state holds (its /state view) once it has applied everything its
    group's leader had committed when asked, and no order is pending there.

    Compare this, not the digest, to show that something changed nothing: a purchase's
    record follows its answer (up to RECORD_DELAY later, and the order replica waits for it), and the leader's periodic `Expire`
    advances the log's clock, so the digest of an untouched group still moves. And a
    follower learns of a commit from the next round or heartbeat (its leader sends no round
    of its own to announce it), so right after a purchase's answer it
    may not hold that order at all yet: without waiting for the leader's commit index, a
    view taken then lacked the last purchase, and a later one (after a replay that changed
    nothing) held it (CI, 2026-12-07: 'sibling-4' in
    test_a_request_recorded_for_one_replica_is_refused_by_its_siblings).
    """
    deadline = time.monotonic() + timeout
    group = cluster.config.node(node_id).group
    leader = cluster.leader(group)
    target = (cluster.status(leader) or {}).get("commit_index", 0) if leader else 0
    # An order replica also waits for the records of the purchases the catalog decided (they
    # follow the answer, frontend/checkout.py): those the catalog keeps as unrecorded.
    catalog_leader = cluster.leader("catalog") if group == "order" else None
    catalog_view = (cluster.admin.state(catalog_leader) or {}).get("state", {}) if catalog_leader else {}
    unrecorded = set(catalog_view.get("unrecorded", {}))
    while True:
        applied = (cluster.status(node_id) or {}).get("applied_index", 0)
        view = cluster.admin.state(node_id)["state"]
        pending = [i for i, o in view.get("orders", {}).items() if o.get("status") == "pending"]
        missing = sorted(unrecorded - set(view.get("orders", {})))
        if not pending and not missing and applied >= target:
            return view
        if time.monotonic() > deadline:
            raise AssertionError(f"{node_id} has applied up to {applied} of the leader's {target}, and "
                                 f"still has pending orders after {timeout} s: {pending[:5]}, "
                                 f"and lacks records of {missing[:5]}")
        time.sleep(0.1)


def stock(cluster: LocalCluster, book_id: int, timeout: float = 10.0) -> int:
    """A book's stock, read linearizably (a strong read, confirmed by a read index). A 503
    (the group cannot confirm a read index yet: a leader just elected, as after a restart of
    every process) is asked again, as the answer says, until `timeout` (CI, 2026-12-07: a
    strong read right after such a restart failed the check with KeyError 'stock')."""
    url = f"{cluster.frontend_url}/info/{book_id}?consistency=strong"
    deadline = time.monotonic() + timeout
    while True:
        response = requests.get(url, timeout=10)
        if response.status_code != 503 or time.monotonic() > deadline:
            assert response.status_code == 200, f"strong read of book {book_id}: {response.status_code} {response.text}"
            return response.json()["stock"]
        time.sleep(0.1)


def set_stock(cluster: LocalCluster, book_id: int, value: int) -> None:
    response = requests.put(f"{cluster.frontend_url}/books/{book_id}", json={"stock": value}, timeout=10,
                            headers=cluster.admin_headers)
    assert response.status_code == 200, response.text


def recorded_orders(cluster: LocalCluster, timeout: float = 10.0) -> list[dict]:
    """The frontend's order listing once every order in it is recorded by the order group.

    An order is listed from the catalog's keeping (no `seq`, the catalog index of the read)
    until its record, sent after the purchase's answer, applies (within about RECORD_DELAY);
    a test comparing listings from before and after compares recorded ones."""
    deadline = time.monotonic() + timeout
    while True:
        orders = requests.get(f"{cluster.frontend_url}/orders?limit=1000", headers=cluster.admin_headers,
                              timeout=10).json()["orders"]
        if all(order.get("seq") is not None for order in orders):
            return orders
        assert time.monotonic() < deadline, f"orders still unrecorded after {timeout:g} s"
        time.sleep(0.05)


def buy_until_done(url: str, book_id: int, key: str, deadline: float) -> requests.Response:
    """Buy like a careful client: retry with the same Idempotency-Key until a definite answer."""
    while True:
        try:
            response = requests.post(f"{url}/purchase/{book_id}", headers={"Idempotency-Key": key}, timeout=5)
            if response.status_code in (200, 409) or time.monotonic() > deadline:
                return response
        except requests.RequestException:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.05)


class Up:
    """A real `bazar up` whose output lines are read as they come."""

    def __init__(self, config: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "bazar", "--config", str(config), "up"],
                                     cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: "queue.Queue[str]" = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float) -> str:
        """The first line (from now on) containing `text`; AssertionError with the output so far."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                continue
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"bazar up never printed {text!r}; it printed:\n" + "\n".join(self.seen[-40:]))

    def children(self) -> dict[str, int]:
        """The pid of each child process, by the id it runs."""
        found = {}
        for status in Path("/proc").glob("[0-9]*/status"):
            try:
                fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
                argv = (status.parent / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if fields.get("PPid", "").strip() == str(self.proc.pid) and "Z" not in fields.get("State", ""):
                found[argv[4].decode()] = int(status.parent.name)  # python -m bazar <kind> <id>
        return found

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
