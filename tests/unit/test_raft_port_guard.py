"""What a stranger can do to a Raft port: hold connections, replay a recorded frame,
close the listener, make the tick thread copy buffers. Real PySyncObj objects throughout.

- An idle connection that never proves it holds the cluster key is closed after the
  handshake deadline; the group's own links (idle between heartbeats) are not.
- A connector's first frame replayed on a new connection does not make that connection a
  peer: it may still announce only a stranger's frame size.
- A listener PySyncObj closed (it does on any accept error, such as running out of file
  descriptors) is bound again.
- A big frame arriving in many reads is assembled with linear copying, not quadratic.
- A burst of connections is taken at once (none waits for TCP to resend a dropped SYN) and
  its strangers are shed at once.
"""
from __future__ import annotations

import errno
import logging
import os
import socket
import struct
import time
from collections import deque

import pytest
from pysyncobj.encryptor import getEncryptor
from pysyncobj.poller import POLL_EVENT_TYPE
from pysyncobj.tcp_connection import TcpConnection

from bazar.consensus import frame_guard, strangers
from bazar.consensus.strangers import (HANDSHAKE_SECONDS, HANDSHAKE_TIMEOUT, IN_ALL, TOO_MANY_FROM_SOURCE,
                                         TOO_MANY_STRANGERS, Strangers, ThrottledLog)
from tests.unit.raft_groups import leader_of, start_group

SECRET = "raft-port-guard-test-secret"


def _address(member) -> tuple[str, int]:
    host, port = member.syncobj.selfNode.address.rsplit(":", 1)
    return host, int(port)


def _closed_by_peer(sock: socket.socket, within: float) -> bool:
    """Read (and discard) what `sock` receives until the peer closes it (True) or `within`
    seconds pass (False)."""
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def _eventually(predicate, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _recv_frame(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """One PySyncObj frame (4-byte native length, then the body) from `sock`."""
    sock.settimeout(timeout)

    def exactly(count: int) -> bytes:
        data = b""
        while len(data) < count:
            more = sock.recv(count - len(data))
            assert more, "the replica closed the connection"
            data += more
        return data

    (length,) = struct.unpack("i", exactly(4))
    return exactly(length)


class _NoPoller:
    def subscribe(self, *args) -> None:
        pass

    def unsubscribe(self, *args) -> None:
        pass


class _WireSocket:
    """A connected socket without a network: `recv` hands out `chunks` one per call (then
    would block); what is sent is kept in `sent`. `before_recv` runs before every recv."""

    def __init__(self, chunks=()) -> None:
        self.chunks = deque(chunks)
        self.sent = b""
        self.before_recv = None

    def fileno(self) -> int:
        return 10_000

    def recv(self, size: int) -> bytes:
        if self.before_recv is not None:
            self.before_recv()
        if not self.chunks:
            raise BlockingIOError(errno.EAGAIN, "would block")
        chunk = self.chunks.popleft()
        assert len(chunk) <= size
        return chunk

    def send(self, data: bytes) -> int:
        self.sent += bytes(data)
        return len(data)

    def getsockopt(self, *args) -> int:
        return 0

    def setsockopt(self, *args) -> None:
        pass

    def close(self) -> None:
        pass


def _recorded_first_frame(secret: str) -> bytes:
    """The bytes PySyncObj's connector sends first (its session key, encrypted with the
    cluster secret), as an eavesdropper on the link would record them."""
    wire = _WireSocket()
    connector = TcpConnection(poller=_NoPoller(), socket=wire)
    connector.encryptor = getEncryptor(secret)
    connector.send(os.urandom(32))  # what TCPTransport._onOutgoingConnected sends
    return wire.sent


@pytest.mark.slow   # waits out the handshake deadline on a real group: the full suite runs it
def test_an_idle_stranger_is_closed_after_the_handshake_deadline_and_peers_are_not(tmp_path, monkeypatch):
    deadline = 1.5   # HANDSHAKE_SECONDS (5 s) shortened: the same rule, waited out sooner
    monkeypatch.setattr(strangers, "HANDSHAKE_SECONDS", deadline)
    members = start_group(tmp_path, password=SECRET)
    try:
        leader = leader_of(members)
        target = members[0]
        with socket.create_connection(_address(target)) as idle:
            assert not _closed_by_peer(idle, within=deadline / 2), "closed before its deadline"
            assert _closed_by_peer(idle, within=3 * deadline), (
                f"an idle unauthenticated connection was still open after {3 * deadline} s")
        assert _eventually(lambda: target.raft_port_stats()["closed"]["handshake_timeout"] == 1), (
            target.raft_port_stats())
        # The group's own links proved themselves long ago; silence does not close them.
        time.sleep(deadline + 1)
        assert all(target.status()["peers"].values()), target.status()["peers"]
        assert leader.submit({"op": "expire", "now": 60.0, "cutoff": 0.0}, timeout=15)["ok"] is True
    finally:
        for member in members:
            member.close()


def test_a_replayed_first_frame_does_not_lift_the_frame_limit(tmp_path, caplog):
    members = start_group(tmp_path, size=1, password=SECRET)
    try:
        recorded = _recorded_first_frame(SECRET)
        announced = 1 << 20  # far above a stranger's limit, within a peer's
        assert frame_guard.STRANGER_FRAME_BYTES < announced < frame_guard.PEER_FRAME_BYTES
        with caplog.at_level(logging.WARNING, logger="bazar.raft.frames"), \
                socket.create_connection(_address(members[0])) as replay:
            replay.sendall(recorded)
            _recv_frame(replay)  # the replica answered: the replayed frame was taken as a first frame
            replay.sendall(struct.pack("i", announced))
            assert _closed_by_peer(replay, within=3 * HANDSHAKE_SECONDS), (
                "the connection that replayed a recorded frame was still open after announcing "
                f"a {announced}-byte frame")
        # Counted and logged on the tick thread just after the socket is closed.
        assert _eventually(lambda: members[0].raft_port_stats()["closed"]["oversized_frame"] == 1), (
            f"the connection was closed, but not for its oversized frame: {members[0].raft_port_stats()}")
        assert f"announced a {announced}-byte frame" in caplog.text
    finally:
        members[0].close()


def test_a_listener_closed_by_an_accept_error_is_bound_again(tmp_path):
    members = start_group(tmp_path, size=1, password=SECRET)
    try:
        member = members[0]
        server = member.syncobj._SyncObj__transport._server
        server.unbind()  # what PySyncObj's TcpServer does when accept() fails (EMFILE, ENFILE...)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(_address(member), timeout=1).close()
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline, "the Raft port stayed closed after its listener was closed"
                time.sleep(0.1)
        assert member.raft_port_stats()["listener_rebinds"] == 1
    finally:
        members[0].close()


BURST = 100  # connections opened one after the other, as fast as a client can


def test_a_burst_of_connections_is_taken_at_once_and_its_strangers_shed_at_once(tmp_path):
    """PySyncObj listened with a queue of 5 and accepted one connection per tick: a client
    opening connections faster than that found the queue full, its SYN was dropped and its
    connect waited a second for TCP to send it again. A flood was then taken at about six
    connections a second, and a peer reconnecting during one waited like the flood did."""
    members = start_group(tmp_path, size=1, password=SECRET)
    burst: list[socket.socket] = []
    try:
        member = members[0]
        late = 0
        for i in range(BURST):
            sock = socket.socket()
            sock.bind((f"127.0.1.{i % 50 + 1}", 0))  # many sources: the per-source cap is not what sheds them
            sock.settimeout(0.5)  # TCP resends a dropped SYN after a second
            try:
                sock.connect(_address(member))
                burst.append(sock)
            except OSError:
                late += 1
                sock.close()
        assert late == 0, f"{late} of {BURST} connections were not taken within 0.5 s"
        # Every one accepted, and the strangers beyond the cap closed, within a few ticks.
        assert _eventually(lambda: sum(member.raft_port_stats()["closed"].values()) >= BURST - IN_ALL,
                           within=2.0), member.raft_port_stats()
        assert member.raft_port_stats()["strangers"] <= IN_ALL
        assert member.submit({"op": "expire", "now": 60.0, "cutoff": 0.0}, timeout=15)["ok"] is True
    finally:
        for sock in burst:
            sock.close()
        members[0].close()


def _frame(message) -> bytes:
    """A PySyncObj frame without encryption, as TcpConnection.send makes it."""
    import zlib

    import pysyncobj.pickle as pickle
    body = zlib.compress(pickle.dumps(message), 3)
    return struct.pack("i", len(body)) + body


def test_a_big_frame_arriving_in_many_reads_is_assembled_with_linear_copying():
    payload = os.urandom(2 << 20)  # does not compress: the frame is as big as the payload
    big = _frame(payload)
    chunk = 8192
    wire = _WireSocket([_frame("hello")] + [big[i:i + chunk] for i in range(0, len(big), chunk)])
    received = []
    connection = TcpConnection(poller=_NoPoller(), socket=wire, timeout=3600)
    connection.setOnMessageReceivedCallback(received.append)

    # Bytes written into new read buffers: each time PySyncObj's buffer is a new object, it was
    # made by copying everything it holds.
    copied, current = [0], [connection._TcpConnection__readBuffer]

    def count_copies() -> None:
        buffer = connection._TcpConnection__readBuffer
        if buffer is not current[0]:
            copied[0] += len(buffer)
            current[0] = buffer

    wire.before_recv = count_copies
    for _ in range(len(wire.chunks) + 10):
        connection._TcpConnection__processConnection(wire.fileno(), POLL_EVENT_TYPE.READ)
        count_copies()
        if len(received) == 2:
            break
    assert received == ["hello", payload]
    assert copied[0] <= 3 * len(big), (
        f"assembling a {len(big)}-byte frame from {len(big) // chunk} reads copied {copied[0]} bytes "
        f"({copied[0] / len(big):.0f} times the frame)")


# -- the strangers' rules, without sockets ------------------------------------------

def test_a_newcomer_beyond_the_per_source_cap_closes_the_oldest_from_its_own_source():
    held = Strangers(deadline=5, per_source=2, in_all=10)
    assert held.admit("peer", "10.0.0.2", now=0) == []
    assert held.admit("a1", "10.0.0.9", now=1) == []
    assert held.admit("a2", "10.0.0.9", now=2) == []
    assert held.admit("a3", "10.0.0.9", now=3) == [("a1", "10.0.0.9", TOO_MANY_FROM_SOURCE)]
    assert len(held) == 3  # peer, a2, a3: the other source kept its connection


def test_a_newcomer_beyond_the_cap_in_all_closes_the_oldest_stranger():
    held = Strangers(deadline=5, per_source=10, in_all=3)
    for i in range(3):
        assert held.admit(f"c{i}", f"10.0.0.{i}", now=i) == []
    assert held.admit("new", "10.0.0.7", now=3) == [("c0", "10.0.0.0", TOO_MANY_STRANGERS)]
    assert len(held) == 3


def test_strangers_expire_at_the_deadline_and_proved_ones_are_forgotten():
    held = Strangers(deadline=5, per_source=10, in_all=10)
    held.admit("old", "10.0.0.1", now=0)
    held.admit("proved", "10.0.0.2", now=1)
    held.admit("young", "10.0.0.3", now=4)
    held.settle(lambda conn: conn == "proved")
    assert held.expired(now=4.9) == []
    assert held.expired(now=6) == [("old", "10.0.0.1", HANDSHAKE_TIMEOUT)]
    assert held.expired(now=9) == [("young", "10.0.0.3", HANDSHAKE_TIMEOUT)]
    assert len(held) == 0


def test_throttled_warnings_say_how_many_were_held_back(caplog):
    now = [0.0]
    throttled = ThrottledLog(logging.getLogger("bazar.test.throttled"), every=10, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="bazar.test.throttled"):
        for second in range(25):
            now[0] = float(second)
            throttled.warning("kind", "closed one from %s", "10.0.0.9")
    assert [r.getMessage() for r in caplog.records] == [
        "closed one from 10.0.0.9",
        "closed one from 10.0.0.9 (9 more like it in the last 10 s)",
        "closed one from 10.0.0.9 (9 more like it in the last 10 s)",
    ]
