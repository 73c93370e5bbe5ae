"""Schedules the generator found (tests/sim/test_schedules.py, python -m tests.sim.run), kept as regression
tests: each breaks a Raft safety property with PySyncObj's own code, and holds with
Bazar's corrections (consensus/raft_fixes.py)."""
from __future__ import annotations

import pytest

from tests.sim.harness import SafetyViolation, original_follower
from tests.sim.schedule import play

FOUND = {
    # The leader re-sends from an old acknowledgment; the follower cuts entries it had
    # acknowledged, the leader counts them, and a later leader lacks committed entry 9.
    "stale re-send cuts acknowledged entries": (3, [("write", 2, 17), ("run", 1, 4), ("run", 1, 1)]),
    # A vote delivered twice was counted twice: a candidate with 2 of 5 votes became a
    # second leader and overwrote committed entry 3.
    "a duplicated vote elects a minority candidate": (5, [("partition", 26), ("run", 1469145, 4)]),
}


@pytest.mark.parametrize("schedule", FOUND.values(), ids=FOUND.keys())
def test_found_schedule_is_safe(schedule):
    outcome = play(*schedule)
    assert outcome["acknowledged"] > 0


@pytest.mark.parametrize("schedule", FOUND.values(), ids=FOUND.keys())
def test_found_schedule_breaks_pysyncobj_own_code(schedule):
    with original_follower(), pytest.raises(SafetyViolation):
        play(*schedule)
