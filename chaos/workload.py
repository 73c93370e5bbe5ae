"""The workload: careful clients whose every operation is recorded.

Each client is a thread with its own keep-alive session and its own random
stream (derived from the seed). A purchase carries its own Idempotency-Key and
is retried with the same key after errors and timeouts until it gets a
definite answer or its deadline passes (then its outcome is "unknown").
Admin writes carry a request id and are retried the same way.

Write-load clients add bursts on demand: while the nemesis holds the
`write_load` event set they restock back to back, so that a paused follower
falls far behind (the windows in which a Raft log can lose entries need a long
backlog). Their operations are recorded and checked like any other.

Every answer is recorded whole enough to be checked: a purchase's price and
title, the book a restock or price change returned.
"""
from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable

import requests

from bazar.chaos.history import Operation

ATTEMPT_TIMEOUT = 5.0    # one HTTP attempt (the cluster answers 503 after its 3 s commit timeout)
OPERATION_DEADLINE = 12.0  # a careful client gives up (outcome unknown) after this long
RETRY_PAUSE = 0.1
WEIGHTS = {"purchase": 50, "read": 35, "restock": 10, "set_price": 5}
LOAD_CLIENTS = 4
PRICES = (10.0, 12.5, 15.0, 20.0)


class Recorder:
    """A thread-safe, append-only history."""

    def __init__(self, t0: float) -> None:
        self.t0 = t0
        self.operations: list[Operation] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def now(self) -> float:
        return round(time.monotonic() - self.t0, 6)

    def next_id(self) -> int:
        with self._lock:
            return next(self._ids)

    def add(self, operation: Operation) -> None:
        with self._lock:
            self.operations.append(operation)


class Workload:
    """`clients` threads doing purchases, admin writes and reads until `stop` is set."""

    def __init__(self, frontend_url: str, items: list[int], clients: int, seed: int,
                 recorder: Recorder, current_fault: Callable[[], str | None],
                 admin_token: str | None = None, write_load: threading.Event | None = None,
                 load_clients: int = LOAD_CLIENTS) -> None:
        self.url = frontend_url
        self.items = items
        self.clients = clients
        self.seed = seed
        self.recorder = recorder
        self.current_fault = current_fault
        self.headers = {"Authorization": f"Bearer {admin_token}"} if admin_token else {}
        self.write_load = write_load
        self.load_clients = load_clients if write_load is not None else 0
        self.stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for client in range(self.clients):
            thread = threading.Thread(target=self._client, args=(client,), name=f"client-{client}", daemon=True)
            thread.start()
            self._threads.append(thread)
        for client in range(self.clients, self.clients + self.load_clients):
            thread = threading.Thread(target=self._load_client, args=(client,), name=f"load-{client}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def finish(self) -> None:
        """Stop starting operations and wait for those in flight to end."""
        self.stop.set()
        for thread in self._threads:
            thread.join(OPERATION_DEADLINE + ATTEMPT_TIMEOUT + 5)

    # -- one client -------------------------------------------------------------

    def _client(self, client: int) -> None:
        rng = random.Random(self.seed * 1000 + client)
        session = requests.Session()
        kinds, weights = zip(*WEIGHTS.items())
        for n in itertools.count(1):
            if self.stop.is_set():
                return
            kind = rng.choices(kinds, weights)[0]
            item = rng.choice(self.items)
            if kind == "purchase":
                self._purchase(session, client, item, f"c{client}-{n}-s{self.seed}")
            elif kind == "read":
                self._read(session, client, item, rng.choice(["cached", "local", "strong"]))
            elif kind == "restock":
                self._admin(session, client, item, "restock", {"restock": rng.randint(3, 8)},
                            f"r{client}-{n}-s{self.seed}")
            else:
                self._admin(session, client, item, "set_price", {"price": rng.choice(PRICES)},
                            f"p{client}-{n}-s{self.seed}")

    def _load_client(self, client: int) -> None:
        """Restock back to back while `write_load` is set; idle (and cheap) otherwise."""
        rng = random.Random(self.seed * 1000 + client)
        session = requests.Session()
        for n in itertools.count(1):
            while not self.write_load.wait(0.2):
                if self.stop.is_set():
                    return
            if self.stop.is_set():
                return
            self._admin(session, client, rng.choice(self.items), "restock", {"restock": rng.randint(1, 3)},
                        f"l{client}-{n}-s{self.seed}")

    def _purchase(self, session, client: int, item: int, key: str) -> None:
        def attempt():
            response = session.post(f"{self.url}/purchase/{item}", headers={"Idempotency-Key": key},
                                    timeout=ATTEMPT_TIMEOUT)
            if response.status_code == 200:
                body = response.json()
                return "ok", {"order_id": body["order_id"], "price": body["price"], "title": body["title"]}
            if response.status_code == 409:
                return "fail", {"error": "out of stock"}
            if response.status_code in (400, 404, 422):
                return "fail", {"error": response.json().get("error"), "definite": True}
            return None  # 503 and friends: unknown so far, try again with the same key

        self._record(client, "purchase", item, {"order_id": key}, attempt)

    def _admin(self, session, client: int, item: int, f: str, change: dict, request_id: str) -> None:
        def attempt():
            response = session.put(f"{self.url}/books/{item}", json={**change, "request_id": request_id},
                                   headers=self.headers, timeout=ATTEMPT_TIMEOUT)
            if response.status_code == 200:
                book = response.json()
                return "ok", {"price": book["price"], "stock": book["stock"], "title": book["title"]}
            if 400 <= response.status_code < 500:
                return "fail", {"error": response.json().get("error"), "definite": True}
            return None

        args = {"amount": change["restock"]} if f == "restock" else {"price": change["price"]}
        self._record(client, f, item, {**args, "request_id": request_id}, attempt)

    def _read(self, session, client: int, item: int, consistency: str) -> None:
        start = self.recorder.now()
        fault = self.current_fault()
        try:
            response = session.get(f"{self.url}/info/{item}?consistency={consistency}", timeout=ATTEMPT_TIMEOUT)
            ok = response.status_code == 200
            body = response.json()
        except (requests.RequestException, ValueError) as exc:
            ok, body = False, {"error": type(exc).__name__}
        result = ({"stock": body["stock"], "price": body["price"], "title": body["title"]} if ok
                  else {"error": body.get("error")})
        self.recorder.add(Operation(self.recorder.next_id(), client, "read", item, {"consistency": consistency},
                                    start, self.recorder.now(), "ok" if ok else "fail", result, fault))
        if not ok:
            time.sleep(RETRY_PAUSE)

    def _record(self, client: int, f: str, item: int, args: dict, attempt) -> None:
        """Run `attempt` until it returns a definite (outcome, result) or the deadline passes."""
        start = self.recorder.now()
        fault = self.current_fault()
        deadline = time.monotonic() + OPERATION_DEADLINE
        decided = None
        while decided is None and time.monotonic() < deadline:
            try:
                decided = attempt()
            except (requests.RequestException, ValueError):
                decided = None
            if decided is None:
                time.sleep(RETRY_PAUSE)
        if decided is None:
            operation = Operation(self.recorder.next_id(), client, f, item, args, start, None, "unknown", None, fault)
        else:
            outcome, result = decided
            operation = Operation(self.recorder.next_id(), client, f, item, args, start, self.recorder.now(),
                                  outcome, result, fault)
        self.recorder.add(operation)
