"""The HTTP routes every replica has, whatever its group: health, status, state."""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import time

from flask import Flask, jsonify, request

from bazar.cluster.config import ClusterConfig, NodeConfig
from bazar.consensus import CommitError, RaftMember, ReadRefused
from bazar.node.commands import to_wire
from bazar import __version__
from bazar.web import errors, metrics
from bazar.web.errors import ApiError, unavailable
from bazar.web.protocol import INDEX_HEADER, LEADER_HEADER, SECRET_HEADER
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
        self.http_by_raft = {str(n.raft): n.http.url for n in config.group(node.group)}
        self.secret = config.secret()
        self.admin_token = config.admin_token()
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
        return self.http_by_raft.get(self.member.leader or "")

    def commit(self, command) -> dict:
        """Commit a typed command; a failure to commit is answered 503 with Retry-After."""
        started = time.perf_counter()
        try:
            result = self.member.submit(to_wire(command), self.config.raft.commit_timeout)
        except CommitError as exc:
            self.raft_metrics.commit_failed(exc.reason)
            message = ("the cluster could not commit the write (no quorum or no leader); "
                       "it was not applied" if exc.definite else
                       "the cluster did not confirm the write in time; it may still be applied")
            raise unavailable(message) from None
        self.raft_metrics.commit_duration.observe(time.perf_counter() - started)
        return result

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

    def require_admin(self) -> None:
        """Admin writes need `Authorization: Bearer <token>` when a token is configured."""
        if self.admin_token is None:
            return
        supplied = request.headers.get("Authorization", "")
        if not hmac.compare_digest(supplied.encode(), f"Bearer {self.admin_token}".encode()):
            raise ApiError(401, "admin token required (Authorization: Bearer ...)",
                           {"WWW-Authenticate": "Bearer"})

    def require_peer(self) -> None:
        """Routes for other Bazar processes only need the cluster secret when one is set."""
        if self.secret is None:
            return
        supplied = request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(supplied.encode(), self.secret.encode()):
            raise ApiError(403, "this route is for Bazar's own processes")


def strong_requested() -> bool:
    """The request's `?consistency=local|strong` (default local) as a flag; 400 otherwise."""
    consistency = request.args.get("consistency", "local")
    if consistency not in ("local", "strong"):
        raise ApiError(400, "consistency must be local or strong on a replica")
    return consistency == "strong"


def create_app(replica: Replica) -> Flask:
    """A Flask app with the routes common to all replicas."""
    app = Flask(f"bazar.{replica.node.id}")
    errors.install(app)
    metrics.instrument(app, replica.metrics)

    @app.after_request
    def _raft_headers(response):
        leader = replica.leader_url()
        if leader:
            response.headers[LEADER_HEADER] = leader
        response.headers.setdefault(INDEX_HEADER, str(replica.state.applied_index))
        return response

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok", id=replica.node.id, pid=os.getpid(), version=__version__)

    @app.get("/status")
    def status():
        return jsonify(id=replica.node.id, group=replica.node.group, http=replica.node.http.url,
                       raft_address=str(replica.node.raft), serving=replica.serving(),
                       commits=replica.raft_metrics.commits(), **replica.member.status())

    @app.get("/state")
    def state():
        """The whole replicated state (the machine's `view`) and the digest of its snapshot,
        for consistency checks: replicas with equal digests hold equal states."""
        replica.require_peer()
        (snapshot, view), index = replica.state.read(lambda m: (m.snapshot(), m.view()))
        return jsonify(id=replica.node.id, applied_index=index, digest=digest(snapshot), state=view)

    return app


def to_json(value):
    """Plain JSON-able data (dict keys become strings, tuples lists)."""
    return json.loads(json.dumps(value, default=list))


def digest(snapshot: dict) -> str:
    """A short fingerprint of a state: equal states have equal digests."""
    canonical = json.dumps(to_json(snapshot), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
