"""Throughput from wrk, a load generator written in C (Debian package `wrk`).

The bench's own clients (bench/load.py) are Python processes: at the floor's rate they take
about two thirds of the machine's CPU, so their throughput figures measure the clients as
much as the server. wrk drives the same 16 keep-alive connections from one epoll thread at
a few percent of a core, so the hot-item target and the floor it is compared with are both
measured with it.

wrk reports through a Lua `done` hook written here: one line of JSON with the request
count, the non-2xx answers, the socket errors and the latency percentiles, so nothing
depends on the layout of its human-readable summary.
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import tempfile
from pathlib import Path

from bazar.bench.measure import cpu_seconds

INSTALL = "install it with `sudo apt-get install wrk` (Debian, Ubuntu; `./bazar.sh test` installs it)"
MARK = "bazar-wrk "

# The `done` hook runs once, after every thread has stopped; `summary` holds the totals.
# Durations and latencies are in microseconds.
_DONE = r'''
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%s{"requests": %.0f, "duration_us": %.0f, "non_2xx": %.0f, ' ..
    '"socket_errors": {"connect": %.0f, "read": %.0f, "write": %.0f, "timeout": %.0f}, ' ..
    '"latency_us": {"p50": %.0f, "p99": %.0f, "mean": %.3f, "max": %.0f}}\n',
    "%MARK%", summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean, latency.max))
end
'''


def executable() -> str | None:
    """wrk's path, or None when it is not installed."""
    return shutil.which("wrk")


def version() -> str | None:
    """wrk's version line ("wrk debian/4.1.0-3 [epoll] ..."), or None when it is not installed."""
    path = executable()
    if path is None:
        return None
    done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
    first = (done.stdout or done.stderr).strip().splitlines()
    return first[0] if first else "wrk (unknown version)"


def script(method: str = "GET", headers: dict[str, str] | None = None, body: str | None = None) -> str:
    """The Lua script wrk runs: the request to send, and the `done` hook that reports."""
    lines = [f"wrk.method = {_lua_string(method)}"]
    for name, value in (headers or {}).items():
        lines.append(f"wrk.headers[{_lua_string(name)}] = {_lua_string(value)}")
    if body is not None:
        lines.append(f"wrk.body = {_lua_string(body)}")
    return "\n".join(lines) + "\n" + _DONE.replace("%MARK%", MARK)


def _lua_string(text: str) -> str:
    """`text` as a Lua string literal (printable ASCII only: all a method, header or body here holds)."""
    if not (text.isascii() and text.isprintable()):
        raise ValueError(f"not printable ASCII: {text!r}")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse(stdout: str) -> dict:
    """The figures of the `done` hook's line in wrk's output."""
    for line in stdout.splitlines():
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    raise ValueError("wrk printed no result line (was the Lua done hook run?)")


def summarize(raw: dict, connections: int, threads: int, server_cpu: dict[str, float] | None,
              generator_cpu_s: float | None) -> dict:
    """The bench's record of one wrk run (see bench/schema.py)."""
    seconds = raw["duration_us"] / 1e6
    ok = raw["requests"] - raw["non_2xx"]
    lat = raw["latency_us"]
    record = {"tool": "wrk", "connections": connections, "threads": threads, "duration_s": round(seconds, 3),
              "requests": raw["requests"], "ok": ok, "non_2xx": raw["non_2xx"],
              "socket_errors": raw["socket_errors"],
              "throughput_rps": ok / seconds if seconds > 0 else None,
              "latency_under_load": {"p50_ms": lat["p50"] / 1000, "p99_ms": lat["p99"] / 1000,
                                     "mean_ms": lat["mean"] / 1000, "max_ms": lat["max"] / 1000}}
    if server_cpu is not None and ok:
        # Server CPU per answered request under this load, by process (compare with the
        # sequential figure: what concurrency saves or costs).
        record["server_cpu_ms_per_op"] = {name: round(s * 1000 / ok, 3) for name, s in server_cpu.items()}
    if generator_cpu_s is not None and seconds > 0:
        record["generator_cpu_share"] = round(generator_cpu_s / (seconds * (os.cpu_count() or 1)), 4)
    return record


def run(url: str, seconds: int, connections: int = 16, threads: int = 1, method: str = "GET",
        headers: dict[str, str] | None = None, body: str | None = None, timeout_s: int = 10,
        server_pids: dict[str, int] | None = None) -> dict:
    """Drive `url` with wrk for `seconds` (whole seconds: wrk's unit) over `connections`
    keep-alive connections; return summarize()'s record. Raises RuntimeError when wrk is
    missing or fails: a bench that meant to measure with it must not go on without saying."""
    path = executable()
    if path is None:
        raise RuntimeError("wrk is not installed: " + INSTALL)
    with tempfile.TemporaryDirectory(prefix="bazar-wrk-") as directory:
        lua = Path(directory) / "request.lua"
        lua.write_text(script(method, headers, body))
        before = {name: cpu_seconds(pid) for name, pid in (server_pids or {}).items()}
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run([path, f"-t{threads}", f"-c{connections}", f"-d{int(seconds)}s",
                               f"--timeout", f"{int(timeout_s)}s", "-s", str(lua), url],
                              capture_output=True, text=True, timeout=seconds + timeout_s + 30)
        children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        after = {name: cpu_seconds(pid) for name, pid in (server_pids or {}).items()}
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited with status {done.returncode}: {done.stderr.strip()[-500:]}")
    try:
        raw = parse(done.stdout)
    except ValueError as exc:
        raise RuntimeError(f"{exc}; wrk said: {(done.stdout + done.stderr).strip()[-500:]}") from None
    server_cpu = None
    if server_pids:
        server_cpu = {name: after[name] - before[name] for name in server_pids
                      if after.get(name) is not None and before.get(name) is not None}
    generator = ((children_after.ru_utime + children_after.ru_stime)
                 - (children_before.ru_utime + children_before.ru_stime))
    return summarize(raw, connections, threads, server_cpu, generator)


def stock_check(initial: int, final: int, record: dict) -> dict:
    """Did the stock fall by exactly what wrk was told was sold?

    When its time is up wrk stops reading: a purchase in flight on a connection then (at most
    one per connection) may have taken its copy without wrk counting the answer. A non-2xx
    answer or a broken connection (read or write error) may also hide a purchase that went
    through. So the stock taken must be at least the successes and exceed them by no more
    than those uncounted requests; anything else is a lost or phantom sale."""
    taken = initial - final
    ok = record["ok"]
    errors = record.get("socket_errors", {})
    uncounted = record["connections"] + record["non_2xx"] + errors.get("read", 0) + errors.get("write", 0)
    return {"initial_stock": initial, "final_stock": final, "stock_taken": taken, "successes": ok,
            "uncounted_at_most": uncounted,
            "consistent": ok <= taken <= ok + uncounted and final >= 0,
            "oversold": max(0, -final),
            "sold_without_stock": max(0, ok - taken)}
