"""Membership changes on a running cluster: `bazar member add|remove`, a new replica that
catches up by snapshot, and clients (the frontend, the order replicas' catalog client)
that follow the membership the log holds while their own cluster file stays as it was."""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests
import yaml

from bazar.local.cluster import LocalCluster, write_config
from tests.integration.probes import set_stock, stock

REPO = Path(__file__).resolve().parents[2]


class Grown:
    """A cluster whose `group` has 3 replicas (the other group 1), started from `three` (a
    file without <group>4), and `four`, the same file naming <group>4 too: the one file the
    operator edits."""

    def __init__(self, directory: Path, group: str = "catalog", **sections) -> None:
        self.group = group
        sizes = {"catalog": 4, "order": 1} if group == "catalog" else {"catalog": 1, "order": 4}
        self.four = write_config(directory / "four", **sizes, **sections)
        doc = yaml.safe_load(self.four.read_text())
        doc[group] = doc[group][:3]
        self.three = directory / "three.yaml"
        self.three.write_text(yaml.safe_dump(doc, sort_keys=False))
        logs = self.logs = directory / "logs"
        self.cluster = LocalCluster(self.three, log_dir=logs)
        self.newcomer = LocalCluster(self.four, log_dir=logs)  # runs <group>4 only
        self.url = self.cluster.frontend_url

    def member(self, op: str, node_id: str) -> subprocess.CompletedProcess:
        """`bazar member <op> <node_id>`, run with the file that names the node."""
        return self.bazar("member", op, node_id, config=self.four)

    def bazar(self, *args: str, config: Path | None = None) -> subprocess.CompletedProcess:
        """`bazar <args>`, run with `config` (by default `three`, the file the cluster started
        from, which does not name <group>4), as the cluster's own processes are run."""
        return subprocess.run([sys.executable, "-m", "bazar", *args, "--config", str(config or self.three)],
                              cwd=REPO, env=self.cluster.env, capture_output=True, text=True, timeout=90)

    def status(self, node_id: str) -> dict | None:
        return self.newcomer.status(node_id)

    def leader_status(self, timeout: float = 10.0) -> dict:
        """The group's leader's /status (waiting out an election)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for node in self.newcomer.config.group(self.group):
                status = self.status(node.id)
                if status is not None and status["role"] == "leader":
                    return status
            time.sleep(0.1)
        raise AssertionError(f"no {self.group} leader answered in {timeout:.0f} s")

    def buy(self, count: int, prefix: str) -> None:
        for i in range(count):
            response = requests.post(f"{self.url}/purchase/1", headers={"Idempotency-Key": f"{prefix}-{i}"},
                                     timeout=15)
            assert response.status_code == 200, f"purchase {prefix}-{i}: {response.status_code} {response.text}"

    def stop(self) -> None:
        self.newcomer.stop()
        self.cluster.stop()


def _grown(group: str):
    directory = Path(tempfile.mkdtemp(prefix="bazar-test-"))
    # Snapshots every 20 entries, every replica in its own window of a 3 s period: the
    # leader's log is compacted before the fourth replica joins, so it needs a snapshot.
    made = Grown(directory, group, raft={"compaction_entries": 20, "compaction_period": 3})
    try:
        made.cluster.start(timeout=60)
        yield made
    finally:
        made.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def grown():
    yield from _grown("catalog")


@pytest.fixture
def grown_orders():
    yield from _grown("order")


def wait_new_caught_up(grown: Grown, node_id: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        mine = grown.status(node_id)
        leader = grown.leader_status()
        if mine is not None and mine["leader"] and mine["applied_index"] >= leader["commit_index"]:
            return mine
        time.sleep(0.1)
    tails = "".join(f"\n--- {log.name} (last lines)\n" + "".join(log.read_text(errors="replace").splitlines(True)[-40:])
                    for log in sorted(grown.logs.glob(f"{grown.group}*.log")))
    raise AssertionError(f"{node_id} did not catch up in {timeout:.0f} s: {grown.status(node_id)}{tails}")


def assert_the_old_file_finds_the_group(grown: Grown, leader_id: str) -> None:
    """`bazar status --json` and `bazar backup`, run with the file that does not name
    `leader_id`, find the group's leader there (through a replica the file names that is
    still running and knows the membership)."""
    status = grown.bazar("status", "--json")
    assert status.returncode == 0, (status.stdout, status.stderr)
    group = json.loads(status.stdout)["groups"][grown.group]
    assert group["leader"] == leader_id, group
    assert [n["id"] for n in group["nodes"]] == [leader_id], "a removed replica was reported as a member"
    path = grown.logs.parent / f"backup-{grown.group}.json"
    backup = grown.bazar("backup", str(path))
    assert backup.returncode == 0, (backup.stdout, backup.stderr)
    assert json.loads(path.read_text())["groups"][grown.group]["state"]


def assert_the_frontend_finds_the_group(grown: Grown, leader_id: str) -> None:
    """The frontend, started from the file that does not name `leader_id`, is ready and shows
    it as the group's leader in its admin view of /cluster, where it listens included."""
    ready = requests.get(f"{grown.url}/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
    token = grown.cluster.config.admin_token(grown.cluster.env)
    admin = {"Authorization": f"Bearer {token}"} if token else {}
    view = requests.get(f"{grown.url}/cluster", headers=admin, timeout=10).json()["groups"][grown.group]
    assert view["leader"] == leader_id and view["has_quorum"], view
    [node] = view["nodes"]
    assert (node["id"], node["role"], node["http"]) == (
        leader_id, "leader", grown.newcomer.config.node(leader_id).http.url), view


def test_a_fourth_catalog_replica_joins_catches_up_by_snapshot_and_serves_reads(grown):
    set_stock(grown.cluster, 1, 10_000)
    grown.buy(40, "before")  # 80 catalog entries: compacted in every replica's window
    leader_id = grown.cluster.leader("catalog")
    time.sleep(3.5)  # one compaction period, so every replica has taken a snapshot
    assert (grown.cluster.config.data_dir / leader_id / "snapshot.bin").exists()

    # One change at a time: with catalog2 paused, adding catalog4 cannot commit (4 members
    # need 3 votes; only the leader and one follower answer), so the change stays in flight
    # and a second one is refused until it is done.
    paused = next(n.id for n in grown.cluster.config.catalog if n.id != leader_id)
    grown.cluster.pause(paused)
    adding = subprocess.Popen([sys.executable, "-m", "bazar", "member", "add", "catalog4",
                               "--config", str(grown.four)], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        other = grown.member("remove", next(n.id for n in grown.cluster.config.catalog
                                            if n.id not in (leader_id, paused)))
        assert other.returncode == 1 and "in flight" in other.stderr, (other.stdout, other.stderr)
    finally:
        grown.cluster.resume(paused)
        out, err = adding.communicate(timeout=60)
    assert adding.returncode == 0, err
    assert "catalog4 added to the catalog group" in out
    voters = grown.leader_status()["peers"]
    assert str(grown.newcomer.config.node("catalog4").raft) in voters, voters

    grown.newcomer.start_process("catalog4")
    mine = wait_new_caught_up(grown, "catalog4")
    assert mine["role"] == "follower"
    assert (grown.cluster.config.data_dir / "catalog4" / "snapshot.bin").exists(), \
        "catalog4 caught up without the leader's snapshot, so this test did not test that"

    grown.buy(20, "after")  # purchases go on, now committed by a majority of 4
    index = grown.leader_status()["commit_index"]
    expected = stock(grown.cluster, 1)
    http = grown.newcomer.config.node("catalog4").http.url
    answer = requests.get(f"{http}/books/1?min_index={index}", timeout=10, auth=grown.cluster.peer_auth)
    assert answer.status_code == 200, answer.text
    assert answer.json()["stock"] == expected == 10_000 - 60
    assert int(answer.headers["X-Bazar-Index"]) >= index

    # Every process, started from the old file, learned catalog4 from the log.
    for node in grown.cluster.config.catalog:
        listing = requests.get(f"{node.http.url}/members", timeout=5, auth=grown.cluster.peer_auth).json()
        assert [m["id"] for m in listing["members"]] == ["catalog1", "catalog2", "catalog3", "catalog4"]

    # A replica restarted from the old file still knows catalog4 (from its snapshot and log).
    grown.cluster.kill("catalog1", signal.SIGTERM)
    grown.cluster.start_process("catalog1")
    wait_new_caught_up(grown, "catalog1")  # catalog4 may lead now: look at all four
    catalog4_raft = str(grown.newcomer.config.node("catalog4").raft)
    deadline = time.monotonic() + 10
    while catalog4_raft not in grown.status("catalog1")["peers"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert catalog4_raft in grown.status("catalog1")["peers"], grown.status("catalog1")
    grown.buy(5, "after-restart")

    # Bad changes are answered with a JSON error and change nothing.
    leader_http = grown.newcomer.config.node(grown.leader_status()["id"]).http.url
    for body, status in [({"op": "grow", "id": "catalog5", "raft": "127.0.0.1:1"}, 400),
                         ({"op": "add", "id": "catalog5", "raft": "127.0.0.1:1"}, 400),
                         ({"op": "remove", "id": "catalog9", "raft": "127.0.0.1:1"}, 404),
                         ({"op": "add", "id": "catalog4", "raft": "127.0.0.1:1", "http": "127.0.0.1:2"}, 409)]:
        refused = requests.post(f"{leader_http}/members", json=body, timeout=10,
                                auth=grown.cluster.peer_auth)
        assert refused.status_code == status and "error" in refused.json(), (body, refused.text)
    assert requests.post(f"{leader_http}/members", data="op=add", timeout=10,
                         auth=grown.cluster.peer_auth).status_code == 415
    assert requests.get(f"{leader_http}/members", timeout=5, auth=grown.cluster.peer_auth).json() == listing


def test_a_dead_replica_is_replaced_step_by_step_and_clients_follow_the_log(grown):
    set_stock(grown.cluster, 1, 10_000)
    grown.cluster.kill("catalog3")  # its machine died

    members_url = f"{grown.cluster.config.node('catalog1').http.url}/members"
    before = requests.get(members_url, timeout=5, auth=grown.cluster.peer_auth).json()
    voters = grown.leader_status()["peers"]
    refused = grown.member("add", "catalog4")
    assert refused.returncode == 1 and "majority" in refused.stderr, (refused.stdout, refused.stderr)
    # Removing a live replica would leave catalog3 (dead) and one other: 1 of 2 in touch.
    live = next(n.id for n in grown.cluster.config.catalog if n.id != grown.cluster.leader("catalog")
                and n.id != "catalog3")
    refused = grown.member("remove", live)
    assert refused.returncode == 1, (refused.stdout, refused.stderr)
    assert "refused" in refused.stderr and "only 1 are in touch" in refused.stderr \
        and "majority" in refused.stderr, refused.stderr
    assert requests.get(members_url, timeout=5, auth=grown.cluster.peer_auth).json() == before
    assert grown.leader_status()["peers"].keys() == voters.keys()

    # 1. remove the dead replica, 2. add its replacement, 3. start it.
    removed = grown.member("remove", "catalog3")
    assert removed.returncode == 0, removed.stderr
    grown.buy(3, "after-remove")
    added = grown.member("add", "catalog4")
    assert added.returncode == 0, added.stderr
    grown.newcomer.start_process("catalog4")
    wait_new_caught_up(grown, "catalog4")
    grown.buy(3, "after-add")

    # Shrink the group to catalog4 alone: then only the log tells anyone where the catalog
    # is (the frontend's and the order replica's files name catalog1-3).
    for node_id in ("catalog1", "catalog2"):
        done = grown.member("remove", node_id)
        assert done.returncode == 0, done.stderr
        grown.buy(3, f"after-remove-{node_id}")
        if node_id == "catalog2":  # the operator looks before stopping the last old replica
            assert_the_old_file_finds_the_group(grown, "catalog4")
        grown.cluster.kill(node_id, signal.SIGTERM)
    assert grown.status("catalog4")["role"] == "leader"
    grown.buy(5, "catalog4-alone")
    assert stock(grown.cluster, 1) == 10_000 - 17  # every purchase above took one copy, once
    assert_the_frontend_finds_the_group(grown, "catalog4")
    last = grown.member("remove", "catalog4")
    assert last.returncode == 1 and "last member" in last.stderr, last.stderr


def test_the_order_group_moves_to_a_new_replica_and_purchases_follow_it(grown_orders):
    grown = grown_orders
    set_stock(grown.cluster, 1, 10_000)
    grown.buy(3, "start")
    added = grown.member("add", "order4")
    assert added.returncode == 0, added.stderr
    grown.newcomer.start_process("order4")
    wait_new_caught_up(grown, "order4")
    grown.buy(3, "after-add")
    # Down to order4 alone, one member at a time (removing the leader hands it over first);
    # the frontend's file names order1-3 only.
    for node_id in ("order1", "order2", "order3"):
        done = grown.member("remove", node_id)
        assert done.returncode == 0, done.stderr
        grown.buy(3, f"after-remove-{node_id}")
        if node_id == "order3":  # the operator looks before stopping the last old replica
            assert_the_old_file_finds_the_group(grown, "order4")
        grown.cluster.kill(node_id, signal.SIGTERM)
    assert grown.status("order4")["role"] == "leader"
    grown.buy(5, "order4-alone")
    assert_the_frontend_finds_the_group(grown, "order4")
    orders = requests.get(f"{grown.url}/orders?limit=1000", timeout=10, headers=grown.cluster.admin_headers)
    assert orders.status_code == 200, orders.text
    assert sorted(o["status"] for o in orders.json()["orders"]) == ["completed"] * 20
    assert stock(grown.cluster, 1) == 10_000 - 20
