"""consensus/state.py without a network, and one real single-node RaftMember on loopback."""
from __future__ import annotations

import copy
import pickle
import threading
import time

import pytest
from pysyncobj import FAIL_REASON, SyncObj

from bazar.cluster.config import RaftConfig
from bazar.consensus.directory import Directory
from bazar.consensus.errors import CommitError
from bazar.consensus.member import RaftMember
from bazar.consensus.settings import syncobj_conf
from bazar.consensus.state import ReplicatedState
from bazar.local.cluster import free_ports
from bazar.node.catalog import CatalogState
from bazar.node.orders import OrderState

BOOKS = [{"title": "A", "topic": "t", "price": 10.0, "stock": 1},
         {"title": "B", "topic": "t", "price": 2.5, "stock": 3}]


class FakeSyncObj:
    """Just what ReplicatedState.apply reads: PySyncObj's last applied index."""

    def __init__(self, last_applied: int = 0) -> None:
        self.raftLastApplied = last_applied


class Recorder:
    def __init__(self) -> None:
        self.applied: list[tuple[int, dict, object]] = []
        self.resets: list[int] = []

    def on_applied(self, index, command, result):
        self.applied.append((index, command, result))

    def on_reset(self, index):
        self.resets.append(index)


def apply_like_pysyncobj(state: ReplicatedState, command: dict):
    """Apply one entry the way PySyncObj's tick does: call, then bump raftLastApplied."""
    result = state.apply(command, _doApply=True)
    state._syncObj.raftLastApplied += 1
    return result


def offline_state(machine=None, last_applied: int = 0) -> ReplicatedState:
    state = ReplicatedState(machine if machine is not None else CatalogState())
    state._syncObj = FakeSyncObj(last_applied)
    return state


# -- ReplicatedState, offline --------------------------------------------------


def test_apply_returns_machine_result_and_tells_listeners_in_order():
    state = offline_state(last_applied=4)
    first, second = Recorder(), Recorder()
    state.add_listener(first)
    state.add_listener(second)
    commands = [{"op": "seed", "books": BOOKS},
                {"op": "purchase", "id": 1, "order_id": "o1"},
                {"op": "purchase", "id": 1, "order_id": "o2"},
                {"op": "nonsense"}]
    results = [apply_like_pysyncobj(state, c) for c in commands]

    assert results == [{"ok": True, "seeded": True}, {"ok": True, "id": 1, "title": "A", "price": 10.0},
                       {"ok": False, "error": "out_of_stock", "id": 1}, {"ok": False, "error": "unknown command"}]
    assert first.applied == [(5, commands[0], results[0]), (6, commands[1], results[1]),
                             (7, commands[2], results[2]), (8, commands[3], results[3])]
    assert second.applied == first.applied
    assert state.applied_index == 8
    assert state.read(lambda m, i: m.book(i)["stock"], 1) == (0, 8)
    assert first.resets == []


def test_serialize_deserialize_round_trip_calls_on_reset():
    state = offline_state()
    for command in [{"op": "seed", "books": BOOKS}, {"op": "purchase", "id": 2, "order_id": "x"}]:
        apply_like_pysyncobj(state, command)
    data = pickle.loads(pickle.dumps(state._serialize()))  # PySyncObj pickles the dump
    assert data["index"] == 2
    assert data["state"] == state.machine.snapshot()

    other = offline_state()
    listener = Recorder()
    other.add_listener(listener)
    other._deserialize(data)
    assert listener.resets == [2]
    assert listener.applied == []
    assert other.applied_index == 2
    assert other.machine.snapshot() == state.machine.snapshot()
    assert other.wait_for(2, timeout=0) is True

    # Both behave the same from here on (PySyncObj continues after the dump's index).
    other._syncObj.raftLastApplied = 2
    command = {"op": "purchase", "id": 2, "order_id": "x"}
    assert apply_like_pysyncobj(other, dict(command)) == apply_like_pysyncobj(state, dict(command))
    assert listener.applied[-1][0] == 3 == other.applied_index


def test_a_dump_pickled_at_once_keeps_the_state_of_its_index():
    # PySyncObj pickles _serialize()'s result in a forked child straight away; the
    # pickle, not the live object, is what later applies must not change.
    state = offline_state(OrderState())
    apply_like_pysyncobj(state, {"op": "begin", "order_id": "a", "id": 1, "created_at": 1.0})
    dumped = pickle.dumps(state._serialize())
    apply_like_pysyncobj(state, {"op": "finish", "order_id": "a",
                                 "outcome": {"ok": True, "title": "A", "price": 1.0}})
    data = pickle.loads(dumped)
    assert data["state"]["orders"]["a"]["status"] == "pending"
    assert data["index"] == 1
    restored = offline_state(OrderState())
    restored._deserialize(data)
    assert restored.machine.order("a")["status"] == "pending"


@pytest.mark.parametrize("machine, command", [
    (CatalogState(), {"op": "seed", "books": BOOKS}),
    (OrderState(), {"op": "begin", "order_id": "a", "id": 1, "created_at": 1.0})])
def test_a_snapshot_names_no_class_of_bazars(machine, command):
    """Renaming or moving a Bazar module must never make a snapshot unreadable: the pickle
    may refer to builtins only (the old format pickled node.catalog.CatalogState)."""
    import pickletools
    state = offline_state(machine)
    apply_like_pysyncobj(state, command)
    dumped = pickle.dumps(state._serialize(), protocol=pickle.HIGHEST_PROTOCOL)
    named = [arg for op, arg, _ in pickletools.genops(dumped) if op.name in ("GLOBAL", "STACK_GLOBAL")]
    strings = [arg for op, arg, _ in pickletools.genops(dumped) if op.name.endswith("UNICODE")]
    assert "node.catalog" not in strings and "node.orders" not in strings and "consensus.state" not in strings
    assert all(not str(arg).startswith(("node", "consensus")) for arg in named)
    data = pickle.loads(dumped)
    assert data["format"] == 1 and data["state"] == machine.snapshot()


def test_a_snapshot_of_the_old_format_still_loads():
    """Snapshots written before the format was versioned held the pickled machine."""
    old = CatalogState()
    old.apply({"op": "seed", "books": BOOKS})
    data = pickle.loads(pickle.dumps({"machine": old, "index": 7}))
    state = offline_state()
    state._deserialize(data)
    assert state.applied_index == 7 and state.machine.snapshot() == old.snapshot()


def test_a_snapshot_from_a_newer_format_is_refused_with_a_clear_message():
    from bazar.consensus.state import SnapshotFormatError
    state = offline_state()
    with pytest.raises(SnapshotFormatError, match="newer than this Bazar reads"):
        state._deserialize({"format": 99, "index": 1, "state": {}})


def test_wait_for_returns_true_once_applied_from_another_thread():
    state = offline_state()
    commands = [{"op": "seed", "books": BOOKS}, {"op": "purchase", "id": 2, "order_id": "a"},
                {"op": "purchase", "id": 2, "order_id": "b"}]
    errors: list[BaseException] = []

    def applier():
        try:
            for command in commands:
                apply_like_pysyncobj(state, command)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    thread = threading.Thread(target=applier)
    # Hold the state's lock while starting the applier: it can only apply once this
    # thread is inside wait_for (which releases the lock), so the wake-up path is tested.
    with state.lock:
        thread.start()
        assert state.applied_index == 0
        assert state.wait_for(3, timeout=10) is True
        assert state.applied_index >= 3
    thread.join(10)
    assert not thread.is_alive() and errors == []
    assert state.machine.book(2)["stock"] == 1
    assert state.wait_for(2, timeout=0) is True  # already applied: no waiting


def test_wait_for_times_out():
    state = offline_state()
    apply_like_pysyncobj(state, {"op": "seed", "books": BOOKS})
    assert state.wait_for(2, timeout=0.05) is False
    assert state.wait_for(1, timeout=0.05) is True


# -- a real single-node Raft group ---------------------------------------------


def _shut_down(member: RaftMember) -> None:
    """close(), then wait for PySyncObj's tick thread so the journal and port are released."""
    member.close()
    thread = member.syncobj._SyncObj__thread
    if thread is not None:
        thread.join(10)
        assert not thread.is_alive(), "PySyncObj tick thread did not stop"


@pytest.fixture
def members():
    started: list[RaftMember] = []
    yield started
    for member in started:
        try:
            _shut_down(member)
        except Exception:  # already shut down by the test
            pass


def _member(address: str, data_dir, started: list) -> tuple[RaftMember, ReplicatedState, Recorder]:
    state = ReplicatedState(CatalogState())
    listener = Recorder()
    state.add_listener(listener)
    conf = syncobj_conf(RaftConfig(), data_dir, None, bind_address=address)
    member = RaftMember(address, [address], state, conf)
    started.append(member)
    return member, state, listener


def test_single_node_member_commits_and_recovers_from_journal(tmp_path, members):
    address = f"127.0.0.1:{free_ports(1)[0]}"
    data_dir = tmp_path / "catalog1"
    member, state, listener = _member(address, data_dir, members)

    assert member.submit({"op": "seed", "books": copy.deepcopy(BOOKS)}, timeout=15) == {"ok": True, "seeded": True}
    assert member.is_leader and member.leader == address
    assert member.submit({"op": "purchase", "id": 1, "order_id": "o1"}, timeout=5) == \
        {"ok": True, "id": 1, "title": "A", "price": 10.0}
    assert member.submit({"op": "purchase", "id": 1, "order_id": "o2"}, timeout=5) == \
        {"ok": False, "error": "out_of_stock", "id": 1}
    assert member.submit({"op": "update_book", "id": 2, "restock": 4, "request_id": "r1"}, timeout=5)["book"] \
        == {"id": 2, "title": "B", "topic": "t", "price": 2.5, "stock": 7}
    assert member.submit({"op": "purchase", "id": 1, "order_id": "o1"}, timeout=5)["ok"] is True  # retry

    indexes = [index for index, _, _ in listener.applied]
    assert indexes == sorted(set(indexes)) and len(indexes) == 5
    assert state.applied_index == indexes[-1] == member.status()["applied_index"]
    assert member.status()["role"] == "leader"
    assert member.wait_applied(indexes[-1], timeout=0) is True
    before, last_index = state.read(lambda m: m.snapshot())
    assert before["books"][1]["stock"] == 0 and before["books"][2]["stock"] == 7
    assert (data_dir / "journal.bin").exists()

    _shut_down(member)

    # A new member on the same data dir replays its journal.
    member2, state2, listener2 = _member(address, data_dir, members)
    assert member2.wait_applied(last_index, timeout=15) is True
    assert state2.read(lambda m: m.snapshot())[0] == before
    assert [command for _, command, _ in listener2.applied][:5] == [command for _, command, _ in listener.applied]
    # The recovered state still remembers applied order and request ids.
    assert member2.submit({"op": "purchase", "id": 1, "order_id": "o1"}, timeout=15) == \
        {"ok": True, "id": 1, "title": "A", "price": 10.0}
    assert member2.submit({"op": "update_book", "id": 2, "restock": 4, "request_id": "r1"}, timeout=5)["book"]["stock"] == 7
    assert member2.submit({"op": "seed", "books": BOOKS}, timeout=5) == {"ok": True, "seeded": False}
    assert state2.machine.book(2)["stock"] == 7
    assert state2.applied_index > last_index


def test_submit_without_quorum_raises_commit_error(tmp_path, members):
    """A member whose only peer is unreachable never leads: submit raises CommitError."""
    own, peer, other = free_ports(3)
    address = f"127.0.0.1:{own}"
    state = ReplicatedState(CatalogState())
    conf = syncobj_conf(RaftConfig(), tmp_path / "lonely", None, bind_address=address)
    member = RaftMember(address, [address, f"127.0.0.1:{peer}", f"127.0.0.1:{other}"], state, conf)
    members.append(member)
    with pytest.raises(CommitError) as excinfo:
        member.submit({"op": "seed", "books": BOOKS}, timeout=0.5)
    assert excinfo.value.reason in {"missing_leader", "timeout"}
    assert member.is_leader is False
    assert state.applied_index == 0
    assert state.machine.seeded is False


def _commit(state: ReplicatedState, command: dict, timeout: float = 15.0):
    """Commit through a bare SyncObj (retrying while it elects itself); the result."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, outcome = threading.Event(), []
        state.apply(command, callback=lambda result, error: (outcome.append((result, error)), done.set()))
        if done.wait(5) and outcome[0][1] == FAIL_REASON.SUCCESS:
            return outcome[0][0]
        time.sleep(0.05)
    raise AssertionError(f"{command} did not commit")


def test_a_snapshot_written_before_the_membership_directory_existed_still_loads(tmp_path, members):
    """Replicas used to run one consumer (the state); now the directory is a second one.
    A snapshot holding data for the first only must restore the state, and leave the
    directory as the cluster file starts it."""
    address = f"127.0.0.1:{free_ports(1)[0]}"
    data_dir = tmp_path / "catalog1"
    raft = RaftConfig(compaction_period=1.0)  # this member's compaction window comes every second
    state = ReplicatedState(CatalogState())
    old = SyncObj(address, [], conf=syncobj_conf(raft, data_dir, None, bind_address=address, group_size=1),
                  consumers=[state])  # the consumers of a replica before the directory
    try:
        _commit(state, {"op": "seed", "books": copy.deepcopy(BOOKS)})
        assert _commit(state, {"op": "purchase", "id": 1, "order_id": "o1"})["ok"] is True
        snapshot = data_dir / "snapshot.bin"
        deadline = time.monotonic() + 15
        while not snapshot.exists() and time.monotonic() < deadline:
            old.forceLogCompaction()
            time.sleep(0.1)
        assert snapshot.exists(), "the old-layout member never wrote a snapshot"
        _commit(state, {"op": "purchase", "id": 2, "order_id": "o2"})  # an entry after the snapshot
    finally:
        old.destroy_synchronous()

    conf = syncobj_conf(raft, data_dir, None, bind_address=address, group_size=1)
    directory = Directory({"catalog1": {"raft": address, "http": "http://127.0.0.1:1"}})
    new_state = ReplicatedState(CatalogState())
    member = RaftMember(address, [address], new_state, conf, directory)
    members.append(member)
    assert member.wait_applied(state.applied_index, timeout=15)
    stock = new_state.read(lambda m: (m.books[1]["stock"], m.books[2]["stock"]))[0]
    assert stock == (0, 2), "the state restored from the old snapshot and journal is wrong"
    assert member.directory.view()["members"] == [
        {"id": "catalog1", "raft": address, "http": "http://127.0.0.1:1"}]
