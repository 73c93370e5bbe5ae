"""web/admin.py's `Recent` (the groups' view /cluster and /readyz share) and web/auth.py's
Host check, without processes."""
from __future__ import annotations

import threading
import time

import pytest

from bazar.web.admin import Recent
from bazar.web.auth import require_allowed_host
from bazar.web.errors import ApiError


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_crowd_of_callers_shares_one_computation_per_period():
    clock = Clock()
    computed = []
    started = threading.Event()
    release = threading.Event()

    def survey():
        computed.append(clock.now)
        started.set()
        release.wait(10)  # a slow fan-out: every other caller arrives meanwhile
        return {"survey": len(computed)}

    view = Recent(survey, max_age=0.5, clock=clock)
    answers = []
    first = threading.Thread(target=lambda: answers.append(view.get()))
    first.start()
    assert started.wait(10)
    crowd = [threading.Thread(target=lambda: answers.append(view.get())) for _ in range(30)]
    for thread in crowd:
        thread.start()
    time.sleep(0.05)  # let the crowd reach the lock (the count below holds whatever the timing)
    release.set()
    for thread in [first, *crowd]:
        thread.join(10)
    assert computed == [100.0]
    assert answers == [{"survey": 1}] * 31
    clock.now += 0.4
    assert view.get() == {"survey": 1} and len(computed) == 1  # still young enough
    clock.now += 0.1
    assert view.get() == {"survey": 2} and len(computed) == 2  # one new survey per period


def test_a_failed_computation_is_tried_again_by_the_next_caller():
    outcomes = iter([RuntimeError("replicas unreachable"), {"ok": True}])

    def survey():
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    view = Recent(survey, max_age=60, clock=Clock())
    with pytest.raises(RuntimeError):
        view.get()
    assert view.get() == {"ok": True}


ALLOWED = frozenset({"127.0.0.1:8000", "localhost:8000", "[::1]:8000", "shop.example.com"})


@pytest.mark.parametrize("host", ["127.0.0.1:8000", "LOCALHOST:8000", "[::1]:8000", "shop.example.com",
                                  "shop.example.com:443", None])
def test_the_store_answers_its_own_host_names(host):
    require_allowed_host(host, ALLOWED)


@pytest.mark.parametrize("host", ["attacker.example:8000", "attacker.example", "localhost:8001",
                                  "127.0.0.1", "[::1]", "shop.example.com.evil:80", "", "127.0.0.1:8000@x"])
def test_a_rebound_name_is_refused_with_421(host):
    with pytest.raises(ApiError) as refused:
        require_allowed_host(host, ALLOWED)
    assert refused.value.status == 421


def test_a_star_allows_every_host():
    require_allowed_host("anything.example:1", frozenset({"*"}))
