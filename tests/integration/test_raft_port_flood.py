"""Idle connections by the thousand on a catalog replica's Raft port, then released: the
port still accepts, a replica restarted afterwards reconnects to it, and the group commits.

Before: unauthenticated connections were never timed out and a stranger could hold any
number. When accept() ran out of file descriptors, PySyncObj closed the listening socket
and never bound it again, silently: the port stayed closed after the flood, and a restarted
peer could never reconnect.

The replicas run with the file limit a replica gives itself when its supervisor gives it
less (web/server.py raises a soft limit below CONNECTION_LIMIT + 256 to that), so the flood
exceeds it, as it did in the field.
"""
from __future__ import annotations

import re
import resource
import socket
import sys
import time
from pathlib import Path

import requests

from bazar.web.server import CONNECTION_LIMIT
from tests.integration.probes import set_stock, stock, wait_converged

FLOOD = CONNECTION_LIMIT + 300
SOURCES = [f"127.0.1.{i}" for i in range(1, 51)]  # many strangers, not one
PACE = 32  # connections opened before waiting for the replica to accept them


def _flood(host: str, port: int, count: int, within: float = 120.0) -> list[socket.socket]:
    """Open `count` idle connections to (host, port), from SOURCES in turn, and keep them;
    stop early if the port refuses a connection (its listener is gone) or after `within`
    seconds. Return the sockets that connected (the replica may have closed some since),
    once the replica has accepted every one of them.

    Connections opened faster than the replica accepts them only fill its accept queue,
    never its file table (and a full queue drops a SYN, which TCP sends again a second
    later): every PACE connections, wait for the queue to empty."""
    held: list[socket.socket] = []
    deadline = time.monotonic() + within
    while len(held) < count and time.monotonic() < deadline:
        if len(held) % PACE == 0 and not _queue_empties(host, port, deadline):
            break
        sock = socket.socket()
        try:
            sock.bind((SOURCES[len(held) % len(SOURCES)], 0))
            sock.settimeout(5)
            sock.connect((host, port))
            held.append(sock)
        except ConnectionRefusedError:
            sock.close()
            break
        except OSError:  # a full accept queue dropped the SYN: try again
            sock.close()
    _queue_empties(host, port, deadline)
    return held


def _accept_queue(host: str, port: int) -> int | None:
    """How many connections wait for the listener on (host, port) to accept them (its
    Recv-Q in `ss -lt`), or None if nothing listens there."""
    local = f"{int.from_bytes(socket.inet_aton(host), sys.byteorder):08X}:{port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local and fields[3] == "0A":  # TCP_LISTEN
            return int(fields[4].split(":")[1], 16)
    return None


def _queue_empties(host: str, port: int, deadline: float) -> bool:
    """Wait until the listener has accepted every queued connection; False if it is gone
    or `deadline` passes first."""
    while True:
        waiting = _accept_queue(host, port)
        if waiting == 0:
            return True
        if waiting is None or time.monotonic() > deadline:
            return False
        time.sleep(0.002)


def _accepts(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
        return True
    except OSError:
        return False


def _closed_total(http_url: str) -> float:
    text = requests.get(f"{http_url}/metrics", timeout=5).text
    return sum(float(value) for value in
               re.findall(r'^bazar_raft_connections_closed_total\{[^}]*\} (\S+)$', text, re.MULTILINE))


def _sees_connected(cluster, node_id: str, peer: str) -> bool:
    status = cluster.status(node_id, timeout=2)
    return bool(status and status.get("peers", {}).get(peer))


def test_a_flood_of_idle_connections_leaves_the_raft_port_open_and_the_group_working(make_cluster):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # The replicas inherit a limit below what they need and raise it to CONNECTION_LIMIT + 256.
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))
    try:
        cluster = make_cluster(catalog=3, order=1, frontends=1)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if soft < FLOOD + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(FLOOD + 256, hard), hard))
    # PySyncObj's rule: of two members, the one with the greater address connects. So the
    # member with the greatest address, restarted, must reach the flooded one's listener.
    ordered = sorted(cluster.config.catalog, key=lambda node: str(node.raft))
    flooded, restarted = ordered[0], ordered[-1]
    try:
        held = _flood(flooded.raft.host, flooded.raft.port, FLOOD)
        for sock in held:
            sock.close()
        assert _accepts(flooded.raft.host, flooded.raft.port), (
            f"{flooded.id}'s Raft port was closed after the flood was released "
            f"({len(held)} of {FLOOD} connections had been made)")
        assert len(held) == FLOOD, f"the flood made only {len(held)} of {FLOOD} connections: it proved nothing"
        assert _closed_total(flooded.http.url) > 0, f"{flooded.id} counted no closed connection"

        cluster.kill(restarted.id)
        cluster.start_process(restarted.id)
        deadline = time.monotonic() + 30
        while not _sees_connected(cluster, flooded.id, str(restarted.raft)):
            assert time.monotonic() < deadline, f"restarted {restarted.id} never reconnected to {flooded.id}"
            time.sleep(0.2)
        set_stock(cluster, 7, 4321)
        assert stock(cluster, 7) == 4321
        assert restarted.id in wait_converged(cluster, "catalog", timeout=30)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
