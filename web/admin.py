"""Bazar's own look inside a running cluster: each replica's /status and /state.

One client for everything that watches replicas: `bazar status`, the frontend's
/cluster and /readyz, the local cluster runner, chaos, bench and the tests. It
talks to replicas directly (never through a frontend), signs its requests
(web/signing.py), and never raises for a replica that does not answer: a
replica that is down, paused or cut off is simply reported as unreachable (None).

What it reads:
- `/status`: role, term, leader, commit and applied index, quorum, `serving`.
- `/state`: the replicated state as the state machine's `view()` (plain JSON with
  named fields, stable across snapshot formats) and its digest; equal digests mean
  equal states.
- `/backup`: on a group's leader, the state as its snapshot holds it, read at a
  committed index (`bazar backup`).

Membership: a group's replicas are the cluster file's only until the group changes
(`bazar member add|remove`). Every replica answer carries `X-Bazar-Members`, the log
index of the last change the replica applied; on a newer one than it knows, the admin
fetches that replica's `GET /members` (parsed as web/client.py parses it) and from then
on reports, and asks, exactly the members listed there. So `bazar status`, `bazar backup`
and a frontend's /readyz find a group that moved to replicas its file does not name, as
long as one replica it can reach knows (a replica that has left still does, until it is
stopped). Only a listing from a replica whose /status says it belongs to that group is
believed, and only a newer one than the last: the members never point outside what the
group itself recorded. A frontend also asks where its own clients call each group
(`also_ask`): they follow the log on every request, while the admin is asked only now
and then.

Every answer is checked before it is believed: a replica signs its answer to each signed
request (web/signing.py), and an answer without that signature (forged or altered on
the way, replayed, another replica's) counts as no answer at all: the replica is reported
unreachable, its /members listing and its /backup are not taken, and a warning is logged
(at most once per `COMPLAINT_SECONDS` per replica).
"""
from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable

import urllib3
from urllib3.exceptions import HTTPError

from bazar.cluster.config import GROUPS, ClusterConfig, NodeConfig, address
from bazar.web.client import Complaints, announces_newer, origin, parse_members, unsigned_message
from bazar.web.signing import Signer

log = logging.getLogger("bazar.admin")

STATUS_TIMEOUT = 0.5  # a replica that takes longer is paused, cut off or overloaded
STATE_TIMEOUT = 5.0   # a whole state can be large
BACKUP_TIMEOUT = 60.0  # a whole state read on a leader that serves its load meanwhile
# collect() asks the members it knows, then those their listings name: a replica behind the
# log may list members that know a newer listing still, whose new members a third round asks.
MEMBERSHIP_ROUNDS = 3


class Admin:
    """Ask the replicas of `config` how they are. `secret`: the cluster secret to send
    (by default the one this process is given, `config.secret()`). `also_ask(group)`: more
    HTTP base URLs where `group`'s replicas may be found (a frontend's clients' own), asked
    to learn the membership, never reported unless the group lists them."""

    def __init__(self, config: ClusterConfig, secret: str | None = None,
                 also_ask: Callable[[str], Iterable[str]] | None = None) -> None:
        self.config = config
        self.signer = Signer(secret if secret is not None else config.secret())
        self.also_ask = also_ask
        # Each group's members: (the log index of the change they reflect, 0 for the file's; nodes).
        self._members = {group: (0, config.group(group)) for group in GROUPS}
        self._members_lock = threading.Lock()
        # Thread-safe (the frontend's request threads share one Admin, and collect() asks every
        # replica at once), keep-alive, and never through a proxy: replicas are reached directly.
        self._pool = urllib3.PoolManager(maxsize=4, block=False, retries=False)
        self._complaints = Complaints(log)

    def members(self, group: str) -> tuple[NodeConfig, ...]:
        """The replicas of `group`, as the newest listing this admin has seen has them (the
        cluster file's until a replica announced a change)."""
        return self._members[group][1]

    def status(self, node: str | NodeConfig, timeout: float = STATUS_TIMEOUT) -> dict | None:
        """The replica's GET /status, or None if it does not answer in time. Follows the
        membership change the answer announces, if it is news."""
        node = self._node(node)
        return self._status_at(node.group, node.http.url, timeout)

    def state(self, node: str | NodeConfig, timeout: float = STATE_TIMEOUT) -> dict | None:
        """The replica's GET /state (`id`, `applied_index`, `digest`, `state`), or None."""
        return self._get(node, "/state", timeout)

    def backup(self, node: str | NodeConfig, timeout: float = BACKUP_TIMEOUT) -> dict | None:
        """The replica's GET /backup (its group's state at a committed index; the leader
        alone answers), or None."""
        return self._get(node, "/backup", timeout)

    def states(self, group: str, nodes: Iterable[str] | None = None,
               timeout: float = STATE_TIMEOUT) -> dict[str, dict]:
        """/state of every replica of `group` (or of `nodes`) that answers, by node id."""
        wanted = [n.id for n in self.members(group)] if nodes is None else list(nodes)
        found = {}
        for node_id in wanted:
            state = self.state(node_id, timeout)
            if state is not None:
                found[node_id] = state
        return found

    def leader(self, group: str, among: Iterable[str] | None = None) -> str | None:
        """The replica of `group` (or of `among`) that says it leads, in the highest term."""
        if among is None:
            reports = self.survey(group)
        else:
            reports = [self._report(node, self.status(node)) for node in map(self._node, among)]
        return leader_in(reports)

    def survey(self, group: str) -> list[dict]:
        """A report on every member of `group`, all asked at once: id, `reachable` and, for
        those that answer, their role, term, indexes and quorum (as `collect` gives them)."""
        return self._survey((group,))[group]

    def collect(self) -> dict:
        """Each group's replicas (role, term, commit and applied index, reachable) and leader."""
        groups = {}
        for name, members in self._survey(GROUPS).items():
            leaders = [m["id"] for m in members if m.get("role") == "leader"]
            reachable = sum(1 for m in members if m["reachable"])
            leader = next((m for m in members if m["id"] == leaders[0]), {}) if len(leaders) == 1 else {}
            groups[name] = {
                "leader": leader.get("id"),
                "has_quorum": bool(leader.get("has_quorum")) and reachable > len(members) // 2,
                "serving": bool(leader.get("serving")),
                "nodes": members,
            }
        return groups

    # -- membership -------------------------------------------------------------

    def _survey(self, groups: Iterable[str]) -> dict[str, list[dict]]:
        """A report on every member of `groups`, all asked at once; the members an answer
        announced are asked in the next round (MEMBERSHIP_ROUNDS at most)."""
        answers: dict[tuple[str, str], dict | None] = {}
        for _ in range(MEMBERSHIP_ROUNDS):
            wanted = [(group, url) for group in groups for url in self._where_to_ask(group)
                      if (group, url) not in answers]
            if not wanted:
                break
            with ThreadPoolExecutor(max_workers=len(wanted)) as pool:
                answers.update(zip(wanted, pool.map(lambda asked: self._status_at(*asked), wanted)))
        return {group: [self._report(node, answers.get((group, node.http.url))) for node in self.members(group)]
                for group in groups}

    def _where_to_ask(self, group: str) -> list[str]:
        """The group's members' URLs, then any more `also_ask` names (once each)."""
        urls = [node.http.url for node in self.members(group)]
        extra = self.also_ask(group) if self.also_ask is not None else ()
        return list(dict.fromkeys([*urls, *extra]))

    def _status_at(self, group: str, url: str, timeout: float = STATUS_TIMEOUT) -> dict | None:
        """GET /status at `url`, a replica of `group` as far as this admin knows; None if it
        does not answer, or says it belongs to another group. Follows the membership change
        the answer announces."""
        response = self._request(url + "/status", timeout)
        status = _json(response)
        if not isinstance(status, dict) or status.get("group") != group:
            return None
        self._follow(group, url, response.headers)
        return status

    def _follow(self, group: str, url: str, headers) -> None:
        """If the answer from `url` (of `group`) announces a newer membership change than this
        admin knows, fetch the members that replica lists and take them as the group's."""
        if not announces_newer(headers, self._members[group][0]):
            return
        response = self._request(url + "/members", STATUS_TIMEOUT)
        try:
            index, listed = parse_members(response.data if response is not None else b"")
            nodes = tuple(_listed_node(group, member) for member in listed)
        except ValueError:
            log.warning("%s announced a membership change but its /members could not be read", url)
            return
        with self._members_lock:
            if index > self._members[group][0]:
                self._members[group] = (index, nodes)

    def _node(self, node: str | NodeConfig) -> NodeConfig:
        """A replica by id: a member as this admin knows the groups, else the file's."""
        if isinstance(node, NodeConfig):
            return node
        for group in GROUPS:
            for member in self.members(group):
                if member.id == node:
                    return member
        return self.config.node(node)

    @staticmethod
    def _report(node: NodeConfig, status: dict | None) -> dict:
        report = {"id": node.id, "group": node.group, "http": node.http.url, "raft": str(node.raft)}
        if status is None:
            return {**report, "reachable": False}
        return {**report, "reachable": True, "role": status["role"], "term": status["term"],
                "commit_index": status["commit_index"], "applied_index": status["applied_index"],
                "has_quorum": status["has_quorum"], "serving": status.get("serving", True),
                "commits": status.get("commits")}

    # -- HTTP -------------------------------------------------------------------

    def _get(self, node: str | NodeConfig, path: str, timeout: float) -> dict | None:
        return _json(self._request(self._node(node).http.url + path, timeout))

    def _request(self, url: str, timeout: float) -> urllib3.BaseHTTPResponse | None:
        """The replica's 200 answer to a signed GET of `url`, signed by that replica for this
        request; else None."""
        signature = self.signer.headers("GET", url)
        try:
            response = self._pool.request("GET", url, headers=signature, redirect=False,
                                          timeout=urllib3.Timeout(total=timeout))
        except HTTPError:
            return None
        if response.status == 403:
            log.warning("%s refused this process's signed request (is this the cluster's "
                        "secret? see docs/security.md): %s", url, response.data[:200])
            return None
        if not self.signer.genuine(url, signature, response.status, response.headers, response.data):
            self._complaints.warn(origin(url), unsigned_message(url, response.status))
            return None
        return response if response.status == 200 else None


def leader_in(reports: Iterable[dict]) -> str | None:
    """Of replicas' reports (`Admin.survey`), the one that says it leads, in the highest term."""
    leaders = [(r["term"], r["id"]) for r in reports if r.get("role") == "leader"]
    return max(leaders)[1] if leaders else None


class Recent:
    """The value of `compute()`, computed at most once per `max_age` seconds however many
    threads ask (a frontend's /cluster and /readyz: each computation is a signed request to
    every replica, and anyone may ask as often as they like).

    A caller that finds the value older than `max_age` computes it again while holding the
    lock; callers arriving meanwhile wait for that one computation and share its result, so
    a crowd costs one computation per period, never one each. The age counts from when a
    computation finished. The value is shared: callers must not change it. An exception
    from `compute` reaches the caller that ran it, and the next caller tries again."""

    def __init__(self, compute: Callable[[], object], max_age: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.compute = compute
        self.max_age = max_age
        self.clock = clock
        self._lock = threading.Lock()
        self._value: object = None
        self._computed_at: float | None = None

    def get(self):
        with self._lock:
            if self._computed_at is None or self.clock() - self._computed_at >= self.max_age:
                self._value = self.compute()
                self._computed_at = self.clock()
            return self._value


def _json(response: urllib3.BaseHTTPResponse | None) -> dict | None:
    if response is None:
        return None
    try:
        return json.loads(response.data)
    except ValueError:
        return None


def _listed_node(group: str, member: dict) -> NodeConfig:
    """A member of a /members listing as a replica of `group`; ValueError (ConfigError) for
    an address this admin would not dial from a cluster file either."""
    scheme, _, http = member["http"].partition("://")
    if scheme != "http":
        raise ValueError(f"{member['id']}: http must be http://host:port, got {member['http']!r}")
    return NodeConfig(id=member["id"], group=group, raft=address(member["raft"], f"{member['id']}.raft"),
                      http=address(http, f"{member['id']}.http"))


def ready(groups: dict) -> bool:
    """True while both groups have a leader with quorum that has finished starting up."""
    return all(g["has_quorum"] and g["serving"] for g in groups.values())


def format_table(groups: dict) -> str:
    """A fixed-width table of every replica, for `bazar status`."""
    lines = [f"{'group':8} {'node':10} {'role':10} {'term':>5} {'commit':>8} {'applied':>8}  address"]
    for name, group in groups.items():
        for node in group["nodes"]:
            if node["reachable"]:
                lines.append(f"{name:8} {node['id']:10} {node['role']:10} {node['term']:>5} "
                             f"{node['commit_index']:>8} {node['applied_index']:>8}  {node['http']}")
            else:
                lines.append(f"{name:8} {node['id']:10} {'DOWN':10} {'-':>5} {'-':>8} {'-':>8}  {node['http']}")
        leader = group["leader"] or "none"
        lines.append(f"{'':8} leader: {leader}, quorum: {'yes' if group['has_quorum'] else 'NO'}")
    return "\n".join(lines)
