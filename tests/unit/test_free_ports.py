"""Throwaway clusters' ports never collide with the ports the kernel hands out itself.

A port is probed free when the cluster file is written and bound only when its process
starts, often a minute later (a replica added by `bazar member add`). Meanwhile every
outgoing connection on the machine takes an ephemeral port; one that took a replica's
Raft port left it unable to bind (seen in CI: the test of a replaced replica failed)."""
from __future__ import annotations

from pathlib import Path

import pytest

from bazar.local.cluster import ephemeral_port_range, free_ports

RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def test_free_ports_lie_outside_the_kernels_ephemeral_range():
    if not RANGE_FILE.exists():
        pytest.skip("no /proc/sys/net/ipv4/ip_local_port_range: not Linux")
    low, high = map(int, RANGE_FILE.read_text().split())
    assert ephemeral_port_range() == (low, high)
    ports = free_ports(300)
    assert len(set(ports)) == 300
    inside = [p for p in ports if low <= p <= high]
    assert inside == [], f"{len(inside)} of 300 ports in the ephemeral range {low}-{high}: {inside[:10]}"
    assert all(1024 < p < 65536 for p in ports)
