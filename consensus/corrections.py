"""Every correction Bazar makes to PySyncObj 0.3.17, in one place: what it replaces, the
rule it enforces, and the tests that fail without it.

The replacements themselves live beside the code they belong to (`raft_fixes.py`:
Raft's receiver and leader rules; `journal.py`: durability; `snapshot.py`: the
snapshot writer; `frame_guard.py`: what a stranger may make a node buffer;
`admin_guard.py`: PySyncObj's admin commands on the Raft port;
`transport.py`: where outgoing connections leave from, and the listener's queue). Each is
installed by `consensus.patching.replace`, which refuses to start on any PySyncObj whose
source differs from the digest the correction was written for.

This module is the index. Its contract, checked by tests/unit/test_corrections.py:

- every function `patching.replace` installed has exactly one entry here, and every
  entry here was installed (nothing unlisted, nothing stale);
- every test an entry names exists;
- `table()` joins each entry with what was really installed (owner, digest), so
  `bazar corrections` prints the table the docs show (docs/architecture.md).

`caught_by` says which generated simulator schedules (tests/sim) fail when the
correction alone is reverted (`python -m tests.sim.mutation`); a correction outside
the simulator's fault model says so, and why, instead.
"""
from __future__ import annotations

from dataclasses import dataclass

from bazar.consensus import patching


@dataclass(frozen=True)
class Correction:
    owner: str          # the class or module whose attribute is replaced, as `patching` names it
    name: str           # the attribute
    rule: str           # the rule it enforces, in one line
    tests: tuple[str, ...]   # named tests that fail without it ("path::function")
    caught_by: str      # the generated schedules that fail without it, or why none can


_SYNCOBJ = "pysyncobj.syncobj.SyncObj"
_SIM = "tests/sim/"
_UNIT = "tests/unit/"

CORRECTIONS: tuple[Correction, ...] = (
    Correction(
        _SYNCOBJ, "_SyncObj__onMessageReceived",
        "AppendEntries receiver rules 2-5 (Raft fig. 2): delete only conflicting entries, never a "
        "committed one; commit only what the message covers; a reply carries its term and a leader "
        "counts only replies of its own term, never backing a follower below its match index; a vote "
        "counts once per voter in the current term; a follower that heard its leader within the minimum "
        "election timeout ignores vote requests of newer terms, unless a leadership transfer started "
        "the election (thesis §4.2.3, §3.10); a replica takes entries from a leader its configuration "
        "does not name (§6): one that hears no leader asks its peers for it and connects to it, and "
        "answers its stale appends with its own term",
        (_SIM + "test_stale_resend.py::test_stale_resend_loses_no_acknowledged_write",
         _SIM + "test_follower_rules.py::test_a_committed_entry_is_never_replaced",
         _SIM + "test_follower_rules.py::test_a_heartbeat_commits_only_what_it_covers",
         _SIM + "test_found_schedules.py::test_found_schedule_is_safe",
         _SIM + "test_membership.py::test_a_stale_vote_reply_does_not_let_a_duplicated_vote_count_twice",
         _SIM + "test_stale_acknowledgment.py::test_an_acknowledgment_from_an_earlier_term_is_not_counted",
         _SIM + "test_old_snapshot.py::test_a_stale_reset_never_sends_a_follower_back_below_its_match_index",
         _UNIT + "test_utility_messages.py::test_a_membership_change_forwarded_by_a_follower_is_refused",
         _SIM + "test_found_schedules.py::"
                "test_a_replica_outside_the_configuration_cannot_keep_the_group_from_converging",
         _SIM + "test_disruptive_candidates.py::test_a_replica_cut_off_from_the_leader_alone_cannot_depose_it",
         _SIM + "test_disruptive_candidates.py::test_a_transfer_in_a_group_of_five_is_heard_at_once",
         _SIM + "test_unknown_leader.py::test_a_member_whose_configuration_does_not_name_the_leader_catches_up",
         _UNIT + "test_learned_leader.py::"
                 "test_a_follower_started_without_the_leader_in_its_file_learns_it_and_catches_up"),
        "generated schedules: 3 of seed 1 (a leader counting an entry its follower does not hold); the "
        "learning of a leader the configuration does not name alone (leaders_outside_the_configuration_"
        "unknown): 128 of seed 1; the rule against disruptive candidates alone (vote_requests_of_"
        "disruptive_candidates_heard): 1 of seed 1, by the end's partial partition (tests/sim/schedule.py)"),
    Correction(
        _SYNCOBJ, "_SyncObj__loadDumpFile",
        "InstallSnapshot (Raft §7): keep the entries after a snapshot the log already holds; never "
        "install a snapshot at or below the follower's commit or applied index; rebase the log in one "
        "atomic step",
        (_SIM + "test_follower_rules.py::test_a_snapshot_older_than_the_log_keeps_the_entries_after_it",
         _SIM + "test_old_snapshot.py::test_a_follower_never_installs_a_snapshot_at_or_below_its_commit_index",
         _SIM + "test_follower_rules.py::test_a_snapshot_ahead_of_the_log_replaces_it_and_the_follower_catches_up"),
        "generated schedules: 25 of seed 1 (a leader counting an entry its follower does not hold)"),
    Correction(
        _SYNCOBJ, "_SyncObj__connectedToAnyone",
        "a replica whose journal lost committed entries does not stand for election until it has them again",
        (_SIM + "test_follower_rules.py::"
                "test_a_replica_that_lost_committed_entries_neither_votes_nor_campaigns_until_caught_up",),
        "generated schedules: 510 of seed 1 (a leader with a different entry at a committed index)"),
    Correction(
        _SYNCOBJ, "_SyncObj__applyLogEntries",
        "a stored commit index beyond the journal's end, or a repaired journal's index to catch up "
        "to, is remembered as entries to catch up to (the latter never counted committed); a restarted "
        "replica takes the latest configuration in its log (Raft §6)",
        (_SIM + "test_follower_rules.py::"
                "test_a_replica_that_lost_committed_entries_neither_votes_nor_campaigns_until_caught_up",
         _SIM + "test_follower_rules.py::test_entries_kept_after_mid_journal_damage_are_not_counted_committed",
         _SIM + "test_membership.py::test_a_restarted_replica_uses_the_latest_configuration_in_its_log",
         _SIM + "test_membership.py::test_a_restarted_replica_two_changes_behind_cannot_form_a_second_majority"),
        "generated schedules: 64 of seed 1 (a replica counting a voter its log removed)"),
    Correction(
        _SYNCOBJ, "_SyncObj__doApplyCommand",
        "a membership change takes effect once, when its entry enters the log; applying it later "
        "changes nothing (it would undo a later change already in the log)",
        (_SIM + "test_membership.py::test_applying_an_old_membership_entry_does_not_undo_a_later_one",),
        "generated schedules: 39 of seed 1 (a replica counting a voter its log removed: Raft §6)"),
    Correction(
        "pysyncobj.syncobj", "createJournal",
        "a log entry is on disk (fsync, checksummed, append-only, compacted by rename) before anyone relies on it",
        (_UNIT + "test_journal.py::test_a_crash_keeps_exactly_what_was_synced",
         _UNIT + "test_journal.py::test_compaction_writes_a_new_file_and_never_touches_the_old_one"),
        "generated schedules: 2 of seed 1 (a restart below the commit index it had)"),
    Correction(
        _SYNCOBJ, "_SyncObj__sendNextNodeIdx",
        "a follower acknowledges only entries that are on its disk",
        (_UNIT + "test_journal_snapshot_writer.py::test_a_follower_syncs_its_journal_before_acknowledging",),
        ("none: superseded, every follower reply now goes through raft_fixes' acknowledge, which syncs "
         "first (its absence is caught with onMessageReceived); kept so that no PySyncObj path "
         "acknowledges unsynced entries")),
    Correction(
        _SYNCOBJ, "_SyncObj__sendAppendEntries",
        "the leader's fsync overlaps its followers' instead of following them (speed; safety comes from "
        "the sync before a commit index takes effect)",
        (_UNIT + "test_journal.py::test_the_leader_syncs_before_a_commit_index_takes_effect",),
        "none: a speed correction (the commit syncs first anyway), no schedule can fail without it"),
    Correction(
        _SYNCOBJ, "_checkCommandsToApply",
        "group commit: commands that arrive while a round is in flight go out together in the next "
        "round (one message per follower, one fsync per replica); a lone command is sent at once; a "
        "commit is announced to every member by the next round (at the latest the next heartbeat), not a "
        "round of its own; commands submitted together are taken off the queue together",
        (_SIM + "test_group_commit.py::test_commands_arriving_during_a_round_share_the_next_one",
         _SIM + "test_group_commit.py::test_a_lone_command_is_sent_at_once",
         _UNIT + "test_proposals_together.py::test_a_batch_submitted_together_goes_in_one_round_while_others_keep_coming",
         _SIM + "test_group_commit.py::"
                "test_a_commit_is_announced_to_voting_followers_by_the_next_round_not_a_round_of_its_own"),
        "none: a speed correction (when entries are sent, not what is committed), no schedule can fail without it"),
    Correction(
        "pysyncobj.serializer.Serializer", "serialize",
        "the forked snapshot writer dies with its replica, gives up its ports and writes durably under its "
        "own name; a snapshot carries the configuration as of its last entry, not of the log's end "
        "(Raft §7; raft_fixes.configuration_at)",
        (_UNIT + "test_journal_snapshot_writer.py::test_the_writer_dies_with_its_replica",
         _UNIT + "test_journal_snapshot_writer.py::test_a_forked_snapshot_is_written_durably_under_its_own_name",
         _SIM + "test_found_schedules.py::test_a_snapshot_carries_the_configuration_as_of_its_last_entry"),
        "generated schedules: the first of seed 1 (the group does not converge); the configuration "
        "rule alone (snapshot_configuration_of_the_log_end): 39 of seed 1 (a replica counting a voter "
        "the committed entries up to its snapshot and its log remove)"),
    Correction(
        "pysyncobj.serializer.Serializer", "setTransmissionData",
        "a snapshot received from the leader is durable before it is installed and acknowledged",
        (_UNIT + "test_journal_snapshot_writer.py::test_a_received_snapshot_is_in_place_only_after_the_last_chunk",),
        "generated schedules: 125 of seed 1 (the group does not converge)"),
    Correction(
        "pysyncobj.transport.TCPTransport", "_onUtilityMessage",
        "membership changes come only through Bazar's checks: PySyncObj's admin commands that write "
        "to the log ('add', 'remove', 'set_version') are refused on the Raft port",
        (_UNIT + "test_utility_messages.py::test_a_utility_add_or_remove_on_the_raft_port_is_refused",
         _UNIT + "test_utility_messages.py::"
                 "test_generated_utility_commands_append_nothing_and_a_reverted_guard_is_caught"),
        "generated utility-command sequences on a real group (the simulator has no sockets): the "
        "first sequence that sends a change (the leader appends it)"),
    Correction(
        "pysyncobj.tcp_connection.TcpConnection", "_TcpConnection__processRead",
        "a connection may make a node buffer at most one frame, of a size bounded before it is trusted "
        "(64 KiB until proven, 16 MiB after), assembled with linear copying",
        ("tests/integration/test_raft_port_junk.py::"
         "test_purchases_keep_being_answered_while_junk_floods_the_leaders_raft_port",
         _UNIT + "test_raft_port_guard.py::test_a_big_frame_arriving_in_many_reads_is_assembled_with_linear_copying",
         _UNIT + "test_frame_streams.py::test_the_generated_streams_catch_each_read_correction_reverted"),
        "generated byte streams (tests/unit/test_frame_streams.py; the simulator has no sockets): the "
        "second (a stranger's oversized frame does not close the connection)"),
    Correction(
        "pysyncobj.tcp_connection.TcpConnection", "_TcpConnection__processParseMessage",
        "(wrapped) a connection is trusted only after a message that carried the session key this side "
        "chose for this connection: a replayed frame proves nothing",
        (_UNIT + "test_raft_port_guard.py::test_a_replayed_first_frame_does_not_lift_the_frame_limit",
         _UNIT + "test_frame_streams.py::test_the_generated_streams_catch_each_read_correction_reverted"),
        "generated byte streams (tests/unit/test_frame_streams.py; the simulator has no sockets): the "
        "first (a peer's frame beyond a stranger's limit closes its connection)"),
    Correction(
        "pysyncobj.tcp_server.TcpServer", "bind",
        "(wrapped) the Raft listener queues a burst of connections (128, not 5): none waits a second "
        "for TCP to resend a SYN the kernel dropped",
        (_UNIT + "test_raft_port_guard.py::test_a_burst_of_connections_is_taken_at_once_and_its_strangers_shed_at_once",),
        "none: the simulator has no sockets (real processes test it)"),
    Correction(
        "pysyncobj.tcp_connection.TcpConnection", "send",
        "a frame is written in PySyncObj's format with a 4 KiB compression window, not a fresh 32 KiB "
        "deflate state per message (speed; any zlib reader reads it)",
        (_UNIT + "test_frame_writer.py::test_a_frame_is_compressed_with_a_small_window_not_zlibs_default",
         _UNIT + "test_frame_writer.py::"
                 "test_what_is_sent_is_read_back_by_pysyncobjs_own_parser_encrypted_and_with_a_session_key"),
        "none: a speed correction (the bytes decode to the same message), and the simulator has no sockets"),
)


def find(owner: str, name: str) -> Correction | None:
    """The entry for `owner.name`, or None."""
    for correction in CORRECTIONS:
        if (correction.owner, correction.name) == (owner, name):
            return correction
    return None


def table() -> list[dict]:
    """Every installed correction with its registry entry, in installation order."""
    rows = []
    for patch in patching.applied():
        entry = find(patch.owner, patch.name)
        rows.append({
            "replaces": f"{patch.owner}.{patch.name}",
            "digest": patch.digest,
            "why": patch.why,
            "rule": entry.rule if entry else None,
            "tests": list(entry.tests) if entry else [],
            "caught_by": entry.caught_by if entry else None,
        })
    return rows
