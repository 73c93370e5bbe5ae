"""Group commit for calls: the requests that arrive while a call is in flight go together
in the next one.

Bazar's leaders batch Raft rounds this way (consensus/group_commit.py); `Batcher` does
the same for an HTTP hop that every purchase makes (the frontend's call to the order
leader, the order leader's call to the catalog):

- a lone request never waits: nothing is in flight, so it goes at once, alone
  (`send_one`);
- while a call is in flight, requests that arrive wait; when it comes back, they go
  together, at most `max_batch`, in one call (`send_many`). One call at a time: more in
  flight made the batches smaller and the hot item no faster
  (bench/results/where-the-time-goes.md);
- the thread whose call came back hands the next batch to the first request of it, which
  makes that call from its own thread: nobody's answer waits for calls made for others;
- `send_many` returns one result per item, in order, or None when the other side cannot
  take batches (an older version during a rolling upgrade): then each goes alone.

A result that is an exception is raised in the thread that asked for it; an exception
escaping a send is raised in every thread of that batch. Nothing is ever left waiting.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable


class Batcher:
    def __init__(self, send_one: Callable[[Any], Any], send_many: Callable[[list], list | None],
                 max_batch: int) -> None:
        self._send_one, self._send_many, self.max_batch = send_one, send_many, max_batch
        self._lock = threading.Lock()
        self._waiting: list[_Slot] = []
        self._in_flight = False

    def call(self, item: Any) -> Any:
        """The result of `item`, sent alone or with the items that waited with it."""
        slot = _Slot(item)
        with self._lock:
            self._waiting.append(slot)
            batch = None
            if not self._in_flight:
                self._in_flight = True
                batch = self._take()
        while not slot.done:
            if batch is None:
                slot.ready.wait()        # its result, or a batch to send (slot.batch)
                batch, slot.batch = slot.batch, None
                if batch is None:
                    break
            self._run(batch)
            batch = None
        return slot.outcome()

    def _take(self) -> list["_Slot"]:
        """The next batch, taken off the queue (under the lock)."""
        batch, self._waiting = self._waiting[:self.max_batch], self._waiting[self.max_batch:]
        return batch

    def _run(self, batch: list["_Slot"]) -> None:
        """Send `batch`, hand the next one (if any waited) to its first request's thread,
        and give every request of this one its result."""
        try:
            results = self._send(batch)
        finally:
            with self._lock:
                if self._waiting:
                    following = self._take()
                    following[0].batch = following
                    following[0].ready.set()
                else:
                    self._in_flight = False
        for waiting, result in zip(batch, results):
            waiting.result, waiting.done = result, True
            waiting.ready.set()

    def _send(self, batch: list["_Slot"]) -> list:
        try:
            if len(batch) > 1:
                results = self._send_many([s.item for s in batch])
                if results is not None:
                    if len(results) != len(batch):
                        raise ValueError(f"{len(results)} results for a batch of {len(batch)}")
                    return results
            return [self._send_one_safely(s.item) for s in batch]
        except Exception as error:   # every thread of the batch hears of it
            return [error] * len(batch)

    def _send_one_safely(self, item: Any) -> Any:
        try:
            return self._send_one(item)
        except Exception as error:
            return error


class _Slot:
    """One request waiting in a Batcher."""

    __slots__ = ("item", "result", "done", "batch", "ready")

    def __init__(self, item: Any) -> None:
        self.item, self.result, self.done, self.batch = item, None, False, None
        self.ready = threading.Event()

    def outcome(self) -> Any:
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result


class Gatherer:
    """Items nobody waits for, handed over together: `flush(items)`, which a subclass
    defines, is called by a daemon thread `delay` seconds after the first of them was added,
    with every item added meanwhile, in order (or earlier, with whatever `flush_now` or
    `take` finds). A purchase's record is such an item (node/orders/purchase.py,
    frontend/checkout.py): the records of `delay` go to the order group in one round."""

    def __init__(self, delay: float, name: str) -> None:
        self.delay = delay
        self.name = name
        self._lock = threading.Lock()
        self._waiting: list = []
        self._arrived = threading.Event()
        self._thread: threading.Thread | None = None

    def flush(self, items: list) -> None:
        raise NotImplementedError

    def add(self, item: Any) -> None:
        with self._lock:
            self._waiting.append(item)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
        self._arrived.set()

    def take(self) -> list:
        """Every item waiting, in the order added, for a caller that hands them over itself."""
        with self._lock:
            waiting, self._waiting = self._waiting, []
        return waiting

    def flush_now(self) -> None:
        waiting = self.take()
        if waiting:
            self.flush(waiting)

    def _run(self) -> None:
        while True:
            self._arrived.wait()
            time.sleep(self.delay)
            self._arrived.clear()
            try:
                self.flush_now()
            except Exception:  # never lose the thread; what it held is recovered elsewhere
                logging.getLogger("bazar").exception("%s: could not hand its items over", self.name)
