"""Who may hold a Raft port's connections before proving they hold the cluster key.

A connection a Raft listener accepts is a *stranger* until its peer proves, on that
connection, that it holds the cluster key (`frame_guard.proven`). PySyncObj kept strangers
for as long as they liked (`connectionTimeout`, a day in Bazar: see consensus/settings.py)
and any number of them, so idle connections could exhaust the process's file descriptors;
PySyncObj then closed its listener for good (see consensus/transport.py).

`Strangers` records the strangers a listener holds, oldest first, and decides which to
close; the transport closes them. Three rules:

1. **Handshake deadline.** A stranger is closed `HANDSHAKE_SECONDS` after it was accepted.
   A peer proves itself within one round trip; a restarted peer simply connects again.
2. **Per source.** At most `PER_SOURCE` strangers per source address: a newcomer beyond that
   closes the oldest stranger *from the same address*, so one host cannot crowd out others.
3. **In all.** At most `IN_ALL` strangers: a newcomer beyond that closes the oldest stranger.
   The newest is kept, not refused, so a peer's fresh connection gets its round trip even
   while a flood holds every slot (a flood would have to open IN_ALL connections within that
   round trip to push it out).

So strangers hold at most IN_ALL descriptors, far below a replica's file limit.
"""
from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Any, Callable, Hashable

HANDSHAKE_SECONDS = 5.0   # a peer needs one round trip; a stranger gets this long
PER_SOURCE = 16           # a group's peers, followers and admin tools share few sources
IN_ALL = 64               # far below a replica's file limit (CONNECTION_LIMIT + 256)
LOG_EVERY_SECONDS = 10.0  # at most one line per kind of closing, with a count of the rest

# Why a connection was closed by the listener's guards (the `reason` label of
# bazar_raft_connections_closed_total).
HANDSHAKE_TIMEOUT = "handshake_timeout"
TOO_MANY_FROM_SOURCE = "too_many_from_source"
TOO_MANY_STRANGERS = "too_many_unauthenticated"
OVERSIZED_FRAME = "oversized_frame"   # decided by consensus.frame_guard, counted by the transport
REASONS = (HANDSHAKE_TIMEOUT, TOO_MANY_FROM_SOURCE, TOO_MANY_STRANGERS, OVERSIZED_FRAME)


class Strangers:
    """The strangers one listener holds, oldest first, and which of them to close.

    Pure bookkeeping (no sockets, no clock of its own): every method is told the time.
    Used on the tick thread only.
    """

    def __init__(self, deadline: float | None = None, per_source: int = PER_SOURCE,
                 in_all: int = IN_ALL) -> None:
        self.deadline = HANDSHAKE_SECONDS if deadline is None else deadline  # read now: tests shorten it
        self.per_source = per_source
        self.in_all = in_all
        self._held: OrderedDict[Hashable, tuple[float, str]] = OrderedDict()  # conn -> (accepted, source)

    def __len__(self) -> int:
        return len(self._held)

    def admit(self, conn: Hashable, source: str, now: float) -> list[tuple[Any, str, str]]:
        """Record `conn`, accepted from `source` at `now`. Return the older strangers to
        close so both caps hold, as (conn, source, reason); they are forgotten already."""
        to_close = []
        same_source = [held for held, (_, where) in self._held.items() if where == source]
        if len(same_source) >= self.per_source:
            to_close.append((same_source[0], source, TOO_MANY_FROM_SOURCE))
            del self._held[same_source[0]]
        if len(self._held) >= self.in_all:
            oldest, (_, where) = next(iter(self._held.items()))
            to_close.append((oldest, where, TOO_MANY_STRANGERS))
            del self._held[oldest]
        self._held[conn] = (now, source)
        return to_close

    def expired(self, now: float) -> list[tuple[Any, str, str]]:
        """Forget and return the strangers accepted `deadline` seconds or more before `now`,
        as (conn, source, HANDSHAKE_TIMEOUT)."""
        to_close = []
        while self._held:
            oldest, (accepted, source) = next(iter(self._held.items()))
            if now - accepted < self.deadline:
                break
            to_close.append((oldest, source, HANDSHAKE_TIMEOUT))
            del self._held[oldest]
        return to_close

    def settle(self, no_longer_stranger: Callable[[Any], bool]) -> None:
        """Forget every connection for which `no_longer_stranger(conn)` is true (it proved
        itself, or it is closed)."""
        for conn in [conn for conn in self._held if no_longer_stranger(conn)]:
            del self._held[conn]


class ThrottledLog:
    """Warnings of one kind at most once per `every` seconds; each line says how many
    like it were held back since the previous one. A flood thus costs a few log lines."""

    def __init__(self, logger, every: float = LOG_EVERY_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self._logger = logger
        self._every = every
        self._clock = clock
        self._last: dict[str, float] = {}
        self._held_back: dict[str, int] = {}

    def warning(self, kind: str, message: str, *args: Any) -> None:
        self._emit(logging.WARNING, kind, message, *args)

    def error(self, kind: str, message: str, *args: Any) -> None:
        self._emit(logging.ERROR, kind, message, *args)

    def _emit(self, level: int, kind: str, message: str, *args: Any) -> None:
        now = self._clock()
        last = self._last.get(kind)
        if last is not None and now - last < self._every:
            self._held_back[kind] = self._held_back.get(kind, 0) + 1
            return
        held_back = self._held_back.pop(kind, 0)
        if held_back:
            message += f" ({held_back} more like it in the last {now - last:.0f} s)"
        self._logger.log(level, message, *args)
        self._last[kind] = now
