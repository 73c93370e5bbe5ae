"""Throughput with N concurrent clients: one process per client, each with a keep-alive session.

Processes rather than threads, so the load generator is not limited by one GIL. The
processes are started once (`ClientPool`) and reused by every run; each run gives every
client exactly one task, and all clients start at the same instant and stop at the same
instant, so the throughput is (requests answered in the window) / (window length).
"""
from __future__ import annotations

import multiprocessing
import queue
import time
from collections import Counter
from dataclasses import dataclass, field

START_DELAY = 0.3  # seconds between handing out the tasks and the common start


@dataclass
class ClientTask:
    """What one client does: send `method url` (with `body`) until `end_at` or `max_requests`."""

    method: str
    url: str
    body: object = None
    start_at: float = 0.0
    end_at: float = 0.0
    max_requests: int | None = None
    timeout: float = 10.0


@dataclass
class ClientResult:
    ok_in_window: int = 0            # 200s completed before end_at (throughput)
    ok_total: int = 0                # every 200, including ones that finished after end_at
    statuses: Counter = field(default_factory=Counter)  # every answer by status (or exception)
    latencies_ms: list[float] = field(default_factory=list)  # of the 200s
    cpu_seconds: float = 0.0         # CPU the client process itself used


def _client_main(tasks, results) -> None:
    import requests  # imported in the child: keeps spawn start-up cheap for the parent

    session = requests.Session()
    results.put("ready")
    while True:
        task = tasks.get()
        if task is None:
            session.close()
            return
        results.put(_run_task(session, task, requests))


def _run_task(session, task: ClientTask, requests) -> ClientResult:
    result = ClientResult()
    pause = task.start_at - time.time()
    if pause > 0:
        time.sleep(pause)
    cpu = time.process_time()
    sent = 0
    while time.time() < task.end_at and (task.max_requests is None or sent < task.max_requests):
        sent += 1
        start = time.perf_counter()
        try:
            response = session.request(task.method, task.url, json=task.body, timeout=task.timeout)
            response.content
            status = response.status_code
        except requests.RequestException as exc:
            status = type(exc).__name__
        elapsed = time.perf_counter() - start
        result.statuses[str(status)] += 1
        if status == 200:
            result.ok_total += 1
            result.latencies_ms.append(elapsed * 1000.0)
            if time.time() <= task.end_at:
                result.ok_in_window += 1
    result.cpu_seconds = time.process_time() - cpu
    return result


class ClientPool:
    """`size` client processes, started once; `run` hands each exactly one task."""

    def __init__(self, size: int = 16) -> None:
        context = multiprocessing.get_context("spawn")  # no inherited threads or sockets
        self.size = size
        self._results = context.Queue()
        self._inboxes = [context.Queue() for _ in range(size)]
        self._processes = [context.Process(target=_client_main, args=(inbox, self._results),
                                           name=f"bench-client-{i}", daemon=True)
                           for i, inbox in enumerate(self._inboxes)]
        for process in self._processes:
            process.start()
        # Wait until every client has imported what it needs, so that no measurement runs
        # while 16 interpreters are still starting up on the same cores.
        for _ in range(size):
            if self._results.get(timeout=120) != "ready":
                raise RuntimeError("a bench client did not start")

    def run(self, tasks: list[ClientTask], duration: float) -> dict:
        """Run one task per client (len(tasks) <= size) for `duration` seconds; summarize."""
        if len(tasks) > self.size:
            raise ValueError(f"{len(tasks)} tasks for {self.size} clients")
        start_at = time.time() + START_DELAY
        for inbox, task in zip(self._inboxes, tasks):
            task.start_at, task.end_at = start_at, start_at + duration
            inbox.put(task)
        collected: list[ClientResult] = []
        deadline = time.monotonic() + START_DELAY + duration + max(t.timeout for t in tasks) + 30
        while len(collected) < len(tasks):
            try:
                collected.append(self._results.get(timeout=max(0.1, deadline - time.monotonic())))
            except queue.Empty:
                raise TimeoutError("bench clients did not report back") from None
        statuses = Counter()
        latencies: list[float] = []
        for result in collected:
            statuses.update(result.statuses)
            latencies.extend(result.latencies_ms)
        ok_in_window = sum(r.ok_in_window for r in collected)
        cpu = sum(r.cpu_seconds for r in collected)
        return {"clients": len(tasks), "duration_s": duration,
                "ok_in_window": ok_in_window, "ok_total": sum(r.ok_total for r in collected),
                "throughput_rps": ok_in_window / duration,
                "statuses": dict(statuses), "latencies_ms": latencies,
                "client_cpu_share": cpu / (duration * max(1, _cores()))}

    def close(self) -> None:
        for inbox in self._inboxes:
            try:
                inbox.put(None)
            except (OSError, ValueError):
                pass
        for process in self._processes:
            process.join(2)
            if process.is_alive():
                process.terminate()
                process.join(2)

    def __enter__(self) -> "ClientPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _cores() -> int:
    import os
    return os.cpu_count() or 1
