"""Raft's safety properties on real SyncObj replicas, under schedules Hypothesis generates.

Each schedule is a list of steps on a simulated group of 3 or 5 replicas under
write load: adversarial rounds (time passes, replicas tick in any order, and
messages arrive in order, overtaking others, twice, late from cut connections,
or never), writes at any replica, crashes and restarts (files kept), partitions
and connection resets. Snapshots are frequent (every 40 entries), so lagging
replicas are sent them. After every step `World.observe` checks election safety,
log matching, leader completeness, state machine safety and that no acknowledged
write is lost (tests/sim/harness.py). At the end the network heals and every
replica must reach the same state holding every acknowledged write.

CI runs a fixed, derandomized set of schedules; `BAZAR_SIM_EXAMPLES=20000` (say)
runs more, with fresh randomness each time.
"""
from __future__ import annotations

import logging
import os
import random
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.sim.harness import Simulation

EXAMPLES = int(os.environ.get("BAZAR_SIM_EXAMPLES", "0")) or None
CI_EXAMPLES = 3000

step = st.one_of(
    st.tuples(st.just("run"), st.integers(0, 2 ** 32 - 1), st.integers(1, 25)),
    st.tuples(st.just("write"), st.integers(0, 4), st.integers(1, 25)),
    st.tuples(st.just("crash"), st.integers(0, 4)),
    st.tuples(st.just("restart"), st.integers(0, 4)),
    st.tuples(st.just("partition"), st.integers(1, 30)),
    st.tuples(st.just("heal")),
    st.tuples(st.just("reset"), st.integers(0, 4), st.integers(0, 4)),
)
schedules = st.tuples(st.sampled_from([3, 3, 5]), st.lists(step, min_size=3, max_size=30))


def play(size: int, steps: list) -> dict:
    """Run one schedule; SafetyViolation (or any exception from PySyncObj) fails it."""
    with Simulation(size=size, compaction_entries=40, payload=64) as sim:
        names = sim.names
        assert sim.run_until(lambda: sim.leader() is not None, seconds=10)
        for kind, *args in steps:
            if kind == "run":
                rng = random.Random(args[0])
                for _ in range(args[1]):
                    sim.chaotic_step(rng)
            elif kind == "write":
                name = names[args[0] % size]
                if name in sim.replicas:
                    sim.write(name, args[1])
            elif kind == "crash":
                name = names[args[0] % size]
                if name in sim.replicas and len(sim.replicas) > 1:
                    sim.crash(name)
            elif kind == "restart":
                name = names[args[0] % size]
                if name in sim.crashed:
                    sim.restart(name)
            elif kind == "partition":
                side = {n for i, n in enumerate(names) if args[0] >> i & 1}
                sim.network.partition(side, set(names) - side)
            elif kind == "heal":
                sim.network.heal()
            elif kind == "reset":
                a, b = names[args[0] % size], names[args[1] % size]
                if a != b:
                    sim.network.reset(a, b)
            sim.observe()
        sim.heal_everything()
        assert sim.run_until(sim.converged, seconds=60), "the healed group did not converge"
        for name in sim.names:
            assert sim.lost_acknowledged(name) == [], f"{name} lost acknowledged writes"
        assert sim.world.violations == []
        return {"acknowledged": len(sim.world.acknowledged), "messages": sim.network.delivered}


def test_raft_safety_under_generated_schedules():
    """Thousands of schedules, zero violations of Raft's safety properties."""
    totals = {"schedules": 0, "acknowledged": 0, "messages": 0}

    @settings(max_examples=EXAMPLES or CI_EXAMPLES, derandomize=EXAMPLES is None, deadline=None,
              database=None, suppress_health_check=list(HealthCheck), print_blob=True)
    @given(schedules)
    def each(schedule):
        outcome = play(*schedule)
        totals["schedules"] += 1
        totals["acknowledged"] += outcome["acknowledged"]
        totals["messages"] += outcome["messages"]

    started = time.monotonic()
    # Replicas log every refused vote, crash-interrupted write and snapshot: thousands of
    # schedules' worth would only fill memory (pytest keeps every record of a test).
    logging.disable(logging.CRITICAL)
    try:
        each()
    finally:
        logging.disable(logging.NOTSET)
    elapsed = time.monotonic() - started
    print(f"\n{totals['schedules']} schedules in {elapsed:.0f} s: {totals['acknowledged']} writes "
          f"acknowledged, {totals['messages']} messages delivered, 0 safety violations")
    assert totals["schedules"] >= (EXAMPLES or CI_EXAMPLES) // 2   # hypothesis ran them
