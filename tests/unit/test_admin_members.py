"""The admin client (web/admin.py) follows the membership a group's replicas announce,
against fake replicas on loopback: a cluster file that names only replicas a group has
left still finds its leader, and only a listing the group itself gave is believed."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from bazar.cluster.config import load
from bazar.web.admin import Admin
from bazar.web.protocol import ANSWER_SIGNATURE_HEADER, MEMBERS_HEADER, NONCE_HEADER
from bazar.web.signing import answer_key, sign_answer

SECRET = "the admin's cluster secret, 32 bytes or more"


class FakeReplica:
    """One replica's /status, /members and /backup, as the test sets them."""

    def __init__(self, node_id: str, group: str, role: str = "follower") -> None:
        self.id, self.group, self.role = node_id, group, role
        self.members: tuple[int, list["FakeReplica"]] | None = None  # (changed_index, members) announced
        self.listing: bytes | None = None  # a /members body to send instead of `members`
        self.signs_with: str | None = None  # the secret whose answer key signs its answers, if any
        self.hits: list[str] = []
        replica = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                replica.hits.append(self.path)
                status, body = 200, replica.answer(self.path)
                if body is None:
                    status, body = 404, b"{}"
                self.send_response(status)
                announced = str(replica.members[0] if replica.members else 0)
                self.send_header(MEMBERS_HEADER, announced)
                self.send_header("Content-Type", "application/json")
                if replica.signs_with is not None:
                    answered = {MEMBERS_HEADER: announced, "Content-Type": "application/json"}
                    self.send_header(ANSWER_SIGNATURE_HEADER, sign_answer(
                        answer_key(replica.signs_with), replica.http, self.headers.get(NONCE_HEADER, ""),
                        status, answered, body))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.http = f"127.0.0.1:{self.port}"
        self.raft = f"127.0.0.2:{self.port}"  # never dialled: only reported
        threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://{self.http}"

    def answer(self, path: str) -> bytes | None:
        if path == "/status":
            return json.dumps({"id": self.id, "group": self.group, "role": self.role, "term": 3,
                               "commit_index": 10, "applied_index": 10, "has_quorum": True,
                               "serving": True, "leader": None}).encode()
        if path == "/members" and self.listing is not None:
            return self.listing
        if path == "/members" and self.members is not None:
            index, members = self.members
            return json.dumps({"changed_index": index, "members": [
                {"id": m.id, "raft": m.raft, "http": m.url} for m in members]}).encode()
        if path == "/backup" and self.role == "leader":
            return json.dumps({"group": self.group, "id": self.id}).encode()
        return None

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fakes():
    started: list[FakeReplica] = []

    def make(node_id: str, group: str, role: str = "follower") -> FakeReplica:
        started.append(FakeReplica(node_id, group, role))
        return started[-1]

    yield make
    for replica in started:
        if replica.server.socket.fileno() != -1:
            replica.stop()


def admin_for(tmp_path, catalog: list[FakeReplica], order: list[FakeReplica], secret: str = "",
              **options) -> Admin:
    """An Admin whose cluster file names these replicas only (with `secret`, it checks their
    answers' signatures; by default it has none, and checks nothing)."""
    def entries(replicas):
        return [{"id": r.id, "raft": r.raft, "http": r.http} for r in replicas]

    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump({"data_dir": "data", "catalog": entries(catalog), "order": entries(order),
                                    "frontends": [{"id": "frontend1", "http": "127.0.0.1:1"}]}))
    return Admin(load(path), secret=secret, **options)


def test_collect_follows_a_group_that_moved_to_replicas_the_file_does_not_name(tmp_path, fakes):
    old, order1 = fakes("catalog1", "catalog"), fakes("order1", "order", "leader")
    new4, new5 = fakes("catalog4", "catalog", "leader"), fakes("catalog5", "catalog")
    old.members = (7, [old, new4, new5])      # old still listed at 7: it had not applied its removal
    new4.members = new5.members = (9, [new4, new5])
    admin = admin_for(tmp_path, [old], [order1])

    groups = admin.collect()
    catalog = groups["catalog"]
    assert catalog["leader"] == "catalog4" and catalog["has_quorum"] and catalog["serving"]
    assert [(n["id"], n.get("role"), n["http"], n["raft"]) for n in catalog["nodes"]] == [
        ("catalog4", "leader", new4.url, new4.raft), ("catalog5", "follower", new5.url, new5.raft)]
    assert groups["order"]["leader"] == "order1" and [n["id"] for n in groups["order"]["nodes"]] == ["order1"]
    assert "/members" not in order1.hits, "a group that announced no change was asked for its members"


def test_leader_and_backup_reach_a_leader_known_only_from_the_log(tmp_path, fakes):
    old, order1 = fakes("catalog1", "catalog"), fakes("order1", "order", "leader")
    new4 = fakes("catalog4", "catalog", "leader")
    old.members = new4.members = (5, [new4])
    admin = admin_for(tmp_path, [old], [order1])

    assert admin.leader("catalog") == "catalog4"
    assert admin.backup("catalog4") == {"group": "catalog", "id": "catalog4"}
    assert [n.id for n in admin.members("catalog")] == ["catalog4"]


def test_an_older_listing_never_replaces_a_newer_one(tmp_path, fakes):
    a, b, order1 = fakes("catalog1", "catalog"), fakes("catalog2", "catalog", "leader"), fakes("order1", "order")
    a.members = (3, [a, b])
    b.members = (8, [b])
    admin = admin_for(tmp_path, [a], [order1])
    admin.collect()
    assert [n.id for n in admin.members("catalog")] == ["catalog2"]
    a.members = (3, [a, b])   # a replica behind the log still announces 3
    assert [n["id"] for n in admin.collect()["catalog"]["nodes"]] == ["catalog2"]
    assert a.hits.count("/members") == 1, "a listing no newer than the known one was fetched"


def test_only_a_replica_of_the_group_tells_its_members(tmp_path, fakes):
    """A catalog address answered by an order replica (a stale file, a reused port) must not
    make the admin believe the order group's listing is the catalog's."""
    stranger, order1 = fakes("order7", "order", "leader"), fakes("order1", "order", "leader")
    other = fakes("order8", "order")
    stranger.members = (4, [stranger, other])
    admin = admin_for(tmp_path, [stranger], [order1])  # the file says it is a catalog replica
    admin.collect()
    assert [n.id for n in admin.members("catalog")] == [stranger.id]
    assert admin.members("order")[0].id == "order1" and "/members" not in stranger.hits


def test_a_malformed_listing_is_ignored(tmp_path, fakes):
    a, order1 = fakes("catalog1", "catalog", "leader"), fakes("order1", "order", "leader")
    a.members = (4, [a])
    for body in (b"not json", b'{"changed_index": 4}', b'{"changed_index": "4", "members": []}',
                 b'{"changed_index": 4, "members": [{"id": "x", "raft": "127.0.0.1:1", "http": "ftp://h:1"}]}',
                 b'{"changed_index": 4, "members": []}'):
        a.listing = body
        admin = admin_for(tmp_path, [a], [order1])
        assert admin.collect()["catalog"]["leader"] == "catalog1", body
        assert [n.id for n in admin.members("catalog")] == ["catalog1"], body


def test_also_ask_finds_a_group_whose_file_replicas_are_all_gone(tmp_path, fakes):
    """A frontend passes where its clients call each group: they followed the log while the
    admin was not asked, so it finds the group there. Those addresses are only asked, never
    reported: the members are what the group's own listing says."""
    old, order1 = fakes("catalog1", "catalog"), fakes("order1", "order", "leader")
    new4, new5 = fakes("catalog4", "catalog", "leader"), fakes("catalog5", "catalog")
    new4.members = new5.members = (9, [new4])  # catalog5 was added, then removed again
    old.stop()
    seen = {"catalog": [new5.url], "order": []}
    admin = admin_for(tmp_path, [old], [order1], also_ask=lambda group: seen[group])

    catalog = admin.collect()["catalog"]
    assert catalog["leader"] == "catalog4" and [n["id"] for n in catalog["nodes"]] == ["catalog4"]
    assert catalog["has_quorum"]


@pytest.mark.parametrize("forger_key", [None, "another cluster's secret, 32 bytes long"])
def test_an_answer_not_signed_by_its_replica_is_never_believed(tmp_path, fakes, caplog, forger_key):
    """A man in the middle answers for catalog2 and for the order group's leader: a listing
    that moves the catalog group to a server of his own, a leadership, a backup of his own.
    The admin takes none of it: those replicas are reported unreachable, the group keeps the
    members its file names, the stranger is never asked, and no backup is returned."""
    honest, forger = fakes("catalog1", "catalog", "leader"), fakes("catalog2", "catalog")
    order_forger, stranger = fakes("order1", "order", "leader"), fakes("evil9", "catalog", "leader")
    for replica in (honest, forger, order_forger, stranger):
        replica.signs_with = SECRET
    forger.signs_with = order_forger.signs_with = forger_key
    forger.members = (9, [stranger])
    admin = admin_for(tmp_path, [honest, forger], [order_forger], secret=SECRET)

    with caplog.at_level("WARNING", logger="bazar.admin"):
        groups = admin.collect()
        assert admin.backup("order1") is None
    assert [(n["id"], n["reachable"]) for n in groups["catalog"]["nodes"]] == [("catalog1", True),
                                                                             ("catalog2", False)]
    assert [n.id for n in admin.members("catalog")] == ["catalog1", "catalog2"]
    assert stranger.hits == []
    assert groups["order"]["leader"] is None and admin.leader("order") is None
    assert any(forger.url in r.getMessage() for r in caplog.records)


def test_signed_answers_are_believed(tmp_path, fakes):
    """The same admin follows a listing, a leader and a backup its replicas sign."""
    old, order1 = fakes("catalog1", "catalog"), fakes("order1", "order", "leader")
    new4 = fakes("catalog4", "catalog", "leader")
    old.members = new4.members = (5, [new4])
    for replica in (old, order1, new4):
        replica.signs_with = SECRET
    admin = admin_for(tmp_path, [old], [order1], secret=SECRET)
    assert admin.leader("catalog") == "catalog4"
    assert admin.backup("catalog4") == {"group": "catalog", "id": "catalog4"}
    assert admin.leader("order") == "order1"
