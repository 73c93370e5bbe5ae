"""What operators do: `bazar up` and Ctrl-C, `bazar status`, other group sizes, degraded reads."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from bazar.local.cluster import write_config
from tests.integration.probes import buy_until_done

REPO = Path(__file__).resolve().parents[2]


def _children(pid: int) -> set[int]:
    found = set()
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(pid):
            found.add(int(status.parent.name))
    return found


def test_bazar_up_prints_the_url_and_sigterm_stops_every_process(tmp_path):
    config = write_config(tmp_path, catalog=3, order=3, frontends=1)
    up = subprocess.Popen([sys.executable, "-m", "bazar", "--config", str(config), "up"],
                          cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        deadline = time.monotonic() + 60
        ready_line = ""
        while time.monotonic() < deadline and "ready" not in ready_line:
            ready_line = up.stdout.readline()
        assert "ready" in ready_line, "bazar up never said it was ready"
        url = ready_line.split("API: ")[1].split()[0].rstrip("/")
        assert requests.get(f"{url}/info/1").json()["id"] == 1
        children = _children(up.pid)
        assert len(children) == 7

        status = subprocess.run([sys.executable, "-m", "bazar", "--config", str(config), "status"],
                                cwd=REPO, capture_output=True, text=True, timeout=30)
        assert status.returncode == 0
        assert status.stdout.count("leader") >= 4 and "quorum: yes" in status.stdout

        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=30) == 0
        for pid in children:
            assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()


def test_groups_of_five_elect_commit_and_survive_two_failures(make_cluster):
    cluster = make_cluster(catalog=5, order=1)
    url = cluster.frontend_url
    assert requests.post(f"{url}/purchase/1").status_code == 200
    followers = [n.id for n in cluster.config.catalog if n.id != cluster.leader("catalog")]
    for name in followers[:2]:
        cluster.kill(name)
    assert buy_until_done(url, 1, "five-minus-two", time.monotonic() + 20).status_code == 200


def test_with_one_catalog_replica_up_reads_are_right_or_refused(make_cluster):
    cluster = make_cluster()
    url = cluster.frontend_url
    survivor = cluster.config.catalog[0].id
    for node in cluster.config.catalog[1:]:
        cluster.kill(node.id)
    # The survivor has no leader: it serves its state for at most the lag bound, then
    # refuses (503 + Retry-After) rather than serve a state of unknown age.
    for consistency in ("cached", "local"):
        for book_id in range(1, 8):
            response = requests.get(f"{url}/info/{book_id}?consistency={consistency}", timeout=10)
            if response.status_code == 200:
                assert response.json()["id"] == book_id
            else:
                assert response.status_code == 503 and response.headers["Retry-After"], response.text
    # Without a quorum a strong read cannot be served, and says so.
    strong = requests.get(f"{url}/info/1?consistency=strong", timeout=15)
    assert strong.status_code == 503 and "error" in strong.json()
    assert cluster.is_running(survivor)


def test_a_bad_cluster_file_is_refused_with_the_key_named(tmp_path):
    bad = tmp_path / "cluster.yaml"
    bad.write_text("catalog:\n  - {id: c1, raft: '127.0.0.1', http: '127.0.0.1:9'}\norder: []\nfrontends: []\n")
    done = subprocess.run([sys.executable, "-m", "bazar", "--config", str(bad), "status"],
                          cwd=REPO, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "catalog[0].raft" in done.stderr and "Traceback" not in done.stderr
