"""What every replicated Bazar service shares: a state machine fed by a PySyncObj Raft log.

- `state.ReplicatedState` applies committed commands to a plain state machine
  and tells listeners what was applied.
- `member.RaftMember` is one process's membership in a group: submit a command,
  wait for an index, serve a read index, change the membership (`membership`),
  report status; how it fails is in `errors`.
- `join(config, group, machine, node_id)` builds a started member from
  `cluster.yaml`: the one way anything outside this package gets one.
- `restore.write_data_dir` writes a replica's data directory holding a given
  state (`bazar restore`).
- `settings.syncobj_conf` turns `cluster.yaml`'s raft section into PySyncObj's
  configuration, with the reasons for each choice.

Importing this package installs Bazar's corrections to PySyncObj (each module
below calls `consensus.patching.replace`, which refuses a PySyncObj that is
not the pinned one), so everything that builds a member through `consensus`
gets them: replicas, the frontend's follower, tests and tools alike.
"""

from bazar.consensus import journal, snapshot  # noqa: F401,E402  durable journal and snapshots
from bazar.consensus import raft_fixes as _raft_fixes  # noqa: F401,E402  Raft's follower rules (see module)
from bazar.consensus import frame_guard as _frame_guard  # noqa: E402,F401  (Raft frame limits)
from bazar.consensus import frame_writer as _frame_writer  # noqa: E402,F401  (cheap frame compression)
from bazar.consensus import group_commit as _group_commit  # noqa: E402,F401  (one round per batch)
from bazar.consensus import admin_guard as _admin_guard  # noqa: E402,F401  (no admin commands)

# The public face: everything outside consensus/ uses these, never pysyncobj.
from bazar.consensus.group import join  # noqa: E402
from bazar.consensus.errors import BindFailed, CommitError, MembershipRefused, ReadRefused  # noqa: E402
from bazar.consensus.member import RaftMember  # noqa: E402
from bazar.consensus.state import SNAPSHOT_FORMAT, ApplyListener  # noqa: E402
from bazar.consensus.restore import write_data_dir  # noqa: E402

__all__ = ["join", "RaftMember", "BindFailed", "CommitError", "MembershipRefused", "ReadRefused", "ApplyListener",
           "SNAPSHOT_FORMAT", "write_data_dir"]
