"""The bench's breakdown of a purchase: stage means, CPU by process role, and their report lines."""
from __future__ import annotations

from bazar.bench.probes import cpu_by_role, stage_means
from bazar.bench.report import purchase_breakdown


def test_stage_means_are_taken_over_the_purchases_between_two_looks():
    before = {"begin": {"count": 10.0, "seconds": 1.0}, "take_stock": {"count": 10.0, "seconds": 2.0}}
    after = {"begin": {"count": 14.0, "seconds": 1.008}, "take_stock": {"count": 14.0, "seconds": 2.02},
             "finish": {"count": 4.0, "seconds": 0.012}}
    assert stage_means(before, after) == {"begin": {"count": 4, "mean_ms": 2.0},
                                          "take_stock": {"count": 4, "mean_ms": 5.0},
                                          "finish": {"count": 4, "mean_ms": 3.0}}
    assert stage_means(after, after)["begin"] == {"count": 0, "mean_ms": None}


def test_cpu_is_summed_by_role():
    roles = {"order1": "order leader", "order2": "order follower", "order3": "order follower",
             "frontend1": "frontend"}
    per_op = {"order1": 4.5, "order2": 1.4, "order3": 1.2, "frontend1": 2.4, "stray": 0.1}
    assert cpu_by_role(per_op, roles) == {"order leader": {"processes": 1, "ms": 4.5},
                                          "order follower": {"processes": 2, "ms": 2.6},
                                          "frontend": {"processes": 1, "ms": 2.4},
                                          "other": {"processes": 1, "ms": 0.1}}


def test_the_report_names_each_stage_and_role():
    entry = {"label": "purchase, 3+3 replicas",
             "stages_ms": {"begin": {"count": 4, "mean_ms": 2.0}, "finish": {"count": 4, "mean_ms": None}},
             "server_cpu_ms_by_role": {"order follower": {"processes": 2, "ms": 2.6},
                                       "frontend": {"processes": 1, "ms": 2.4}}}
    stages, roles = purchase_breakdown(entry)
    assert "begin 2.00 ms" in stages and "finish -" in stages
    assert roles.endswith("frontend 2.40 ms, order follower 2.60 ms (2 together)")
    assert purchase_breakdown({"label": "x"}) == []
