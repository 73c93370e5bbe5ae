"""Bazar's corrections to PySyncObj 0.3.17's follower, and to how its leader reads the
follower's replies: Raft's AppendEntries and
InstallSnapshot receiver rules, as Figure 2 and §7 of the Raft paper state them.

What PySyncObj 0.3.17 gets wrong, and what each correction changes
-------------------------------------------------------------------
1. Append entries.  Once the entry before the message matched, PySyncObj deleted
   *everything* after it and appended the message's entries, even when the deleted
   entries were the very same ones (same index, same term). With Bazar's
   unbatched appends the leader re-sends from the last acknowledgment it has read,
   at most 64 KiB at a time; a follower more than 64 KiB ahead of that point cut
   its log below entries it had already acknowledged, while the leader (which
   never lowers its match index) still counted them. A leader death then lost
   committed writes (the named test in tests/sim shows it). Now:
   - entries already present with the same index and term are skipped (Raft
     rule 3 deletes only "if an existing entry conflicts with a new one");
   - the log is truncated only at the first conflict, and never at or below the
     commit index: a leader asking for that is refused (ERROR in the log, no
     acknowledgment), because a committed entry can never change;
   - the commit index advances to min(leaderCommit, index of the last entry the
     message covers) (rule 5), never to entries the message did not prove match;
   - the acknowledgment names exactly the last index this message verified.
   Since the log is cut only above the commit index, and a snapshot is only
   taken below it, the log can never be left empty (an empty log made every
   tick raise IndexError in PySyncObj, freezing the replica).
2. Install snapshot (`__loadDumpFile`).  PySyncObj cleared the journal whenever it
   loaded a snapshot sent by the leader, and on start whenever the journal did not
   begin exactly at the snapshot. Now a snapshot whose last index is at or below
   the follower's commit (or applied) index is never installed: a follower that had
   compacted past it replaced its state and log with the older snapshot's (44 -> 32),
   deleting entries it had acknowledged and the leader still counted, so they were
   held by the leader alone (tests/sim/test_old_snapshot.py). It acknowledges its
   commit index instead, which its log holds (the leader continues with appends it
   can check), and writes its own snapshot file again (receiving the leader's
   replaced it; a restart would load the older state under the compacted log).
   Otherwise a log that holds the snapshot's last entry (same index and term) keeps
   every entry after it (Raft §7); a follower that already holds all the snapshot's
   entries keeps its state as well and only acknowledges. The acknowledgment names
   the snapshot's last index, not the end of a log the leader has not checked.
3. A stored commit index beyond the journal's end (the meta file reached the disk,
   the journal's tail did not) means this replica once counted towards committing
   entries it no longer holds. PySyncObj clamped it and carried on, voting as if it
   had never held them. Now the in-memory commit index is clamped, the stored one
   is kept, and until a leader has given back everything up to it, the replica
   neither votes nor stands for election (it would let a replica that lacks the
   committed entries win). If a majority lost committed entries the group stops
   electing leaders and says so, rather than silently forgetting acknowledged writes.

4. Votes.  A candidate counted vote messages, not voters: one vote delivered twice
   (the simulation's network duplicates messages; TCP never does) made a leader
   of a candidate with a minority, beside the real one. Now a second vote from
   the same replica in the same term is ignored. Only replies of the current term are
   recorded: a stale reply of another term, recorded too, once wiped the current term's
   voters, and a duplicate then counted again (tests/sim/test_membership.py).

5. Append replies (`next_node_idx`, in `__onMessageReceived`).  PySyncObj's reply
   carried no term and its leader counted every success it read: a follower's
   acknowledgment of term-1 entries, delivered after the leader had lost them and
   been elected again, raised the new term's match index for entries the follower
   did not hold; a write was acknowledged while 2 of 5 replicas held it, and the
   next leader had another entry at that committed index
   (tests/sim/test_stale_acknowledgment.py). Now (Raft, Figure 2) every reply
   carries the replier's current term (`acknowledge`, after the journal sync of
   journal.py); a leader counts only replies of its own term, adopts a newer term
   and steps down, and ignores older ones and replies without a term (an older
   Bazar during a rolling upgrade: not counted until upgraded, see
   `on_append_reply`). And a failure reply (a stale "reset") never moves a
   follower's next index to or below its match index: it stays at match + 1, so
   the leader never sends a snapshot or entries older than what the follower is
   known to hold. A follower catching up to lost entries (rule 3) answers append entries
   of an older term with its own term (Raft rule 1; PySyncObj ignores them silently), so a
   stale leader steps down although that follower may not campaign. The one exception is a follower whose repaired journal lost entries
   it had acknowledged (rule 3): its failure replies say so (`behind`), and the leader
   lowers its match index to the follower's log instead (else it would send from past
   that log's end for the rest of the term, and the follower never catch up).
6. Membership (`__applyLogEntries`, `__loadDumpFile`, `__doApplyCommand`).  Raft §6: a
   server uses the latest configuration in its log, committed or not. PySyncObj made a
   change when its entry was appended, and again when it was applied; a restarted
   replica rebuilt its configuration only as it applied entries, up to its stored
   commit index, which is saved at most once a second. Killed within that second after
   two quick changes (3 -> 4 -> 5 voters), it restarted with the three-voter
   configuration, was elected by itself and one old member (2 of 3), and committed
   entries while the real majority (3 of 5) committed others at the same indexes
   (tests/sim/test_membership.py). Now, after a start (on the first tick, or once the
   snapshot is loaded) and after a snapshot install, the configuration is the
   snapshot's (or the one the replica was started with) followed by every membership
   entry of the log, in order (`configure`); and applying a membership entry changes
   nothing (it would undo a later change already in the log).

7. Forwarded changes (`apply_command`, in `__onMessageReceived`).  PySyncObj forwards a
   membership change (or code-version switch) asked of a follower to the leader, which
   appended it without Bazar's checks (one change at a time, a majority in touch). Now
   the leader refuses it (REQUEST_DENIED); Bazar asks the leader itself
   (consensus/membership.py), and consensus/admin_guard.py closes the Raft port's admin
   commands, the other way around those checks.

8. Leaders a member does not know (`__onMessageReceived`, `ask_for_the_leader`).  PySyncObj
   connects only to the nodes of a replica's configuration and refuses a connection from
   any other, so a member whose configuration does not name the current leader (it missed
   the change that added it: restarted with an older file, repaired from a damaged disk,
   holding a change that never committed, or a frontend's follower started from its file)
   was never reached by that leader and stayed behind for good, though Raft (§6) has a
   server take entries from any leader of a current term. Now a replica that has heard
   from no leader for twice the longest election timeout asks the voting members it is
   connected to which leader they follow (`ask_for_the_leader`: a message of its own,
   at most once per that timeout), a follower answers with its leader's address
   (`tell_the_leader`), and a replica whose transport does not know that address learns it
   (`learn_peer`) and connects to it. Nothing else changes: the member's
   configuration (who votes, who counts) is still the latest in its log; the leader's
   appends are judged by Raft's rules as anyone's (simulator schedules 8, 269,
   20261207001352 and 202612071520000092 never converged before).

What stays PySyncObj's: everything else a leader or candidate does, big-entry
transmissions, dynamic-membership rollback, timeout_now and the transfer
bookkeeping, every other message type (handed to the original function).

How the code is written
-----------------------
Each replaced method is installed through `consensus.patching.replace`, which
refuses any PySyncObj whose source differs from the 0.3.17 code read here. The
methods are defined in a class named `_SyncObj`: Python mangles `self.__raftLog`
inside it to `self._SyncObj__raftLog` (leading underscores of the class name are
dropped), which is PySyncObj's own private attribute, so the code reads like the
original. Helpers are plain functions of that class, called as `_SyncObj.f(self)`,
so nothing new is added to PySyncObj's class. Only the abstract Journal API is
used (add, clear, deleteEntriesFrom/To, indexing, len, setRaftCommitIndex), so
these rules hold with any journal implementation.
"""
from __future__ import annotations

import logging
import weakref

import pysyncobj.pickle as _pickle
from pysyncobj.config import FAIL_REASON as _FAIL_REASON
import pysyncobj.syncobj as _syncobj
from pysyncobj.syncobj import SyncObj, _COMMAND_TYPE, _RAFT_STATE

from bazar.consensus import group_commit, patching, snapshot
from bazar.consensus.journal import sync_before_acknowledging

log = logging.getLogger("bazar.raft")

# Replicas that found their stored commit index beyond their log's end, mapped to that
# index: they neither vote nor campaign until their verified log reaches it. Kept outside
# the SyncObj instance, because PySyncObj pickles every attribute added after __init__
# into its snapshots, and this fact is about the local disk, not the replicated state.
_CATCHING_UP: "weakref.WeakKeyDictionary[SyncObj, int]" = weakref.WeakKeyDictionary()

# Who granted this replica a vote, in which term (PySyncObj keeps only a count).
_VOTERS: "weakref.WeakKeyDictionary[SyncObj, tuple[int, set]]" = weakref.WeakKeyDictionary()

# Peers whose append replies came without a term (an older Bazar), already warned about.
_TERMLESS: "weakref.WeakKeyDictionary[SyncObj, set]" = weakref.WeakKeyDictionary()

# Replicas whose configuration has been set from their log after a start (see `configure`).
_CONFIGURED: "weakref.WeakSet[SyncObj]" = weakref.WeakSet()
# When a replica last heard from the leader it follows (PySyncObj's clock), and the term of
# the election a leadership transfer (timeout_now) told it to start: see `ignores_vote_request`.
_HEARD: "weakref.WeakKeyDictionary[SyncObj, float]" = weakref.WeakKeyDictionary()
_TRANSFER: "weakref.WeakKeyDictionary[SyncObj, int]" = weakref.WeakKeyDictionary()
# When a replica that hears no leader last asked its peers which one they follow.
_ASKED: "weakref.WeakKeyDictionary[SyncObj, float]" = weakref.WeakKeyDictionary()

# A follower's word to its peers about the leader it follows (see item 8 above): a message
# type PySyncObj does not know, so an older Bazar ignores it.
LEADER_QUERY, LEADER_HINT = "bazar_leader?", "bazar_leader"

# Log entries only the leader's own code may append: membership changes, code versions.
_ADMIN_ENTRIES = {bytes((_COMMAND_TYPE.MEMBERSHIP,)), bytes((_COMMAND_TYPE.VERSION,))}

_MESSAGE = "_SyncObj__onMessageReceived"
_LOAD_DUMP = "_SyncObj__loadDumpFile"
_MAY_CAMPAIGN = "_SyncObj__connectedToAnyone"
_APPLY = "_SyncObj__applyLogEntries"
_APPLY_ONE = "_SyncObj__doApplyCommand"

# sha256 of each function's 0.3.17 source (consensus.patching.source_digest).
_DIGESTS = {
    _MESSAGE: "6bb6b65d08088de70bf0bbb5c140f9ad2c527d49bf51c1489d71eae65b78695c",
    _LOAD_DUMP: "7f12f481c256d7a495c9b9b1a31e8d2fa4df41b5cbe4056e9a88041f968ea669",
    _MAY_CAMPAIGN: "9c5806093b827609921d025296f61aa1e915698b084685c0553f67978dcb6053",
    _APPLY: "9f16906d64eb43652a9ff1c4d7ba2f45ca42fc4e687f24c3194996791ef1dc96",
    _APPLY_ONE: "11d56654a79679587f835e4c450889666403a00516d4f04b37cf235970057a47",
}


def missing_committed_up_to(obj: SyncObj) -> int | None:
    """The stored commit index `obj` lost entries below (it must catch up to it), or None."""
    return _CATCHING_UP.get(obj)


class _SyncObj:
    """Replacement methods for pysyncobj.SyncObj (named so that `self.__x` is SyncObj's `__x`)."""

    # ----------------------------------------------------------- replaced methods

    def __onMessageReceived(self, node, message):
        """Every message from a peer. Append entries (and snapshots) follow Raft's receiver
        rules below, and their replies count only in the term they answer; a vote request
        reaching a replica that lost committed entries is refused; every other message is
        PySyncObj's original handling."""
        kind = message['type']
        if kind == 'append_entries':
            _SyncObj.on_append_entries(self, node, message)
            return
        if kind == LEADER_QUERY:
            _SyncObj.tell_the_leader(self, node)
            return
        if kind == LEADER_HINT:
            _SyncObj.learn_leader(self, node, message)
            return
        if kind in ('next_node_idx', 'response_vote') and node not in self.__otherNodes \
                and node not in self.__readonlyNodes:
            return  # a late answer from a node we no longer count (connected as a learned peer)
        if kind == 'next_node_idx':
            _SyncObj.on_append_reply(self, node, message)
            return
        if kind == 'apply_command' and _SyncObj.refuse_forwarded_change(self, node, message):
            return
        if kind == 'response_vote' and not _SyncObj.first_vote_from(self, node, message['term']):
            return  # a duplicate: Raft counts votes from distinct servers, PySyncObj counted messages
        if kind == 'timeout_now' and self.__selfNode is not None and node == self.__raftLeader \
                and message['term'] >= self.__raftCurrentTerm:
            _TRANSFER[self] = self.__raftCurrentTerm + 1   # the election PySyncObj starts next
        if kind == 'request_vote' and _SyncObj.ignores_vote_request(self, node, message):
            return
        if kind == 'request_vote' and self.__selfNode is not None:
            _SyncObj.note_missing_committed(self)
            if self in _CATCHING_UP:
                # PySyncObj's own rule refuses a candidate whose last log term is older than
                # ours, and still adopts a newer term and steps down. Presenting the candidate's
                # log as older than any log (term -1) keeps that bookkeeping and refuses the vote.
                log.warning("refusing to vote in term %d: this replica lacks committed entries "
                            "up to %d", message['term'], _CATCHING_UP[self])
                message = dict(message, last_log_term=-1)
        patching.original(SyncObj, _MESSAGE)(self, node, message)

    def __loadDumpFile(self, clearJournal):
        """Load the snapshot in the dump file: on start (clearJournal False) or when the
        leader has sent one (clearJournal True). Return the index up to which our log and
        state now match the leader's (the snapshot's last index, or our commit index for
        a snapshot we already cover), or None if it could not be read (logged; nothing
        changed).

        A snapshot from the leader whose last index is at or below our commit index or
        our applied index describes a prefix of what we have committed: it is never
        installed (our state would go back, and the log after it, acknowledged entries
        included, be lost). Our own snapshot file, which receiving it replaced, is
        written again from our state, and the commit index is acknowledged: our log
        holds that entry, so the leader continues with appends we can check.

        Raft §7: if our log holds the snapshot's last entry (same index and term), the
        entries after it are kept; if it also holds every entry we have not applied yet,
        a snapshot from the leader changes nothing at all (our state is a prefix of it
        plus entries we will apply). Otherwise the state is replaced by the snapshot's
        and the log by the snapshot's last two entries, PySyncObj's convention for a
        compacted log.
        """
        try:
            data = self.__serializer.deserialize()
            state, last, beforeLast, cluster = data[0], data[1], data[2], data[3]
        except Exception:
            log.exception('failed to load full dump')
            return None
        lastIdx = last[1]
        covered = max(self.__raftCommitIndex, self.__raftLastApplied)
        if clearJournal and lastIdx <= covered:
            log.warning('not installing a snapshot up to index %d from the leader: this replica '
                        'has committed up to %d already', lastIdx, covered)
            _SyncObj.write_own_snapshot(self)
            return self.__raftCommitIndex
        if clearJournal and _SyncObj.holds(self, last) and \
                self.__raftLog[0][1] <= self.__raftLastApplied + 1:
            _SyncObj.snapshot_committed(self, lastIdx)
            return lastIdx
        try:
            if state is not None:
                if self.__consumers:
                    selfData, consumersData = state[0], state[1:]
                else:
                    selfData, consumersData = state, []
                for k, v in selfData.items():
                    self.__dict__[k] = v
                # A snapshot written before a consumer was added (the membership directory,
                # consensus/directory.py) has no data for it: that consumer keeps its start.
                for consumer, consumerData in zip(self.__consumers, consumersData):
                    consumer._deserialize(consumerData)
            _SyncObj.rebase_log(self, beforeLast, last)
            self.__raftLastApplied = lastIdx
            _SyncObj.snapshot_committed(self, lastIdx)
            _SyncObj.note_missing_committed(self)
            _SyncObj.store_commit_index(self)
            if self.__conf.dynamicMembershipChange:
                self.__updateClusterConfiguration([n for n in cluster if n != self.__selfNode])
            _SyncObj.configure(self)
            self.__onSetCodeVersion(0)
        except Exception:
            log.exception('failed to load full dump')
            return None
        return lastIdx

    def __connectedToAnyone(self):
        """PySyncObj asks this only when its election timer has fired, to decide whether to
        start an election. A replica that lacks committed entries must not: it could win."""
        _SyncObj.note_missing_committed(self)
        if self in _CATCHING_UP:
            return False
        return patching.original(SyncObj, _MAY_CAMPAIGN)(self)

    def __applyLogEntries(self):
        """Every tick, before applying up to the commit index: make sure the log backs it
        (after a restart the stored index may lie beyond a journal that lost its tail),
        and, on the first tick after a start without a snapshot, take the configuration
        from the log (`configure`; a snapshot loaded at start does it in __loadDumpFile).
        Once applied, which round announces the new commit index is group_commit's call."""
        if self not in _CONFIGURED and not self.__needLoadDumpFile:
            _SyncObj.configure(self)
        _SyncObj.note_missing_committed(self)
        applied = patching.original(SyncObj, _APPLY)(self)
        return applied and group_commit.after_commit(self)

    def __doApplyCommand(self, command):
        """Apply one committed entry. A membership entry changes nothing any more: its
        change took effect when it entered the log (appended, or read from the journal
        at start, see `configure`). PySyncObj made it again here, so a replica applying
        an old change, while a later one was already in its log, went back to the old
        configuration until it applied the later one."""
        if command[:1] == bytes((_COMMAND_TYPE.MEMBERSHIP,)) and self.__conf.dynamicMembershipChange:
            return None
        return patching.original(SyncObj, _APPLY_ONE)(self, command)

    # ------------------------------------------------------------------ helpers

    def configure(self):
        """Raft §6: a server uses the latest configuration in its log, committed or not.
        Starting from the configuration it has (the one it was started with, or its
        snapshot's), replay every membership entry of the log, in order. Each entry sets
        one node in or out, so the result is the latest configuration whatever prefix of
        the log the starting one already reflected. PySyncObj re-applied membership
        entries only as they were applied, so a restarted replica whose stored commit
        index (saved at most once a second) lay before two quick changes counted the
        configuration of two changes ago, whose majorities need not meet the new one's."""
        _CONFIGURED.add(self)
        _SyncObj.mark_transfer_elections(self)
        # Every snapshot this replica writes (PySyncObj's compaction calls the serializer with
        # the configuration of the log's end) carries the one as of its last entry instead.
        owner = weakref.ref(self)
        self.__serializer.configuration_at = \
            lambda index: _SyncObj.configuration_at(owner(), index) if owner() is not None else None
        if not self.__conf.dynamicMembershipChange:
            return
        for entry in self.__getEntries(self.__raftLog[0][1]):
            request = self.__parseChangeClusterRequest(entry[0])
            if request is not None:
                self.__doChangeCluster(request)

    def configuration_at(self, index):
        """The configuration (every node, this one included) as of log entry `index`, which
        a snapshot up to `index` must carry (Raft §7), not the one of the log's end.

        The configuration now is the one as of `index` with every membership entry after it
        applied in order (append, truncate_from and configure keep it so), and each entry
        sets one node in or out. So a node an entry after `index` names was, as of `index`,
        the opposite of what the first such entry made it; any other node is as it is now.
        PySyncObj wrote the configuration of the log's end: one that counted an entry past
        the snapshot, not yet committed, which the receiver of the snapshot then kept even
        after that entry was cut from every log (a removal that never committed took effect
        on every replica installing the snapshot, and spread with their snapshots)."""
        nodes = set(self.__otherNodes) | {self.__selfNode}
        if not self.__conf.dynamicMembershipChange:
            return nodes
        seen = set()
        for entry in self.__getEntries(index + 1):
            request = self.__parseChangeClusterRequest(entry[0])
            if request is None or request[0] not in ('add', 'rem'):
                continue
            node = request[2] if len(request) >= 3 else request[1]
            if not isinstance(node, _syncobj.Node):
                node = self.__nodeClass(node)
            if node in seen:
                continue
            seen.add(node)
            if request[0] == 'add':
                nodes.discard(node)
            else:
                nodes.add(node)
        return nodes

    def ignores_vote_request(self, node, message):
        """Raft's rule against disruptive servers (thesis §4.2.3): a follower that heard from
        its leader within the minimum election timeout ignores a vote request of a newer term:
        it neither adopts the term nor votes. A leader that can reach it exists, so the
        candidate is either cut off from that leader or not in its configuration: a replica
        removed, or one whose addition has not committed, that some members still count
        because the change has not reached them yet. PySyncObj adopted the term, so each
        request of such a candidate made the leader step down before it could bring those
        members the entries that settle the change, and the group never converged (schedules
        202612071415002842, 202612071520000092); and a follower cut off from the leader
        alone deposed it again and again (tests/sim/test_disruptive_candidates.py, and the
        end of every generated schedule, tests/sim/schedule.py). A candidate that a leader's transfer started
        (timeout_now) says so (`mark_transfer_elections`) and is heard at once, as §3.10 has it.
        Returns whether to ignore `message`; a reply is not needed (the candidate's election
        simply fails)."""
        if self.__selfNode is None or message.get('term', 0) <= self.__raftCurrentTerm:
            return False
        if self.__raftState != _RAFT_STATE.FOLLOWER or self.__raftLeader is None or message.get('transfer'):
            return False
        heard = _HEARD.get(self)
        if heard is None or _syncobj.monotonicTime() - heard >= self.__conf.raftMinTimeout:
            return False
        log.debug("ignored a vote request of term %d from %s: leader %s was heard %.3f s ago",
                  message['term'], node, self.__raftLeader, _syncobj.monotonicTime() - heard)
        return True

    def mark_transfer_elections(self):
        """Have the vote requests of an election that a leadership transfer started carry
        'transfer': True (see `ignores_vote_request`). PySyncObj builds them in its tick and
        forgets the transfer just before, so the transport's send adds the mark."""
        transport = self.__transport
        if getattr(transport, 'marks_transfer_elections', False):
            return
        plain, owner = transport.send, weakref.ref(self)

        def send(node, message):
            sync = owner()
            if sync is not None and isinstance(message, dict) and message.get('type') == 'request_vote' \
                    and _TRANSFER.get(sync) == message.get('term'):
                message = {**message, 'transfer': True}
            return plain(node, message)
        transport.send = send
        transport.marks_transfer_elections = True

    def ask_for_the_leader(self):
        """A replica (or non-voting follower) that has not heard from a leader for twice the
        longest election timeout (an election normally ends well within it) asks the voting
        members it is connected to which leader they follow (`LEADER_QUERY`), at most once
        per that time; the answers (`tell_the_leader`) let it connect to a leader its
        configuration does not name (item 8 above). Called on every tick, by the member
        (consensus/member.py); while a leader is heard it returns at once."""
        if self.__raftState == _RAFT_STATE.LEADER:
            return
        now, wait = _syncobj.monotonicTime(), 2 * self.__conf.raftMaxTimeout
        if self not in _ASKED:
            _ASKED[self] = now   # a replica just started waits as long before it first asks
        if now - max(_HEARD.get(self, 0.0), _ASKED[self]) < wait:
            return
        _ASKED[self] = now
        for peer in self.__otherNodes:
            if peer in self.__connectedNodes:
                self.__transport.send(peer, {'type': LEADER_QUERY})

    def tell_the_leader(self, node):
        """Answer a peer's `LEADER_QUERY`: a follower that follows a leader names it
        (`LEADER_HINT`); a leader need not (its appends reach whoever it counts), nor a
        replica that follows none."""
        leader = self.__raftLeader
        if self.__selfNode is None or leader is None or leader == node \
                or self.__raftState != _RAFT_STATE.FOLLOWER:
            return
        self.__transport.send(node, {'type': LEADER_HINT, 'term': self.__raftCurrentTerm, 'leader': leader.id})

    def learn_leader(self, node, message):
        """A voting member (of our configuration) says which leader it follows: if our
        transport does not know that node, it learns its address and connects to it, so the
        leader's appends can reach us (item 8 above). A hint from a node that is not a
        voting member here is ignored. Its term is not compared: knowing an address decides
        nothing (the leader's appends are judged by Raft's rules), and a member whose failed
        elections raised its term above the group's is the very one that needs it."""
        leader = message.get('leader')
        if node not in self.__otherNodes or not isinstance(leader, str):
            return
        if self.__selfNode is not None and leader == self.__selfNode.id:
            return
        learn = getattr(self.__transport, 'learn_peer', None)
        if learn is not None and learn(leader):
            log.info("connecting to %s, the leader %s follows, which this replica's configuration "
                     "does not name", leader, node)

    def refuse_forwarded_change(self, node, message):
        """Whether `message`, a command another node forwards to us to append, is a
        membership change or a code-version switch, refused here (REQUEST_DENIED to the
        sender). Bazar changes membership on the leader only, through
        `RaftMember.change_membership` and its checks (one change at a time, a majority
        in touch); PySyncObj forwarded a change asked of a follower and the leader appended
        it unchecked (see consensus/admin_guard.py for the same bypass on the Raft port)."""
        command = message.get('command')
        if not isinstance(command, bytes) or command[:1] not in _ADMIN_ENTRIES:
            return False
        log.warning('refused a membership or version change forwarded by %s: changes are made '
                    'on the leader, through `bazar member add/remove`', node)
        if 'request_id' in message:
            self.__transport.send(node, {'type': 'apply_command_response',
                                         'request_id': message['request_id'],
                                         'error': _FAIL_REASON.REQUEST_DENIED})
        return True

    def first_vote_from(self, node, term):
        """Whether this is the first vote `node` grants us in `term`. Only votes of our
        current term are remembered (and counted, by PySyncObj): a vote of another term is
        stale and changes nothing here. (Restarting the record on any other term let a
        stale reply wipe the current term's voters, and a duplicate then count again.)"""
        if term != self.__raftCurrentTerm:
            return True  # PySyncObj ignores it (it counts votes of its current term only)
        votedTerm, voters = _VOTERS.get(self, (None, set()))
        if votedTerm != term:
            voters = set()
        if node in voters:
            return False
        voters.add(node)
        _VOTERS[self] = (term, voters)
        return True

    def on_append_entries(self, node, message):
        """A leader's append entries (entries, a heartbeat, or a snapshot chunk)."""
        if message['term'] < self.__raftCurrentTerm:
            # Raft rule 1 (reply false with our term, so that a stale leader steps down),
            # for a replica catching up to lost entries only: PySyncObj sends no reply and
            # counts on the follower's own election to raise the term, and such a replica
            # never campaigns, so a leader of an older term kept it (and its term) out for
            # good (schedule 7000174). Replying always, as Raft does, made schedule 7002355
            # lose an acknowledged write, not yet understood: left as PySyncObj has it.
            # Also for a leader our configuration does not name (item 8): we never ask it for
            # a vote, so without this reply it would never learn our newer term, and would
            # keep us, campaigning unheard, out for good (schedule 2026120717002373).
            if self in _CATCHING_UP or (self.__selfNode is not None and node not in self.__otherNodes):
                _SyncObj.acknowledge(self, node, success=False, reset=False)
            return
        # A leader of this term or a newer one: follow it, exactly as PySyncObj does.
        _HEARD[self] = _syncobj.monotonicTime()
        if message['term'] > self.__raftCurrentTerm:
            self.__transferInProgress = False  # a newer leader supersedes a pending transfer
        if not self.__transferInProgress:
            # While a transfer is pending, the outgoing leader's heartbeats must not
            # postpone the forced election.
            self.__raftElectionDeadline = _syncobj.monotonicTime() + self.__generateRaftTimeout()
        if self.__raftLeader != node:
            self.__onLeaderChanged()
        self.__raftLeader = node
        if message['term'] > self.__raftCurrentTerm:
            self.__setCurrentTerm(message['term'], None)
        self.__setState(_RAFT_STATE.FOLLOWER)
        self.__leaderCommitIndex = leaderCommit = message['commit_index']

        if 'prevLogIdx' in message:
            entries = _SyncObj.reassemble(self, node, message)
            if entries is None:
                return  # a chunk of a big entry; acknowledged without success
            _SyncObj.append(self, node, message['prevLogIdx'], message['prevLogTerm'],
                            entries, leaderCommit)
        elif message.get('serialized') is not None:
            if self.__serializer.setTransmissionData(message['serialized']):
                matched = self.__loadDumpFile(clearJournal=True)
                if matched is not None:
                    _SyncObj.acknowledge(self, node, nextNodeIdx=matched + 1, success=True)
        _SyncObj.store_commit_index(self)

    def acknowledge(self, node, nextNodeIdx=None, success=False, reset=False):
        """Answer the leader's append entries: PySyncObj's next_node_idx message (where to
        continue, whether the entries matched, whether to reset its next index), plus our
        current term, which Raft's reply carries so that a leader can tell an answer to a
        message of an earlier term. What it acknowledges is on disk first (journal.py)."""
        sync_before_acknowledging(self)
        if nextNodeIdx is None:
            nextNodeIdx = self.__getCurrentLogIndex() + 1
        message = {
            'type': 'next_node_idx',
            'next_node_idx': nextNodeIdx,
            'reset': reset,
            'success': success,
            'term': self.__raftCurrentTerm,
        }
        if reset and self in _CATCHING_UP:
            # Our disk lost entries we may have acknowledged in this very term (a repaired
            # journal): the leader's match index for us may lie past our log's end, and it
            # must go back (see on_append_reply), or the leader never sends them again.
            message['behind'] = True
        self.__transport.send(node, message)

    def on_append_reply(self, node, message):
        """A follower's answer to our append entries (Raft: AppendEntries results).

        - Its term is newer than ours: a newer leader may exist; adopt the term and step
          down (Figure 2, "Rules for Servers").
        - Its term is older, or it has none: it answers a message of another term (an
          earlier leadership of ours, with another log), so it says nothing about our log
          now; ignored, not even counted as a sign of life. A reply without a term comes
          from a Bazar that predates this rule (a rolling upgrade): such a follower is not
          counted until it runs this version (warned once per follower). A leader whose
          majority is still of the old version therefore commits nothing, and steps down
          after leader_fallback_timeout, leaving the role to a replica that can commit.
        - Its term is ours: PySyncObj's bookkeeping, except that a failure reply never
          moves the next index to or below the match index (a stale "reset" would send the
          follower entries, or a snapshot, older than what it is known to hold), unless
          the reply says the follower's disk lost entries (`behind`, see `acknowledge`).
        """
        term = message.get('term')
        if term is not None and term > self.__raftCurrentTerm:
            self.__setCurrentTerm(term, None)
            self.__setState(_RAFT_STATE.FOLLOWER)
            self.__raftLeader = None
            return
        if self.__raftState != _RAFT_STATE.LEADER:
            return
        if term is None:
            warned = _TERMLESS.setdefault(self, set())
            if node not in warned:
                warned.add(node)
                log.warning('ignoring append replies from %s: they come without a term (an older '
                            'Bazar?); it counts towards commits once it runs this version', node)
            return
        if term != self.__raftCurrentTerm:
            return
        nextNodeIdx = message['next_node_idx']
        if message['reset'] and message.get('behind'):
            # The follower lost entries from its disk (a repaired journal, which keeps it from
            # voting until it has them again): its log really is shorter than its earlier
            # acknowledgments said. Lowering a match index only counts less; kept, the clamp
            # below would send from past its log's end for the rest of the term.
            self.__raftMatchIndex[node] = min(self.__raftMatchIndex[node], nextNodeIdx - 1)
            self.__raftNextIndex[node] = nextNodeIdx
        elif message['reset']:
            self.__raftNextIndex[node] = max(nextNodeIdx, self.__raftMatchIndex[node] + 1)
        if message['success'] and self.__raftMatchIndex[node] < nextNodeIdx - 1:
            self.__raftMatchIndex[node] = nextNodeIdx - 1
            self.__raftNextIndex[node] = nextNodeIdx
        self.__lastResponseTime[node] = _syncobj.monotonicTime()

    def reassemble(self, node, message):
        """The entries a message carries, or None while a big entry arrives in chunks
        (PySyncObj's 'transmission' protocol, unchanged: each chunk is acknowledged
        without success, the last one yields the entry)."""
        transmission = message.get('transmission')
        if transmission is None:
            return message.get('entries', [])
        if transmission == 'start':
            self.__recvTransmission = message['data']
        elif transmission == 'process':
            self.__recvTransmission += message['data']
        elif transmission == 'finish':
            self.__recvTransmission += message['data']
            entry = _pickle.loads(self.__recvTransmission)
            self.__recvTransmission = ''
            return [entry]
        else:
            raise Exception('Wrong transmission type')
        _SyncObj.acknowledge(self, node, success=False, reset=False)
        return None

    def append(self, node, prevIdx, prevTerm, entries, leaderCommit):
        """Raft's AppendEntries receiver, rules 2 to 5, for entries prevIdx+1, prevIdx+2, ..."""
        # Rule 2: reply false unless our log holds prevIdx with term prevTerm. The reply
        # tells the leader where to resume: after our last entry, or at the mismatch.
        prev = self.__getEntries(prevIdx, 1)
        if not prev:
            _SyncObj.acknowledge(self, node, success=False, reset=True)
            return
        if prev[0][2] != prevTerm:
            _SyncObj.acknowledge(self, node, nextNodeIdx=prevIdx, success=False, reset=True)
            return
        # Rule 3: skip the entries we already hold (same index and term); at the first
        # conflicting one, delete it and everything after it, unless it is committed.
        # The entries are prevIdx+1, prevIdx+2, ...: the first `held` of them are at indexes
        # our log has (read in one slice, compared by term), the rest are new.
        held = min(len(entries), max(0, self.__getCurrentLogIndex() - prevIdx))
        ours = self.__getEntries(prevIdx + 1, held) if held else []
        new = entries[held:]
        for position in range(held):
            if ours[position][2] == entries[position][2]:
                continue
            idx, term = entries[position][1], entries[position][2]
            if idx <= max(self.__raftCommitIndex, self.__raftLastApplied):
                log.error('refusing append entries from %s: entry %d (term %d) would replace a '
                          'committed entry (term %d); not acknowledged', node, idx, term,
                          ours[position][2])
                return
            _SyncObj.truncate_from(self, idx)
            new = entries[position:]
            break
        # Rule 4: append the entries not already in the log.
        for entry in new:
            self.__raftLog.add(*entry)
        if self.__conf.dynamicMembershipChange:
            for entry in new:
                request = self.__parseChangeClusterRequest(entry[0])
                if request is not None:
                    self.__doChangeCluster(request)
        # Rule 5, and the acknowledgment: only what this message proved matches the leader.
        lastCovered = entries[-1][1] if entries else prevIdx
        if min(leaderCommit, lastCovered) > self.__raftCommitIndex:
            self.__raftCommitIndex = min(leaderCommit, lastCovered)
        _SyncObj.verified(self, lastCovered)
        _SyncObj.acknowledge(self, node, nextNodeIdx=lastCovered + 1, success=True)

    def truncate_from(self, idx):
        """Delete entry idx and every later one (idx is above the commit index, so the log
        keeps at least its first entry), undoing membership changes they made."""
        if self.__conf.dynamicMembershipChange:
            for entry in reversed(self.__getEntries(idx)):
                request = self.__parseChangeClusterRequest(entry[0])
                if request is not None:
                    self.__doChangeCluster(request, reverse=True)
        self.__deleteEntriesFrom(idx)

    def holds(self, entry):
        """Whether our log has an entry with this entry's index and term."""
        ours = self.__getEntries(entry[1], 1)
        return bool(ours) and ours[0][2] == entry[2]

    def rebase_log(self, beforeLast, last):
        """Make the log start with the snapshot's last two entries, keeping the entries
        after `last` if our log holds `last` (Raft §7), dropping the rest otherwise.
        A journal with `replace_entries` (Bazar's) is rewritten in one atomic step;
        others (PySyncObj's) are cleared and refilled."""
        log_ = self.__raftLog
        if _SyncObj.holds(self, last) and _SyncObj.holds(self, beforeLast):
            first = beforeLast[1] - log_[0][1]
            if first > 0:
                log_.deleteEntriesTo(first)
            return
        suffix = list(self.__getEntries(last[1] + 1)) if _SyncObj.holds(self, last) else []
        entries = [beforeLast, last] + suffix
        replace = getattr(log_, 'replace_entries', None)
        if replace is not None:
            replace(entries)  # one atomic step: a crash cannot leave the kept entries out
            return
        log_.clear()
        for entry in entries:
            log_.add(*entry)

    def write_own_snapshot(self):
        """Write our state, at the applied index, as our snapshot file, now (receiving the
        leader's snapshot replaced the file; left so, a restart would load the leader's
        older state under our compacted log). As PySyncObj's log compaction writes it:
        (state, last applied entry, the entry before it, the cluster)."""
        fileName = self.__conf.fullDumpFile
        pair = self.__getEntries(self.__raftLastApplied - 1, 2)
        if fileName is None or self.__conf.serializer is not None or len(pair) < 2:
            return  # a snapshot in memory (lost on restart anyway), or not PySyncObj's format
        selfData = {k: v for k, v in self.__dict__.items() if k not in self.__properies}
        data = [selfData] + [consumer._serialize() for consumer in self.__consumers] \
            if self.__consumers else selfData
        snapshot.write_snapshot(fileName, (data, pair[1], pair[0], _SyncObj.configuration_at(self, pair[1][1])))

    def snapshot_committed(self, lastIdx):
        """A snapshot holds only applied, hence committed, entries: our log holds them now."""
        if lastIdx > self.__raftCommitIndex:
            self.__raftCommitIndex = lastIdx
        _SyncObj.verified(self, lastIdx)

    def verified(self, idx):
        """Entries up to idx are now known to match the leader's log: a catch-up to the
        stored commit index (or the journal's index to catch up to) ends once idx reaches it."""
        target = _CATCHING_UP.get(self)
        if target is not None and idx >= target:
            del _CATCHING_UP[self]
            if hasattr(self.__raftLog, 'set_catch_up_to'):
                self.__raftLog.set_catch_up_to(None)
            log.warning('caught up to the stored index %d: voting again', target)

    def note_missing_committed(self):
        """Whether this replica lost entries it may have counted towards a commit, and must
        have them again before it votes or campaigns (`_CATCHING_UP`). Two signs:

        - the commit index lies beyond the log's end: entries up to it were committed and
          the journal lost some (a tail lost with fsync off, or a repair of durable damage).
          The in-memory commit index is clamped to the log's end (entries up to there are
          committed too); a journal that can (Bazar's) keeps the lost index as its index to
          catch up to, and saves the commit index it has;
        - the journal's index to catch up to (`catch_up_to`: a repair cut entries that may
          have been acknowledged, committed or not) lies beyond the log's end. The commit
          index is left alone: those entries need not be committed, and counting the log's
          end as committed would apply entries a new leader replaces.
        Idempotent."""
        end = self.__getCurrentLogIndex()
        journal = self.__raftLog
        marker = journal.catch_up_to() if hasattr(journal, 'catch_up_to') else None
        lost = self.__raftCommitIndex if self.__raftCommitIndex > end else None
        if lost is not None:
            log.error('the stored commit index %d is beyond the journal end %d: committed entries '
                      'were lost from disk. This replica will neither vote nor stand for election '
                      'until a leader has sent them again', lost, end)
            self.__raftCommitIndex = end
            if hasattr(journal, 'set_catch_up_to'):
                marker = max(marker or 0, lost)
                journal.set_catch_up_to(marker)
        if marker is not None and marker <= end and self not in _CATCHING_UP:
            journal.set_catch_up_to(None)   # caught up before a crash let it be saved
            marker = None
        target = max(lost or 0, marker or 0)
        if target and target > _CATCHING_UP.get(self, 0):
            if lost is None:
                log.error('this replica\'s journal was repaired: it lost entries up to %d it may '
                          'have acknowledged, and will neither vote nor stand for election until a '
                          'leader has sent them again', target)
            _CATCHING_UP[self] = target

    def store_commit_index(self):
        """Persist the commit index. A journal without an index to catch up to (PySyncObj's)
        is given the index we still have to catch up to instead, if higher, so that a restart
        before catching up remembers the loss (it is a committed index there)."""
        if hasattr(self.__raftLog, 'catch_up_to'):
            self.__raftLog.setRaftCommitIndex(self.__raftCommitIndex)
        else:
            self.__raftLog.setRaftCommitIndex(max(self.__raftCommitIndex, _CATCHING_UP.get(self, 0)))


_WHY = {
    _MESSAGE: "a follower deleted entries it already held (same index and term) and acknowledged "
              "ones it then lost; it could also cut below its commit index; a candidate counted "
              "a duplicated vote twice; a leader appended membership changes forwarded by others; "
              "a leader counted an append reply of an earlier term (the reply had no term) and let "
              "a stale reset move a next index below the match index",
    _LOAD_DUMP: "installing a snapshot discarded the whole journal, including matching entries "
                "after the snapshot (Raft §7 keeps them), even a snapshot older than the "
                "follower's commit index",
    _MAY_CAMPAIGN: "a replica whose journal lost committed entries could stand for election",
    _APPLY: "a commit index beyond the journal's end was kept (or clamped) without a word; "
            "a restarted replica's configuration was that of its stored commit index",
    _APPLY_ONE: "applying a committed membership entry made its change again, undoing a later "
                "change already in the log",
}

REPLACED = tuple(_WHY)  # the SyncObj methods this module replaces

ask_for_the_leader = _SyncObj.ask_for_the_leader   # for the member's tick (item 8 above)

for _name, _why in _WHY.items():
    patching.replace(SyncObj, _name, _SyncObj.__dict__[_name], _DIGESTS[_name], _why)
