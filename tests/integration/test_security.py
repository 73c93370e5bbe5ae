"""The Raft port: bound where cluster.yaml says, and closed to anyone without the secret."""
from __future__ import annotations

import os
import pickle
import socket
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import requests
import yaml

from bazar.local.cluster import write_config


class _CreateFile:
    """A pickle that, when loaded, creates a file: proof that code ran on the node."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _send_raw_raft_message(address: str, payload: object) -> None:
    """Speak PySyncObj's framing (length + zlib(pickle)) to a Raft port, unauthenticated."""
    host, port = address.rsplit(":", 1)
    data = zlib.compress(pickle.dumps(payload))
    with socket.create_connection((host, int(port)), timeout=2) as conn:
        conn.sendall(struct.pack("i", len(data)) + data)
        time.sleep(0.5)


def _wait_for(path: Path, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists():
            return True
        time.sleep(0.1)
    return False


def test_raft_port_runs_no_code_for_strangers_when_a_secret_is_set(make_cluster, tmp_path):
    protected = make_cluster(catalog=1, order=1, env={"BAZAR_SECRET": "correct horse battery staple, and more"})
    marker = tmp_path / "pwned-protected"
    _send_raw_raft_message(str(protected.config.catalog[0].raft), _CreateFile(str(marker)))
    assert not _wait_for(marker, 1.0), "an unauthenticated pickle ran on a node with a secret"
    # The protected cluster still works: its own members share the secret.
    assert requests.post(f"{protected.frontend_url}/purchase/1").status_code == 200

    # Control: the same probe does run code on a loopback cluster without a secret,
    # which is why a secret is mandatory as soon as any Raft address leaves loopback.
    open_cluster = make_cluster(catalog=1, order=1, generate_secret=False)
    marker = tmp_path / "pwned-open"
    _send_raw_raft_message(str(open_cluster.config.catalog[0].raft), _CreateFile(str(marker)))
    assert _wait_for(marker, 3.0)


def test_a_node_off_loopback_refuses_to_start_without_the_secret(tmp_path):
    path = write_config(tmp_path, catalog=1, order=1)
    doc = yaml.safe_load(path.read_text())
    doc["catalog"][0]["raft"] = "192.0.2.10:7101"  # TEST-NET-1: never contacted, we refuse first
    path.write_text(yaml.safe_dump(doc))
    env = {k: v for k, v in os.environ.items() if k != "BAZAR_SECRET"}
    result = subprocess.run([sys.executable, "-m", "bazar", "node", "catalog1", "--config", str(path)],
                            env=env, capture_output=True, text=True, timeout=30,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.returncode != 0
    assert "BAZAR_SECRET" in result.stderr
    assert "Traceback" not in result.stderr


def test_raft_and_http_ports_bind_only_the_configured_address(shared_cluster):
    node = shared_cluster.config.catalog[0]
    for address in (node.raft, node.http):
        with socket.create_connection(("127.0.0.1", address.port), timeout=2):
            pass
        # Another loopback address reaches a wildcard bind but not a 127.0.0.1 bind.
        other = socket.socket()
        other.settimeout(2)
        try:
            assert other.connect_ex(("127.0.0.2", address.port)) != 0, f"{address} is bound to all addresses"
        finally:
            other.close()
