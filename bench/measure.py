"""Latency sampling: N sequential requests over one keep-alive session, and their statistics."""
from __future__ import annotations

import math
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import requests

# A request is (method, path, json body or None, extra headers or None).
Request = tuple[str, str, object, dict | None]
RequestFactory = Callable[[int], Request]


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between ranks (numpy's default)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(samples_ms: list[float]) -> dict:
    """p50 / p99 / mean / min / max (milliseconds) and the sample count."""
    if not samples_ms:
        return {"n": 0, "p50_ms": None, "p99_ms": None, "mean_ms": None, "min_ms": None, "max_ms": None}
    return {"n": len(samples_ms),
            "p50_ms": percentile(samples_ms, 50),
            "p99_ms": percentile(samples_ms, 99),
            "mean_ms": sum(samples_ms) / len(samples_ms),
            "min_ms": min(samples_ms),
            "max_ms": max(samples_ms)}


@dataclass
class Samples:
    """The latencies of the requests that succeeded, and a count of the others by status."""

    latencies_ms: list[float] = field(default_factory=list)
    failures: Counter = field(default_factory=Counter)
    # CPU (user + system) each server process spent per recorded request, when measured.
    server_cpu_ms_per_op: dict[str, float] | None = None

    def to_json(self) -> dict:
        body = {**summarize(self.latencies_ms), "errors": dict(self.failures),
                "samples_ms": [round(x, 4) for x in self.latencies_ms]}
        if self.server_cpu_ms_per_op is not None:
            body["server_cpu_ms_per_op"] = self.server_cpu_ms_per_op
        return body


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time `pid` has used so far (from /proc/<pid>/stat), in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sample(base_url: str, make_request: RequestFactory, count: int, warmup: int | None = None,
           ok_statuses: tuple[int, ...] = (200,), timeout: float = 10.0,
           session: requests.Session | None = None, server_pids: dict[str, int] | None = None) -> Samples:
    """Send `count` requests one after another (after `warmup` unrecorded ones) and time each.

    `make_request(i)` builds the i-th request, so a caller can vary ids or idempotency keys.
    Only requests answered with one of `ok_statuses` are recorded as latencies; others are
    counted in `failures` (by status code, or by exception name). With `server_pids`, the CPU
    each of those processes used during the recorded requests is reported per request: on a
    shared machine that figure does not depend on what else is running, unlike the latency.
    """
    own = session is None
    session = session or requests.Session()
    warmup = max(5, count // 10) if warmup is None else warmup
    result = Samples()
    cpu_before: dict[str, float | None] = {}
    try:
        for i in range(warmup + count):
            if i == warmup and server_pids:
                cpu_before = {name: cpu_seconds(pid) for name, pid in server_pids.items()}
            method, path, body, headers = make_request(i)
            start = time.perf_counter()
            try:
                response = session.request(method, base_url + path, json=body, headers=headers,
                                           timeout=timeout)
                response.content  # the whole body is part of the latency
                status = response.status_code
            except requests.RequestException as exc:
                status = type(exc).__name__
            elapsed_ms = (time.perf_counter() - start) * 1000.0
            if i < warmup:
                continue
            if status in ok_statuses:
                result.latencies_ms.append(elapsed_ms)
            else:
                result.failures[str(status)] += 1
        if server_pids and count:
            per_op = {}
            for name, pid in server_pids.items():
                after, before = cpu_seconds(pid), cpu_before.get(name)
                if after is not None and before is not None:
                    per_op[name] = round((after - before) * 1000.0 / count, 3)
            result.server_cpu_ms_per_op = per_op
    finally:
        if own:
            session.close()
    return result


def get(path: str) -> RequestFactory:
    """The same GET every time."""
    return lambda i: ("GET", path, None, None)


def interleaved(first: tuple, second: tuple, count: int, blocks: int = 5,
                timeout: float = 10.0) -> tuple[Samples, Samples]:
    """Sample two endpoints in alternating blocks, so that drift in the machine's load
    (other processes coming and going) affects both alike and their ratio stays fair.

    `first` and `second` are (base_url, make_request, server_pids or None).
    """
    results = (Samples(), Samples())
    cpu_totals: tuple[dict, dict] = ({}, {})
    sessions = (requests.Session(), requests.Session())
    per_block = [count // blocks + (1 if b < count % blocks else 0) for b in range(blocks)]
    try:
        for block, n in enumerate(per_block):
            for which, (base_url, make_request, pids) in enumerate((first, second)):
                if n == 0:
                    continue
                offset = sum(per_block[:block])
                part = sample(base_url, lambda i, o=offset: make_request(o + i), n,
                              warmup=None if block == 0 else 0, timeout=timeout,
                              session=sessions[which], server_pids=pids)
                results[which].latencies_ms.extend(part.latencies_ms)
                results[which].failures.update(part.failures)
                for name, ms in (part.server_cpu_ms_per_op or {}).items():
                    cpu_totals[which][name] = cpu_totals[which].get(name, 0.0) + ms * n
    finally:
        for session in sessions:
            session.close()
    for which in (0, 1):
        if cpu_totals[which]:
            results[which].server_cpu_ms_per_op = {name: round(total / count, 3)
                                                   for name, total in cpu_totals[which].items()}
    return results
