"""Membership steps inside schedules (tests/sim/membership_steps.py) really change the group."""
from __future__ import annotations

from tests.sim import membership_steps
from tests.sim.harness import Simulation
from tests.sim.schedule import apply, generate


def test_add_replace_and_remove_steps_change_the_configuration():
    with Simulation(size=3, compaction_entries=10, payload=64, fork_writer=True) as sim:
        assert sim.run_until(lambda: sim.leader() is not None, seconds=10)
        for kind, *args in [("write", 0, 20), ("add", 1, 7), ("replace", 0, 0, 9), ("remove", 0, 1, 11)]:
            apply(sim, set(), kind, args)
            sim.observe()
            membership_steps.after_step(sim)
        # A command not done within its step is asked again between later steps (the
        # module's rule): calm rounds until the operator's queue is empty.
        for seed in range(20):
            if not membership_steps.state(sim).queue:
                break
            apply(sim, set(), "run", [seed, 50])
            sim.observe()
            membership_steps.after_step(sim)
        assert not membership_steps.state(sim).queue
        membership_steps.before_heal(sim)
        sim.heal_everything()
        assert sim.run_until(sim.converged, seconds=60)
        members = membership_steps.members(sim)
        removed = membership_steps.state(sim).removed
        assert len(removed) == 2 and not removed & set(members)
        assert {"n4", "n5"} <= set(sim.names) and len(members) == 3   # 3 +1, -1 +1, -1
        assert all(sim.lost_acknowledged(name) == [] for name in members)


def test_a_share_of_generated_schedules_has_membership_steps_and_the_rest_are_unchanged():
    with_steps = [seed for seed in range(200) if generate(seed) != generate(seed, membership=False)]
    assert 40 <= len(with_steps) <= 120
    assert all(any(step[0] in membership_steps.KINDS for step in generate(seed)[1]) for seed in with_steps)
