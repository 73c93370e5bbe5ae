"""bench/wrk.py: the Lua script wrk runs, the line its done hook prints, and the stock
check of a hot-item run (wrk stops with up to one request in flight per connection)."""
from __future__ import annotations

import pytest

from bazar.bench import wrk


def wrk_record(rps: float, connections: int = 16, seconds: float = 5.0, non_2xx: int = 0) -> dict:
    ok = round(rps * seconds)
    return wrk.summarize({"requests": ok + non_2xx, "duration_us": seconds * 1e6, "non_2xx": non_2xx,
                          "socket_errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0},
                          "latency_us": {"p50": 5000, "p99": 20000, "mean": 6000.0, "max": 30000}},
                         connections, 2, None, 0.1)


def test_wrk_stock_check_allows_only_the_requests_in_flight_when_it_stopped():
    record = wrk_record(100.0, connections=16)   # 500 answered 200
    assert wrk.stock_check(1000, 500, record)["consistent"] is True
    assert wrk.stock_check(1000, 484, record)["consistent"] is True            # 16 in flight
    assert wrk.stock_check(1000, 483, record)["consistent"] is False           # one copy too many gone
    short = wrk.stock_check(1000, 501, record)                                 # an answer with no copy taken
    assert short["consistent"] is False and short["sold_without_stock"] == 1
    with_errors = wrk_record(100.0, connections=16, non_2xx=2)                 # a 5xx may hide a purchase
    assert wrk.stock_check(1000, 482, with_errors)["consistent"] is True


def test_wrk_reports_through_its_done_hook_and_quotes_what_it_sends():
    lua = wrk.script("POST", {"Idempotency-Key": 'a"b\\c'})
    assert 'wrk.method = "POST"' in lua
    assert 'wrk.headers["Idempotency-Key"] = "a\\"b\\\\c"' in lua
    assert "done = function(summary, latency, requests)" in lua
    with pytest.raises(ValueError):
        wrk.script("GET", {"X": "line\nbreak"})
    line = ('Running 2s test\n' + wrk.MARK + '{"requests": 10, "duration_us": 2000000, "non_2xx": 1, '
            '"socket_errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0}, '
            '"latency_us": {"p50": 1500, "p99": 4000, "mean": 1700.5, "max": 5000}}\n')
    record = wrk.summarize(wrk.parse(line), 16, 2, {"floor": 0.009}, 0.02)
    assert record["ok"] == 9 and record["throughput_rps"] == pytest.approx(4.5)
    assert record["latency_under_load"]["p50_ms"] == pytest.approx(1.5)
    assert record["server_cpu_ms_per_op"] == {"floor": 1.0}
    with pytest.raises(ValueError):
        wrk.parse("Running 2s test\n  10 requests in 2.00s\n")
