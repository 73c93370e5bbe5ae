"""Group commit: a leader sends the commands that arrive while a commit is in flight
together, in one append-entries message per follower, once that commit is done.

What PySyncObj 0.3.17 does
--------------------------
With `appendEntriesUseBatch` off (Bazar's setting, consensus/settings.py), the tick
thread takes each submitted command off its queue, appends it to the log and at once
sends an append-entries round for it (`__sendAppendEntries`, which sends every entry
a follower lacks, so the first round already carries whatever was appended before
it). Under load every command therefore costs one message per follower, one leader
fsync (`journal._sync_after_sending`), one fsync per follower and one reply each,
even when the commands arrive together; with the cluster secret each message is also
compressed and encrypted on its own.

What this changes
-----------------
`_checkCommandsToApply` (replaced below) appends every command waiting in the queue
first, then sends one round for all of them, and only if no earlier round is still in
flight: an entry was sent that the leader has not counted committed yet. While one is,
the new entries wait in the leader's log; when the commit completes, the round that
`after_commit` asks for carries them, all in one message per follower. So:

- one client alone never waits for a batch to fill: nothing is in flight when its
  command arrives, and it is sent at once, exactly as before;
- under load, one round (one message per follower, one fsync on each replica) carries
  every command that arrived during the previous round;
- nothing waits longer than a heartbeat (`appendEntriesPeriod`): every heartbeat also
  sends every entry a follower lacks, so a round that is lost or a follower that does
  not answer holds nothing back for longer than before.

The commit announcement
-----------------------
When batching is off, PySyncObj sends a whole round after every commit, only to tell
the followers the new commit index: per commit, every member received, decrypted,
synced and acknowledged two messages instead of one (leaving the order group's out saved
9-16% of a purchase's CPU: bench/results/where-the-time-goes.md). `after_commit` (called
by `raft_fixes` once entries are applied) decides instead:

- entries a voting member has not been sent yet (commands that arrived during the
  round): a round to everyone, which carries them and the new commit index;
- otherwise no round: members, voting or not, learn the commit index with the next
  round, at the latest the next heartbeat (`appendEntriesPeriod`). Raft asks no more: a
  follower's commit index only tells it what it may apply. Reads on a follower wait for
  what they need (`min_index`) or are bounded by its in-touch rule, which does not
  depend on it. A frontend's non-voting catalog follower used to get the round at once,
  because the buyer's answer waited for it to apply the purchase; the frontend now fences
  its cache at the purchase's index instead and sends reads it cannot answer yet to the
  leader (frontend/gateway.py, `_see_own_write`), so the round is not needed there either.

Commands submitted together (a batch of purchases, or a `begin` with the `finish`es that
wait for it) are taken off the queue together: the submitting thread holds
`proposing_together` while it queues them, and the tick thread takes that lock before
taking commands. Without it, a tick thread already awake under load took the first few
and sent them alone, and the rest waited for that round to commit
(tests/unit/test_proposals_together.py).

Safety is untouched: the entries are appended to the leader's log in arrival order
and are committed, applied and answered exactly as PySyncObj does; only *when* they
are sent changes, which Raft leaves to the leader.

"In flight" is read from the leader's own bookkeeping: `__raftNextIndex[node] - 1` is
the last entry sent to `node`, so a round is in flight while the highest of those, over
the voting members, lies beyond the commit index. Every round sent is PySyncObj's
own, to every member: a partial round would need messages of Bazar's making, and two
attempts at one changed the simulator's schedules in ways not yet understood
(issue 22's note). No state is added to the SyncObj (PySyncObj pickles such
attributes into its snapshots).
"""
from __future__ import annotations

import queue
import threading
import weakref

import pysyncobj.syncobj as _syncobj
from pysyncobj.config import FAIL_REASON
from pysyncobj.syncobj import SyncObj, _RAFT_STATE

from bazar.consensus import patching

_CHECK_COMMANDS = "_checkCommandsToApply"
_DIGEST = "78e5970a13ea62fbad757620e6e56edb348d27cbe8173c0e97e2c9c68d5acf47"  # 0.3.17's source


class _SyncObj:
    """Replacement methods for pysyncobj.SyncObj (named so that `self.__x` is SyncObj's `__x`)."""

    def _checkCommandsToApply(self):
        """Take the submitted commands off the queue (for at most one heartbeat period).
        A leader appends them to its log and then sends one round for all of them, unless
        a round is in flight (see the module docstring); a follower forwards them to its
        leader, as PySyncObj does."""
        with proposing_together(self):
            appended = _SyncObj.take_commands(self)
        if appended and not self.__conf.appendEntriesUseBatch and not _SyncObj.round_in_flight(self):
            self.__sendAppendEntries()

    def take_commands(self):
        """`_checkCommandsToApply`'s loop: take the queued commands; whether any was appended."""
        startTime = _syncobj.monotonicTime()
        appended = False
        while _syncobj.monotonicTime() - startTime < self.__conf.appendEntriesPeriod:
            if self.__raftLeader is None and self.__conf.commandsWaitLeader:
                break
            try:
                command, callback = self.__commandsQueue.get_nowait()
            except queue.Empty:
                break
            requestNode, requestID = None, None
            if isinstance(callback, tuple):
                requestNode, requestID = callback
            if self.__raftState == _RAFT_STATE.LEADER:
                appended = _SyncObj.append_command(self, command, callback, requestNode, requestID) or appended
            elif self.__raftLeader is not None:
                _SyncObj.forward_command(self, command, callback, requestNode, requestID)
            else:
                self.__callErrCallback(FAIL_REASON.MISSING_LEADER, callback)
        return appended

    def after_commit(self):
        """After a leader applied newly committed entries: whether PySyncObj should send its
        round to every member now (see the module docstring)."""
        if self.__raftState != _RAFT_STATE.LEADER or self.__conf.appendEntriesUseBatch:
            return True  # PySyncObj's own rule; a follower sends nothing anyway
        last = self.__getCurrentLogIndex()
        return any(self.__raftNextIndex[node] <= last for node in self.__otherNodes)  # the batch
        # that waited for this commit; else members learn the commit index with the next round

    # ------------------------------------------------------------------ helpers

    def round_in_flight(self):
        """Whether an entry this leader sent is not committed yet."""
        nextIndex = self.__raftNextIndex
        if not nextIndex:
            return False  # a group of one: nobody to send to
        return max(nextIndex.values()) - 1 > self.__raftCommitIndex

    def append_command(self, command, callback, requestNode, requestID):
        """The leader's part, PySyncObj's own without the per-command send: append the
        command (a membership change only if PySyncObj accepts it) and note who waits for
        it. Return whether it was appended."""
        idx, term = self.__getCurrentLogIndex() + 1, self.__raftCurrentTerm
        changeClusterRequest = (self.__parseChangeClusterRequest(command)
                                if self.__conf.dynamicMembershipChange else None)
        if changeClusterRequest is not None and not self.__changeCluster(changeClusterRequest):
            if requestNode is None:
                if callback is not None:
                    callback(None, FAIL_REASON.REQUEST_DENIED)
            else:
                self.__transport.send(requestNode, {
                    'type': 'apply_command_response',
                    'request_id': requestID,
                    'error': FAIL_REASON.REQUEST_DENIED,
                })
            return False
        self.__raftLog.add(command, idx, term)
        if requestNode is None:
            if callback is not None:
                self.__commandsWaitingCommit[idx].append((term, callback))
        else:
            self.__transport.send(requestNode, {
                'type': 'apply_command_response',
                'request_id': requestID,
                'log_idx': idx,
                'log_term': term,
            })
        return True

    def forward_command(self, command, callback, requestNode, requestID):
        """A follower's part, PySyncObj's own: a local command goes to the leader, a
        command another node forwarded here is refused (we do not lead)."""
        if requestNode is None:
            message = {
                'type': 'apply_command',
                'command': command,
            }
            if callback is not None:
                self.__commandsLocalCounter += 1
                self.__commandsWaitingReply[self.__commandsLocalCounter] = callback
                message['request_id'] = self.__commandsLocalCounter
            self.__transport.send(self.__raftLeader, message)
        else:
            self.__transport.send(requestNode, {
                'type': 'apply_command_response',
                'request_id': requestID,
                'error': FAIL_REASON.NOT_LEADER,
            })


after_commit = _SyncObj.after_commit

# One lock per SyncObj (kept here, not on it: PySyncObj pickles a SyncObj's attributes into
# its snapshots), held by the tick thread while it takes commands off the queue.
_PROPOSING: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_PROPOSING_GUARD = threading.Lock()


def proposing_together(sync) -> threading.Lock:
    """Hold it while submitting several commands that should share one round: the tick
    thread waits for it before taking commands off the queue, so it takes them all in one
    go. Without it the tick thread, woken by the first, could send a round with only some
    of them, and the rest would wait for that round to commit (a batch of purchases split
    in two rounds, or a purchase's `begin` behind the `finish`es proposed just before it).
    Hold it only while submitting: never while waiting for a commit. It is not reentrant,
    and refusals are called back while it is held (a full queue on the submitting thread,
    a missing leader on the tick thread): such a callback must not submit again."""
    with _PROPOSING_GUARD:
        lock = _PROPOSING.get(sync)
        if lock is None:
            lock = _PROPOSING[sync] = threading.Lock()
    return lock

patching.replace(SyncObj, _CHECK_COMMANDS, _SyncObj.__dict__[_CHECK_COMMANDS], _DIGEST,
                 "a leader sent one append-entries round per command, even for commands that "
                 "arrived together: a message per follower and an fsync on every replica each")
