"""Commands submitted together go in one round (consensus/group_commit.py,
`proposing_together`), on a real three-member group in this process, on loopback.

Under load the leader's tick thread is often awake, taking commands off its queue, while a
request thread is still submitting a batch: without the proposal lock it took the first
few, sent them, and the rest waited in its log for that round to commit (a catalog batch
cost 1.4 rounds on average under a hot item, and a purchase's `begin` could wait behind
the `finish`es proposed just before it)."""
from __future__ import annotations

import collections
import threading
import time

import pytest

from tests.unit.raft_groups import leader_of, running_group

BOOK = {"title": "A", "topic": "t", "price": 10.0, "stock": 10 ** 6}


@pytest.fixture
def group(tmp_path):
    yield from running_group(tmp_path)


def record_rounds(leader, follower_address: str) -> list[bytes]:
    """From now on, the entries (as sent) of every round the leader sends that follower, one
    bytes string per round. A round is one call of PySyncObj's `__sendAppendEntries`, which
    splits what a follower lacks into several messages when it exceeds
    `appendEntriesBatchSizeBytes` (a follower that fell behind under this load): those
    messages are one round, sent together, not a batch waiting for another round."""
    rounds: list[bytes] = []
    sync = leader.syncobj
    send, send_round = leader._transport.send, sync._SyncObj__sendAppendEntries
    current: list[bytes] | None = None   # the round being sent, on the tick thread

    def recording(node, message):
        if getattr(node, "address", None) == follower_address and isinstance(message, dict) \
                and message.get("type") == "append_entries" and message.get("entries"):
            sent = b"".join(entry[0] for entry in message["entries"])
            if current is None:
                rounds.append(sent)   # sent outside a round (none is, today)
            else:
                current.append(sent)
        return send(node, message)

    def recording_round(*args, **kwargs):
        nonlocal current
        current = []
        try:
            return send_round(*args, **kwargs)
        finally:
            if current:
                rounds.append(b"".join(current))
            current = None

    leader._transport.send = recording
    sync._SyncObj__sendAppendEntries = recording_round
    return rounds


def test_a_batch_submitted_together_goes_in_one_round_while_others_keep_coming(group):
    leader = leader_of(group)
    leader.submit({"op": "add_book", "request_id": "book", **BOOK}, timeout=10)
    follower = next(m for m in group if m is not leader)
    rounds = record_rounds(leader, follower.syncobj.selfNode.address)
    stop = threading.Event()

    def other_buyers() -> None:      # the load: the tick thread is kept busy meanwhile
        i = 0
        while not stop.is_set():
            leader.submit_nowait({"op": "purchase", "id": 1, "order_id": f"other-{i}"}, lambda r, ok: None)
            i += 1
            time.sleep(0.0002)

    others = threading.Thread(target=other_buyers)
    others.start()
    split = []
    try:
        for attempt in range(30):
            ids = [f"b{attempt}x{i}y".encode() for i in range(25)]
            first = [({"op": "purchase", "id": 1, "order_id": ids[0].decode()}, lambda r, ok: None)]
            answers = leader.submit_many([{"op": "purchase", "id": 1, "order_id": i.decode()} for i in ids[1:]],
                                         timeout=10, first=first)
            assert all(applied for applied, _ in answers)
            # The round each command was first sent in (a heartbeat may send again what a
            # follower has not acknowledged yet: that is not a split).
            first_sent = {i: next(n for n, sent in enumerate(rounds) if i in sent) for i in ids}
            if len(set(first_sent.values())) > 1:
                split.append((attempt, sorted(collections.Counter(first_sent.values()).values())))
    finally:
        stop.set()
        others.join()
    assert split == [], f"batches first sent in several rounds (attempt, commands per round): {split}"
