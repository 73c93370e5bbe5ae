"""The HTTP routes every replica has, whatever its group: health, status, members, state, backup."""
from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from flask import Flask, g, jsonify, request

from bazar.cluster.config import ClusterConfig, ConfigError, NodeConfig, address
from bazar import __version__
from bazar.consensus import SNAPSHOT_FORMAT, CommitError, MembershipRefused, RaftMember, ReadRefused
from bazar.node.validation import NODE_ID, fields_of
from bazar.node.wire import to_wire
from bazar.web import errors, metrics
from bazar.web.errors import ApiError, BadRequest, json_body, unavailable
from bazar.web.protocol import ANSWER_SIGNATURE_HEADER, INDEX_HEADER, LEADER_HEADER, MEMBERS_HEADER, NONCE_HEADER
from bazar.web.signing import Refused, Verifier, answer_key, signing_key

# The only routes open to anyone: liveness (for a container's HEALTHCHECK, which holds no
# secret) and metrics (for a Prometheus that holds none). They show nothing private.
PUBLIC_ROUTES = frozenset({"/healthz", "/metrics"})
# A majority answers a heartbeat within milliseconds; a leader that cannot confirm its
# leadership in this time is cut off or deposed, and the client should ask another
# replica (the frontend gives one replica 0.8-1 s per read attempt).
READ_CONFIRM_SECONDS = 0.5


class Replica:
    """What a replica's routes need: who it is, its Raft member, and the cluster."""

    def __init__(self, config: ClusterConfig, node: NodeConfig, member: RaftMember, service) -> None:
        self.config = config
        self.node = node
        self.member = member
        secret = config.secret()
        # Every other route is for Bazar's own processes, which sign their requests
        # (web/signing.py). No secret at all is allowed only on loopback (consensus.security).
        # Its own advertised address is the destination its peers sign (web/signing.py), and
        # the one it signs its answers as.
        self.verifier = (Verifier(signing_key(secret), str(node.http), answer_key=answer_key(secret))
                         if secret else None)
        # How far behind its leader this replica's state may be for local reads (and for
        # naming that leader to clients): the same bound the frontend's cache lives by.
        self.max_lag = config.cache.max_follower_lag
        self.service = service  # the group's behaviour (node/catalog/service.py, node/orders/service.py)
        self.metrics = metrics.Metrics()
        self.raft_metrics = metrics.RaftMetrics(self.metrics, node.group, member)
        member.on_fsync(self.raft_metrics.fsync_duration.observe)

    def serving(self) -> bool:
        """True once the group's start-up work is done (the catalog's seed)."""
        return self.service.serving(self)

    @property
    def state(self):
        return self.member.state

    def leader_url(self) -> str | None:
        """The leader's HTTP address, while this replica is in touch with it; else None,
        so clients forget a leader this replica can no longer vouch for."""
        if not self.member.in_touch(self.max_lag):
            return None
        return self.member.directory.http_of(self.member.leader or "")

    def commit(self, command, first: tuple = ()) -> dict:
        """Commit a typed command; a failure to commit is answered 503 with Retry-After.
        `first`: (command, on_done) pairs nobody waits for, as `commit_nowait` takes them,
        proposed just before it in the same round."""
        started = time.perf_counter()
        try:
            result = self.member.submit(to_wire(command), self.config.raft.commit_timeout, self._nowait(first))
        except CommitError as exc:
            self.raft_metrics.commit_failed(exc.reason)
            message = ("the cluster could not commit the write (no quorum or no leader); "
                       "it was not applied" if exc.definite else
                       "the cluster did not confirm the write in time; it may still be applied")
            raise unavailable(message) from None
        self.raft_metrics.commit_duration.observe(time.perf_counter() - started)
        return result

    def commit_many(self, commands: list, first: tuple = ()) -> list[dict | None]:
        """Commit typed commands together (`RaftMember.submit_many`: one round under group
        commit), after `first` (as in `commit`): per command, what it applied to, or None if
        it was not confirmed in time (it may still apply later; every command is safe to
        apply twice)."""
        started = time.perf_counter()
        answers = self.member.submit_many([to_wire(c) for c in commands], self.config.raft.commit_timeout,
                                          self._nowait(first))
        elapsed = time.perf_counter() - started
        for applied, _ in answers:
            if applied:
                self.raft_metrics.commit_duration.observe(elapsed)
            else:
                self.raft_metrics.commit_failed("timeout")
        return [result if applied else None for applied, result in answers]

    def commit_nowait(self, command, on_done=None) -> None:
        """Propose a typed command and return at once, for a write nobody waits for (a
        purchase's `finish`); `on_done(result, ok)` is called on the Raft tick thread when
        it is applied (ok True) or refused (ok False), and must not block. It may never be
        called (the leader lost its role with the entry uncommitted): the caller must not
        depend on it. Timed like `commit` when it applies."""
        self.commit_nowait_many([(command, on_done)])

    def commit_nowait_many(self, pairs) -> None:
        """`commit_nowait` for several (typed command, on_done) pairs, proposed together
        (one round under group commit)."""
        self.member.submit_nowait_many(self._nowait(pairs))

    def _nowait(self, pairs) -> list:
        """(typed command, on_done or None) pairs as the member takes them, timed."""
        started = time.perf_counter()
        timed = []
        for command, on_done in pairs:
            def done(result, ok: bool, on_done=on_done) -> None:
                if ok:
                    self.raft_metrics.commit_duration.observe(time.perf_counter() - started)
                else:
                    self.raft_metrics.commit_failed("refused")
                if on_done is not None:
                    on_done(result, ok)
            timed.append((to_wire(command), done))
        return timed

    def change_membership(self, change: dict) -> dict:
        """Add or remove a member (see `RaftMember.change_membership`): the new directory, or
        409 (another change in flight, or no majority would be left), 404 (no such member),
        503 (not the leader, or the change did not commit in time: run it again)."""
        try:
            return self.member.change_membership(change, self.config.raft.commit_timeout)
        except MembershipRefused as exc:
            if exc.kind == "not_leader":
                raise unavailable(exc.reason) from None
            raise ApiError(404 if exc.kind == "unknown" else 409, exc.reason) from None
        except CommitError as exc:
            raise unavailable(f"the membership change did not commit ({exc.reason}); run it again "
                              f"(a change is safe to repeat)") from None

    def read_local(self, query, *args):
        """Run `query` on this replica's applied state: (result, index).

        Checked on every read: refused (503 + Retry-After) while the replica replays its
        journal after a start (it passes through old states), and whenever its state may
        be more than `max_lag` seconds behind its leader's (it lost touch, or has not
        applied what the leader announced); served again once it has caught up.
        """
        if not self.member.has_caught_up or not self.member.in_touch(self.max_lag):
            raise unavailable(f"this replica is not in touch with its leader (or still catching "
                              f"up), so its state may be more than {self.max_lag:g} s old")
        return self.state.read(query, *args)

    def read_strong(self, query, *args):
        """Run `query` on a state that includes every write acknowledged before this call
        (linearizable): (result, index). Appends nothing to the log.

        Only the leader can serve it (Raft's read index, `RaftMember.read_index`): a
        follower, a deposed leader or one cut off from the majority answers 503 with
        Retry-After and, when it knows one, the leader in `X-Bazar-Leader`.
        """
        try:
            self.member.read_index(READ_CONFIRM_SECONDS)
        except ReadRefused as exc:
            raise unavailable(f"this replica cannot serve a strong read: {exc}; ask the leader") from None
        return self.state.read(query, *args)

    def read(self, query, *args, strong: bool = False):
        """`read_strong` or `read_local`, as the request asked."""
        return self.read_strong(query, *args) if strong else self.read_local(query, *args)

    def require_peer(self) -> None:
        """Refuse (403) a request that a holder of the cluster secret did not sign. Called
        once per request, for every route but PUBLIC_ROUTES, by `create_app`'s hook: a
        second call would take the request's own nonce for a replay."""
        if self.verifier is None:
            return
        try:
            self.verifier.verify(request.method, request.path + _query(), request.headers,
                                 request.get_data(cache=True))
        except Refused as exc:
            raise ApiError(403, str(exc)) from None
        g.verified_nonce = request.headers[NONCE_HEADER]

    def sign_answer(self, response) -> None:
        """Sign `response`, the whole answer to the request being served, if that request
        was verified (`require_peer`): its sender believes nothing of it otherwise
        (web/signing.py). Answers to public routes and refusals go unsigned."""
        nonce = g.get("verified_nonce")
        if nonce is None or self.verifier is None:
            return
        response.headers[ANSWER_SIGNATURE_HEADER] = self.verifier.sign_answer(
            nonce, response.status_code, response.headers, response.get_data())


def _query() -> str:
    query = request.query_string.decode("latin-1")
    return f"?{query}" if query else ""


def strong_requested() -> bool:
    """The request's `?consistency=local|strong` (default local) as a flag; 400 otherwise."""
    consistency = request.args.get("consistency", "local")
    if consistency not in ("local", "strong"):
        raise ApiError(400, "consistency must be local or strong on a replica")
    return consistency == "strong"


def membership_change(body: Any) -> dict:
    """A membership change as `RaftMember.change_membership` takes it, from a JSON body:
    {"op": "add", "id", "raft": "host:port", "http": "host:port"} or
    {"op": "remove", "id", "raft": "host:port"}."""
    fields = fields_of(body, {"op", "id", "raft", "http"})
    op = fields.get("op")
    if op not in ("add", "remove"):
        raise BadRequest("op must be add or remove")
    node_id = fields.get("id")
    if not isinstance(node_id, str) or not NODE_ID.fullmatch(node_id):
        raise BadRequest("id must be 1-64 letters, digits, '-' or '_'")
    wanted = ("raft", "http") if op == "add" else ("raft",)
    try:
        addresses = {key: address(fields.get(key), key) for key in wanted}
    except ConfigError as exc:
        raise BadRequest(str(exc)) from None
    change = {"op": op, "id": node_id, "raft": str(addresses["raft"])}
    if op == "add":
        change["http"] = addresses["http"].url
    return change


class ReplicaApp(Flask):
    """A replica's Flask app: every answer to a verified request leaves signed.

    Signed in `process_response`, after every `after_request` hook (this module's and any a
    service adds) has set its headers, so the signature covers the answer as sent; it runs
    for error answers too (ApiError, 404, a 500)."""

    replica: "Replica"

    def process_response(self, response):
        response = super().process_response(response)
        self.replica.sign_answer(response)
        return response


def create_app(replica: Replica) -> Flask:
    """A Flask app with the routes common to all replicas."""
    app = ReplicaApp(f"bazar.{replica.node.id}")
    app.replica = replica
    errors.install(app)
    metrics.instrument(app, replica.metrics)

    @app.before_request
    def _only_bazar():
        if request.path not in PUBLIC_ROUTES:
            replica.require_peer()

    @app.after_request
    def _raft_headers(response):
        leader = replica.leader_url()
        if leader:
            response.headers[LEADER_HEADER] = leader
        response.headers.setdefault(INDEX_HEADER, str(replica.state.applied_index))
        response.headers[MEMBERS_HEADER] = str(replica.member.directory.changed_index)
        return response

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok", id=replica.node.id, version=__version__)

    @app.get("/status")
    def status():
        return jsonify(id=replica.node.id, group=replica.node.group, http=replica.node.http.url,
                       raft_address=str(replica.node.raft), serving=replica.serving(),
                       commits=replica.raft_metrics.commits(), **replica.member.status())

    @app.get("/members")
    def members():
        """The group's members by id with their Raft and HTTP addresses, as the log has them."""
        return jsonify(replica.member.directory.view())

    @app.post("/members")
    def change_members():
        """Add or remove one member (`bazar member add|remove`); only the leader does it."""
        return jsonify(replica.change_membership(membership_change(json_body(request))))

    @app.get("/state")
    def state():
        """The whole replicated state (the machine's `view`) and the digest of its snapshot,
        for consistency checks: replicas with equal digests hold equal states."""
        (snapshot, view), index = replica.state.read(lambda m: (m.snapshot(), m.view()))
        return jsonify(id=replica.node.id, applied_index=index, digest=digest(snapshot), state=view)

    @app.get("/backup")
    def backup():
        """The group's whole state read at a committed index on its leader (a read index:
        nothing is appended to the log), as plain data, for `bazar backup` (node/backup.py)."""
        snapshot, index = replica.read_strong(lambda m: m.snapshot())
        return jsonify(group=replica.node.group, id=replica.node.id, index=index,
                       term=replica.member.status()["term"], snapshot_format=SNAPSHOT_FORMAT,
                       digest=digest(snapshot), state=to_json(snapshot))

    return app


def to_json(value):
    """Plain JSON-able data (dict keys become strings, tuples lists)."""
    return json.loads(json.dumps(value, default=list))


def digest(snapshot: dict) -> str:
    """A short fingerprint of a state: equal states have equal digests."""
    canonical = json.dumps(to_json(snapshot), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
