"""Junk on a Raft port: frames are limited before they are buffered, and a stranger's
connection is cut before the node spends its tick thread on it.

Before: a length header of 0x7fffffff followed by a stream of junk was buffered
whole (with quadratic copying) on the Raft tick thread, and purchases answered
503 for as long as the junk kept coming.
"""
from __future__ import annotations

import socket
import struct
import threading
import time

import requests

from tests.integration.probes import set_stock, wait_converged

JUNK_SECONDS = 20.0
ANSWER_WITHIN = 1.0


def _flood(address: str, stop: threading.Event, sent: list[int]) -> None:
    """Connect again and again to a Raft port and stream a huge frame's worth of junk."""
    host, port = address.rsplit(":", 1)
    junk = b"\x5a" * 65536
    while not stop.is_set():
        try:
            with socket.create_connection((host, int(port)), timeout=1) as conn:
                conn.sendall(struct.pack("i", 0x7FFFFFFF))
                while not stop.is_set():
                    conn.sendall(junk)
                    sent[0] += len(junk)
        except OSError:
            time.sleep(0.01)


def test_purchases_keep_being_answered_while_junk_floods_the_leaders_raft_port(make_cluster):
    cluster = make_cluster(catalog=1, order=1)
    set_stock(cluster, 7, 1_000_000)
    leader = cluster.config.catalog[0]
    stop, sent = threading.Event(), [0]
    flooders = [threading.Thread(target=_flood, args=(str(leader.raft), stop, sent), daemon=True)
                for _ in range(2)]
    for thread in flooders:
        thread.start()
    slow, failed, answered = [], [], 0
    try:
        deadline = time.monotonic() + JUNK_SECONDS
        i = 0
        while time.monotonic() < deadline:
            i += 1
            started = time.monotonic()
            response = requests.post(f"{cluster.frontend_url}/purchase/7", timeout=10,
                                     headers={"Idempotency-Key": f"junk-{i}"})
            took = time.monotonic() - started
            if response.status_code != 200:
                failed.append((i, response.status_code))
            elif took > ANSWER_WITHIN:
                slow.append((i, round(took, 2)))
            else:
                answered += 1
            time.sleep(0.05)
    finally:
        stop.set()
        for thread in flooders:
            thread.join(timeout=5)
    assert sent[0] > 10 * 2 ** 20, f"the flood sent only {sent[0]} bytes: it tested nothing"
    assert not failed, f"purchases failed during the flood: {failed[:10]} ({len(failed)} in all)"
    assert not slow, f"purchases answered after more than {ANSWER_WITHIN} s: {slow[:10]}"
    assert answered > 50
    wait_converged(cluster, "catalog")
