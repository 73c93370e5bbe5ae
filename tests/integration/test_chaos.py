"""The normal suite's chaos run: every fault kind, against a real cluster, must check clean.

Every fault kind includes the ones aimed at log-safety windows (a follower
paused under write load, the follower swap that kills the leader at its first
commit with the resumed follower's acknowledgment, SIGKILL during a log
compaction, a whole group SIGKILLed in a loop, a power cut that keeps only what
was fsynced, struck while writes were not yet on disk); their windows report
what they saw, and the test checks they really struck.

The run is as short as a schedule with every fault kind can be: 77 s with seed 18383,
whose ten faults (one of each kind) end at 74.4 s; of seeds 0 to 19,999, none puts all ten
in under 75.4 s (the old seed 11 needs 89.1 s). The schedule test checks that they fit.
"""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bazar.chaos.nemesis import FAULT_KINDS, FAULT_LENGTHS, plan

REPO = Path(__file__).resolve().parents[2]
DURATION, SEED = 77, 18383  # every fault kind once, in about the shortest run that allows


def test_the_schedule_is_reproducible_and_covers_every_fault_kind():
    first = plan(list(FAULT_KINDS), DURATION, seed=SEED)
    assert first == plan(list(FAULT_KINDS), DURATION, seed=SEED)
    assert first != plan(list(FAULT_KINDS), DURATION, seed=SEED + 1)
    assert {f.kind for f in first} == set(FAULT_KINDS)
    assert all(a.start + a.length < b.start for a, b in zip(first, first[1:]))
    swaps = [f for f in first if f.kind == "follower-swap"]
    assert all(FAULT_LENGTHS["follower-swap"][0] <= f.length <= FAULT_LENGTHS["follower-swap"][1] for f in swaps)


@pytest.mark.slow
def test_a_short_chaos_run_with_every_fault_kind_checks_clean(tmp_path):
    out = tmp_path / "chaos"
    result = subprocess.run(
        [sys.executable, "-m", "bazar", "chaos", "--duration", str(DURATION), "--clients", "6",
         "--seed", str(SEED), "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    summary = result.stdout
    assert result.returncode == 0, summary + result.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["ok"] is True
    assert results["faults_unavailable"] == {}
    assert {w["kind"] for w in results["fault_windows"]} == set(FAULT_KINDS)
    checks = {c["name"]: c["ok"] for c in results["report"]["checks"]}
    assert len(checks) == 7 and all(checks.values()), checks
    linearizable = next(c for c in results["report"]["checks"] if c["name"] == "linearizable")
    assert linearizable["metrics"]["write_answers"] > 200  # restock and purchase answers were checked
    operations = (out / "history.jsonl").read_text().splitlines()
    assert len(operations) > 500
    windows = {w["kind"]: w for w in results["fault_windows"]}
    assert "SIGKILLed" in windows["follower-swap"]["detail"] and "elected in" in windows["follower-swap"]["detail"]
    assert "killed while its snapshot writer" in windows["kill-compacting"]["detail"]
    assert re.match(r"[1-9]\d* round\(s\) of SIGKILL", windows["restart-group-loop"]["detail"])
    # The power cut struck under the write burst, with bytes not yet on disk, and says so.
    assert windows["power-cut"]["lost_bytes"] > 0, windows["power-cut"]["detail"]
    assert "power cuts: 1 of 1 dropped bytes that were not yet durable" in summary
    assert (out / "timeline.png").stat().st_size > 10_000
    assert "PASS" in summary


def test_chaos_can_check_a_cluster_that_is_already_running(make_cluster, tmp_path):
    cluster = make_cluster(catalog=3, order=3)
    out = tmp_path / "target"
    result = subprocess.run(
        [sys.executable, "-m", "bazar", "--config", str(cluster.config_path), "chaos", "--target",
         "--faults", "none", "--duration", "8", "--clients", "3", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["ok"] is True and results["fault_windows"] == []
    assert len((out / "history.jsonl").read_text().splitlines()) > 50
    # The cluster it checked is still up afterwards: chaos --target never stops it.
    assert all(cluster.is_running(name) for name in cluster.names)


def _is_bazar_process(cmdline: Path) -> bool:
    try:
        words = cmdline.read_bytes().split(b"\0")
    except OSError:  # it has exited meanwhile
        return False
    return b"-m" in words and b"bazar" in words and (b"node" in words or b"frontend" in words)


def _chaos_rules() -> str:
    return subprocess.run(["iptables", "-w", "-S"], capture_output=True, text=True).stdout


def test_ctrl_c_mid_fault_restores_the_network_and_stops_every_process(tmp_path):
    chaos = subprocess.Popen(
        [sys.executable, "-m", "bazar", "chaos", "--duration", "60", "--faults", "partition-halves",
         "--seed", "5", "--out", str(tmp_path / "interrupted")],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while "-j DROP" not in _chaos_rules() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "-j DROP" in _chaos_rules(), "the partition never started"
        # The cluster's seven processes (`python -m bazar node|frontend ...`); an iptables
        # command the run has started at this moment is its child too, and is not counted.
        children = {p.parent.name for p in Path("/proc").glob("[0-9]*/status")
                    if f"PPid:\t{chaos.pid}\n" in p.read_text(errors="ignore")
                    and _is_bazar_process(p.parent / "cmdline")}
        assert len(children) == 7
        chaos.send_signal(signal.SIGINT)
        assert chaos.wait(timeout=60) != 0
    finally:
        if chaos.poll() is None:  # a check above failed: still let it heal and clean up if it can
            chaos.send_signal(signal.SIGINT)
            try:
                chaos.wait(timeout=60)
            except subprocess.TimeoutExpired:
                chaos.kill()
                chaos.wait()
    assert "BAZAR-CHAOS" not in _chaos_rules()
    assert all(not Path(f"/proc/{pid}").exists() for pid in children)
