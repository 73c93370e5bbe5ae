"""What every replicated Bazar service shares: a state machine fed by a PySyncObj Raft log.

- `state.ReplicatedState` applies committed commands to a plain state machine
  and tells listeners what was applied.
- `member.RaftMember` is one process's membership in a group: submit a command,
  wait for an index, report status.
- `settings.syncobj_conf` turns `cluster.yaml`'s raft section into PySyncObj's
  configuration, with the reasons for each choice.
"""
