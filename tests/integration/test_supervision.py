"""`bazar up` supervises its children: a crashed one is restarted (with a back-off, and it
says so); one that dies at every start makes it give up, stop everything and exit non-zero."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests
import yaml

from bazar.local.cluster import write_config
from tests.integration.probes import Up

REPO = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def test_a_child_killed_under_bazar_up_is_restarted_and_that_is_said(tmp_path):
    up = Up(write_config(tmp_path, catalog=3, order=1))
    try:
        ready = up.wait_for("ready", 60)
        url = ready.split("API: ")[1].split()[0].rstrip("/")
        victim = up.children()["catalog2"]
        os.kill(victim, signal.SIGKILL)
        died = up.wait_for("catalog2 exited", 10)
        assert "status -9" in died and "restarting it in" in died, died
        up.wait_for("catalog2 restarted", 10)
        assert up.children().get("catalog2") not in (None, victim), "catalog2 was not started again"
        assert up.proc.poll() is None, "bazar up stopped instead of restarting the child"
        assert requests.post(f"{url}/purchase/1", timeout=10).status_code == 200
    finally:
        up.close()


def test_bazar_up_gives_up_on_a_child_that_dies_at_every_start(tmp_path):
    config = write_config(tmp_path, catalog=3, order=1)
    http = yaml.safe_load(config.read_text())["catalog"][2]["http"]
    host, port = http.rsplit(":", 1)
    squatter = socket.socket()  # catalog3's HTTP port is taken: it exits at every start
    squatter.bind((host, int(port)))
    squatter.listen()
    up = Up(config)
    try:
        assert "restarting it in 0.5 s" in up.wait_for("catalog3 exited", 30)
        others = up.children()
        assert set(others) == {"catalog1", "catalog2", "order1", "frontend1"}, (
            f"the other processes should run meanwhile: {others}")
        for delay in ("1", "2", "4"):  # the back-off doubles with each death at start
            assert f"restarting it in {delay} s" in up.wait_for("catalog3 exited", 30)
        gave_up = up.wait_for("giving up", 60)
        assert "catalog3 died within" in gave_up and "5 times in a row" in gave_up, gave_up
        assert up.proc.wait(30) == 1, "bazar up gave up but did not exit with an error"
        left = [name for name, pid in others.items() if _alive(pid)]
        assert left == [], f"bazar up left {left} running"
    finally:
        up.close()
        squatter.close()


def test_a_replica_whose_raft_port_is_taken_exits_with_an_error_naming_it(tmp_path):
    """PySyncObj retries a failed bind for ever, and until it binds a member does nothing
    at all (no election, no connection): the replica answered HTTP as if alive while its
    Raft side was dead. It must instead exit, so an operator or `bazar up` sees it."""
    config = write_config(tmp_path, catalog=1, order=1)
    raft = yaml.safe_load(config.read_text())["catalog"][0]["raft"]
    host, port = raft.rsplit(":", 1)
    squatter = socket.socket()
    squatter.bind((host, int(port)))
    squatter.listen()
    node = subprocess.Popen([sys.executable, "-m", "bazar", "node", "catalog1", "--config", str(config)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        try:
            output, _ = node.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            node.kill()
            output, _ = node.communicate()
            raise AssertionError(f"catalog1 kept running without its Raft port; it printed:\n{output}")
        assert node.returncode != 0, output
        assert raft in output and "in use" in output, output
    finally:
        if node.poll() is None:
            node.kill()
            node.wait()
        squatter.close()
