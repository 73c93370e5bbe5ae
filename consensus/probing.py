"""The transport that carries the read index's probe rounds and the leader's majority
stamp: what `consensus.reads` and `RaftMember.in_touch` learn from the network.

Both ride on messages PySyncObj sends anyway, as extra keys of its dicts: nothing is
added to the log and no message is sent for them alone. Peers that do not know the
keys (another version) ignore them, and what they send counts for nothing here.
"""
from __future__ import annotations

import math
import os
import time
from typing import Any, Callable

from bazar.consensus.transport import WatchedTransport

PROBE_KEY = "bazar_probe"  # on append_entries: (sender's nonce, its newest probe round)
ECHO_KEY = "bazar_echo"    # on next_node_idx: the newest probe received from that leader
# On append_entries: how many seconds before sending it the leader last heard from a majority
# of its group, or None while it cannot vouch for its commit index (see RaftMember.in_touch).
MAJORITY_KEY = "bazar_majority_age"


class ProbeStamps:
    """Stamps heartbeats with probe rounds and echoes them back (see `consensus.reads`).
    A mixin over any PySyncObj transport (`ProbingTransport`: TCP; the simulator's, in
    tests/sim/reads.py, runs this very code over its simulated network).

    Leader side: every append_entries carries (nonce, round); `echoes[node]` is the
    newest round of *this process* (same nonce) that `node` has echoed. The nonce is
    random per process, so a restarted leader never counts echoes of its previous
    life. Follower side: every next_node_idx carries the newest probe received from
    the node it is sent to. A reply is sent while handling a message, after every
    earlier message on the link, so an echo of round r proves the reply was sent
    after the leader opened round r. Only next_node_idx counts: PySyncObj sends it
    only in answer to an append_entries whose term it accepted, so it also proves
    the follower had not moved past that leader's term. Peers without these keys
    (another version) are simply never counted: reads fail closed.

    Every append_entries also carries `majority_age()`, the sender's answer to "how
    long ago did a majority of my group last answer me" (an age, since clocks differ
    between machines). The receiver turns it into an instant of its own clock, the
    time it received the message minus the age, and keeps it per sender with the
    message's term and commit index in `vouched`: the basis of a follower's
    `RaftMember.in_touch`. The stamp vouches for that commit index only: another
    message of the same leader, sent earlier and delivered later (across a
    reconnect), announces less and vouches for nothing.
    A message without the key (an older Bazar) or with None vouches for nothing.
    A transport whose `majority_age` is None sends no key, as an older Bazar.
    """

    def __init__(self, *args, **kwargs) -> None:
        self.nonce = int.from_bytes(os.urandom(8), "big")
        self.probe_round = 0
        self.echoes: dict[Any, int] = {}
        self._probes_from: dict[Any, tuple[int, int]] = {}
        self.majority_age: Callable[[], float | None] | None = None  # set by RaftMember
        # sender -> (term, majority heard at, the commit index the same message announced)
        self.vouched: dict[str, tuple[int, float, int | None]] = {}
        super().__init__(*args, **kwargs)

    def send(self, node, message) -> bool:
        if isinstance(message, dict):
            kind = message.get("type")
            if kind == "append_entries":
                message = {**message, PROBE_KEY: (self.nonce, self.probe_round)}
                if self.majority_age is not None:
                    message[MAJORITY_KEY] = self.majority_age()
            elif kind == "next_node_idx" and node in self._probes_from:
                message = {**message, ECHO_KEY: self._probes_from[node]}
        return super().send(node, message)

    def _onMessageReceived(self, node, message) -> None:
        if isinstance(message, dict):
            probe = message.get(PROBE_KEY)
            if probe is not None:
                self._probes_from[node] = probe  # before PySyncObj handles it and replies
            echo = message.get(ECHO_KEY)
            if echo is not None and message.get("type") == "next_node_idx" and echo[0] == self.nonce:
                self.echoes[node] = max(self.echoes.get(node, 0), echo[1])
            age = message.get(MAJORITY_KEY)
            if message.get("type") == "append_entries" and isinstance(age, (int, float)) \
                    and 0 <= age < math.inf:
                address = getattr(node, "address", str(node))
                self.vouched[address] = (message.get("term"), time.monotonic() - age,
                                         message.get("commit_index"))
        super()._onMessageReceived(node, message)


class ProbingTransport(ProbeStamps, WatchedTransport):
    """What a member's SyncObj talks through: probe rounds and majority stamps
    (`ProbeStamps`) over the watched, guarded TCP transport."""
