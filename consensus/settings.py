"""PySyncObj configuration for a Bazar replica, with the reason for each value.

Measured on PySyncObj 0.3.17: the default configuration batches appends and
commits once per appendEntriesPeriod (~100 ms); with `appendEntriesUseBatch`
off, the leader sends each entry at once and a commit takes ~0.35 ms.

Storage is Bazar's (consensus/journal.py, consensus/snapshot.py): with
`raft.fsync` (the default) every replica fsyncs entries before acknowledging
them or counting them committed, and term and vote before voting; off, a power
cut can lose acknowledged writes (a process crash still cannot; see docs/architecture.md, "Durability across crashes").
"""
from __future__ import annotations

from pathlib import Path

from pysyncobj import SyncObjConf

from bazar.cluster.config import RaftConfig
from bazar.cluster.secrets import private_directory
from bazar.consensus.storage import StoragePath

# Follower-to-follower links carry no traffic between elections. PySyncObj drops a
# link that has been silent for connectionTimeout, and the first election after a
# leader's death then fails for want of votes. So silence alone never drops a link;
# dead peers are still noticed by TCP (RST/FIN, and keepalive after ~30 s).
# This applies to links whose peer proved it holds the cluster key; a connection that has
# not done so within consensus.strangers.HANDSHAKE_SECONDS is closed (consensus/transport.py).
IDLE_LINKS_NEVER_TIME_OUT = 24 * 3600.0

# PySyncObj retries a failed bind of the Raft port for ever by default, and until it binds
# a member does nothing at all: no connection, no election, while its HTTP side answers as
# if it were alive. A port still held for a moment (a peer restarting on it) binds within a
# retry or two; after BIND_RETRY_SECONDS * BIND_ATTEMPTS the replica gives up and exits
# (RaftMember raises BindFailed), so its supervisor or operator sees the problem.
BIND_RETRY_SECONDS = 0.5
BIND_ATTEMPTS = 20



def data_files(data_dir: Path) -> tuple[Path, Path]:
    """(journal, snapshot): the two files a voting replica keeps in its data directory."""
    return data_dir / "journal.bin", data_dir / "snapshot.bin"


def syncobj_conf(raft: RaftConfig, data_dir: Path | None, password: str | None,
                 bind_address: str | None = None, group_size: int = 3) -> SyncObjConf:
    """PySyncObj settings for one member; data_dir None means a non-voting follower."""
    journal = dump = None
    if data_dir is not None:
        # Journals hold every order: the data directory and each member's are 0700, and the
        # files 0600 (the node process's umask).
        private_directory(data_dir.parent)
        private_directory(data_dir)
        # Both files, always: a journal without a dump file loses everything
        # before the last log compaction when the process restarts. The names carry
        # the fsync choice to Bazar's journal and snapshot writer (consensus/journal.py,
        # consensus/snapshot.py), and the journal knows its snapshot, to finish a
        # compaction that a crash interrupted.
        journal_file, snapshot_file = data_files(data_dir)
        dump = StoragePath(snapshot_file, fsync=raft.fsync)
        journal = StoragePath(journal_file, fsync=raft.fsync, snapshot=dump)
    low, high = raft.election_timeout
    return SyncObjConf(
        appendEntriesUseBatch=False,        # commit each write now, not on the next heartbeat
        appendEntriesPeriod=raft.append_entries_period,
        raftMinTimeout=low,
        raftMaxTimeout=high,
        leaderFallbackTimeout=raft.leader_fallback_timeout,  # default 30 s: too long to hold a dead role
        connectionTimeout=IDLE_LINKS_NEVER_TIME_OUT,
        connectionRetryTime=0.2,            # reconnect to a restarted peer quickly (default 5 s)
        bindRetryTime=BIND_RETRY_SECONDS,
        maxBindRetries=BIND_ATTEMPTS,
        commandsWaitLeader=False,           # fail fast during an election; RaftMember retries
        logCompactionMinEntries=raft.compaction_entries,  # snapshot + truncate the log this often
        # Replicas compact at the same log index; staggered in time, a crash of the whole
        # group can never catch a majority between writing a snapshot and truncating the
        # journal (see consensus/journal_repair.py for the other half of that story).
        logCompactionSplit=data_dir is not None,
        logCompactionMinTime=raft.compaction_period,
        journalFile=journal,
        fullDumpFile=dump,
        useFork=True,                       # snapshots are pickled in a forked child: no stall
        # A group of one gets no acks to wake its tick thread, so a commit would wait
        # for the next tick (50 ms by default); tick every millisecond instead.
        autoTickPeriod=0.001 if group_size == 1 else 0.05,
        password=password,
        bindAddress=bind_address,
        # Peers known by name (catalog1:7101 under Docker or Kubernetes) get a new IP address
        # when their container is recreated; PySyncObj would keep the old one for 10 minutes.
        dnsCacheTime=2.0,
        dnsFailCacheTime=1.0,
        # Membership is the log's (`bazar member add/remove`); cluster.yaml only starts it.
        dynamicMembershipChange=True,
    )
