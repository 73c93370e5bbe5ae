"""A cluster across machines, without Docker: every process on a host of its own.

Each host is a network namespace with its own non-loopback address (10.77.0.x) on a
private switch (tests/deploy/netns.py); the test itself talks to the cluster from a
client host on that switch. It shows what a real multi-machine deployment needs: the
secret (off loopback a node refuses to start without it), purchases across hosts, and
a partition (a host's cable pulled, inside its namespace) that the cluster survives
and heals from. Nothing touches this machine's own network or firewall.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
import requests
import yaml

from bazar.local.cluster import LocalCluster
from tests.deploy.netns import PrivateNetwork, existing_namespaces
from tests.integration.probes import buy_until_done, stock, wait_converged

CATALOG = ["catalog1", "catalog2", "catalog3"]
ORDER = ["order1", "order2", "order3"]
HOSTS = CATALOG + ORDER + ["frontend1", "client"]
ADMIN_TOKEN = "multihost-admin-token"
SECRET = "multi-host test secret, 32 bytes or more"

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                                reason="network namespaces need root and iproute2")


@pytest.fixture(scope="module")
def network():
    net = PrivateNetwork(HOSTS, prefix=f"bzt{os.getpid() % 100000}")
    try:
        yield net.create()
    finally:
        net.remove()
        assert not {net.namespace(h) for h in HOSTS} & existing_namespaces(), "a namespace was left behind"


def cluster_file(directory: Path, network: PrivateNetwork) -> Path:
    """Every replica reached at its host's address; the frontend listens on every interface."""
    address = network.addresses

    def replicas(names: list[str], raft: int, http: int) -> list[dict]:
        return [{"id": n, "raft": f"{address[n]}:{raft}", "http": f"{address[n]}:{http}"} for n in names]

    doc = {"data_dir": str(directory / "data"),
           "catalog": replicas(CATALOG, 7101, 8101), "order": replicas(ORDER, 7201, 8201),
           "frontends": [{"id": "frontend1", "http": f"{address['frontend1']}:8000", "listen": "0.0.0.0"}]}
    path = directory / "cluster.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture
def make_cluster(network, tmp_path):
    """make_cluster(env) -> a LocalCluster whose every process runs on its own host."""
    clusters = []

    def make(env: dict, generate_secret: bool = True) -> LocalCluster:
        cluster = LocalCluster(cluster_file(tmp_path, network), log_dir=tmp_path / "logs", env=env,
                               launcher=network.launcher, generate_secret=generate_secret)
        clusters.append(cluster)
        return cluster

    yield make
    for cluster in clusters:
        cluster.stop()


def test_off_loopback_a_node_refuses_to_start_without_the_secret(make_cluster, network):
    # No secret anywhere (empty is unset), and none made for it as `bazar up` would.
    cluster = make_cluster(env={"BAZAR_SECRET": "", "BAZAR_SECRET_FILE": ""}, generate_secret=False)
    proc = network.on("client").submit(cluster.start_process, "catalog1").result()
    assert proc.wait(30) == 2
    log = (cluster.log_dir / "catalog1.log").read_text()
    assert "refusing to start" in log and "not loopback" in log


def test_purchases_across_hosts_survive_and_heal_a_partition(make_cluster, network):
    cluster = make_cluster(env={"BAZAR_SECRET": SECRET, "BAZAR_ADMIN_TOKEN": ADMIN_TOKEN})
    network.on("client").submit(scenario, cluster, network).result()


def scenario(cluster: LocalCluster, network: PrivateNetwork) -> None:
    """Run from the client host: the only way into the private network."""
    cluster.start(timeout=90)
    url = cluster.frontend_url
    assert url.startswith("http://10.77.0.")
    before = stock(cluster, 1)
    bought = requests.post(f"{url}/purchase/1", headers={"Idempotency-Key": "multihost-1"}, timeout=10)
    assert bought.status_code == 200, bought.text
    assert stock(cluster, 1) == before - 1

    leader = cluster.leader("catalog")
    assert leader is not None
    network.set_link(leader, up=False)  # the catalog leader is cut off from every other host
    try:
        deadline = time.monotonic() + 30
        for i in range(3):
            response = buy_until_done(url, 1, f"multihost-partitioned-{i}", deadline)
            assert response.status_code == 200, response.text
        assert cluster.leader("catalog") not in (None, leader)
    finally:
        network.set_link(leader, up=True)

    states = wait_converged(cluster, "catalog", timeout=30)  # the cut-off replica caught up
    assert set(states) == set(CATALOG)
    assert stock(cluster, 1) == before - 4
    orders = requests.get(f"{url}/orders?limit=10", timeout=10,
                          headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).json()["orders"]
    assert {"multihost-1", "multihost-partitioned-0", "multihost-partitioned-2"} <= {o["order_id"] for o in orders}
    assert all(o["status"] == "completed" for o in orders)
