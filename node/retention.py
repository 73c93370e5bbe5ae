"""How long a group remembers an outcome, decided in its log.

A retried purchase or admin write gets its first outcome back only because the
state machine remembers it, by order or request id. Remembered forever, those
outcomes grow without bound (about 1.5 KB per order), so each is kept for the
retention set in cluster.yaml (`retention.outcomes`, 24 h by default) and then
forgotten: a retry after that is a new request.

When "after that" has come must be the same on every replica, in every replay,
so no replica ever looks at its own clock. The group's leader proposes, every
`expire_every(retention)` seconds, an `Expire` command carrying its clock (`now`)
and the cutoff (`now - retention - period`). The log's clock is the newest
`now` applied; an outcome is stamped with the log's clock when it is recorded
(or, recorded before the log had one, with the first `now`), and an `Expire`
drops every outcome stamped before its cutoff. Stamps lag the real time by at
most one period, which the cutoff's extra period makes up for: an outcome is
kept at least `retention`, at most `retention` plus two periods.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import ClassVar, Iterable

from bazar.node.wire import to_wire

log = logging.getLogger("bazar.retention")

DEFAULT_RETENTION = 24 * 3600.0
LONGEST_PERIOD = 60.0


def expire_every(retention: float) -> float:
    """Seconds between a leader's `Expire` proposals: a tenth of the retention, at most a minute."""
    return min(LONGEST_PERIOD, retention / 10)


@dataclass(frozen=True)
class Expire:
    """Forget outcomes stamped before `cutoff`; advance the log's clock to `now`."""
    OP: ClassVar[str] = "expire"
    now: float
    cutoff: float

    def __post_init__(self) -> None:
        # A TypeError is what `decode` turns into "malformed command", before anything changes.
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                   for v in (self.now, self.cutoff)):
            raise TypeError("expire: now and cutoff must be finite numbers")


def expire(now: float, retention: float) -> Expire:
    """The command a leader proposes at its wall-clock time `now`."""
    return Expire(now=round(now, 3), cutoff=round(now - retention - expire_every(retention), 3))


class Stamps:
    """Remembered keys in the order they were recorded, each with the log's clock then.

    Stamps never decrease in that order (the log's clock only moves forward), so the
    keys due are always at the front and expiring never scans what it keeps. A stamp
    of None means "recorded before the log had a clock"; the first `Expire` stamps
    those with its `now`.
    """

    def __init__(self, pairs: Iterable = ()) -> None:
        self._at: dict[str, float | None] = {key: at for key, at in pairs}

    def stamp(self, key: str, clock: float | None) -> None:
        self._at.setdefault(key, clock)

    def forget(self, key: str) -> None:
        self._at.pop(key, None)

    def due(self, now: float, cutoff: float) -> list[str]:
        """Remove and return the keys stamped before `cutoff`, after stamping unknown ones `now`."""
        expired = []
        for key, at in self._at.items():
            if at is None:
                self._at[key] = now  # only at the front: every later stamp is a clock's
                continue
            if at >= cutoff:
                break
            expired.append(key)
        for key in expired:
            del self._at[key]
        return expired

    def pairs(self) -> list[list]:
        """[[key, stamp], ...] in order: plain data for snapshots."""
        return [[key, at] for key, at in self._at.items()]

    def __len__(self) -> int:
        return len(self._at)


def advance(clock: float | None, command: Expire) -> float:
    """The log's clock after `command`: never backwards, whatever a new leader's clock says."""
    return command.now if clock is None else max(clock, command.now)


class ExpiryProposer:
    """A daemon thread that, on the group's leader, proposes an `Expire` every period.

    Only the leader proposes, so the log is not flooded; a proposal lost in a leader
    change is simply made again by the next leader on its next period. Applying an
    `Expire` twice is harmless (the second finds nothing new to drop)."""

    def __init__(self, member, retention: float, commit_timeout: float) -> None:
        self.member = member
        self.retention = retention
        self.period = expire_every(retention)
        self.commit_timeout = commit_timeout
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="expire-outcomes", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def propose(self) -> dict | None:
        """One proposal if this member leads; the command's result, or None."""
        if not self.member.is_leader:
            return None
        return self.member.submit(to_wire(expire(time.time(), self.retention)), timeout=self.commit_timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            try:
                self.propose()
            except Exception as error:  # a commit failure: the next period tries again
                log.warning("could not propose expiry of old outcomes: %s", error)
