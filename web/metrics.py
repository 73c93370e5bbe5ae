"""Prometheus metrics of every Bazar process: each family Bazar exposes is named here, once.

Every process serves `GET /metrics` (Prometheus' text format, made by prometheus-client);
a replica's needs no credential, the frontend's (on the public port, and its request and
cache counters count the store's sales) needs the admin token as a bearer. No family
carries a secret, a token or a request's content. The
names are what dashboards and alerts rely on (deploy/grafana-dashboard.json,
docs/operations.md), so they change only with those.

Every process: `bazar_http_requests_total{route,method,status}` and
`bazar_http_request_duration_seconds{route}`, where the route is the URL rule
(`/purchase/<raw_id>`), never the raw path (one series per rule, whatever clients send;
paths no rule matches are counted as `unmatched`), and the method one of `METHODS` or
`other` (waitress accepts any token as a method, up to the header limit); and the
process_* families. So no label, and no access line, holds a string a client chose: a
client sending thousands of made-up methods and paths adds no series and no long line.

Replicas (`RaftMetrics`): `bazar_raft_term`, `bazar_raft_commit_index`,
`bazar_raft_applied_index`, `bazar_raft_is_leader`, `bazar_raft_leader_changes_total`
(read from the Raft member when scraped), `bazar_raft_commit_duration_seconds` and
`bazar_raft_commit_failures_total{reason}` (per commit a replica asks for), each
labelled with the group; `bazar_journal_bytes` and `bazar_journal_fsync_duration_seconds`;
`bazar_raft_connections_closed_total{reason}` (Raft connections closed by the port's guards:
handshake_timeout, too_many_from_source, too_many_unauthenticated, oversized_frame) and
`bazar_raft_listener_rebinds_total` (times the Raft listener was found closed and bound
again), read from the Raft member when scraped.

Catalog replicas (`CatalogMetrics`): `bazar_purchases_unrecorded` and
`bazar_purchases_unrecorded_oldest_seconds`, the purchases kept until the order group
records them (seconds' worth normally; an old one means the order group is not recording).

Frontends and order replicas (`purchase_stages`, in `OrderMetrics` on the latter):
`bazar_purchase_stage_duration_seconds{stage}` for the steps of the purchases each
coordinated (take_stock, the catalog's commit the buyer waits for; finish, the order's
record, timed from its proposal until it has applied; begin, recording the order pending,
only on an order replica when the catalog could not decide in time); order replicas also
have `bazar_orders_pending`.

The frontend (`FrontendCollector`): `bazar_cache_hits_total`, `bazar_cache_misses_total`,
`bazar_cache_invalidations_total`, `bazar_cache_flushes_total`,
`bazar_cache_stale_fills_refused_total`, `bazar_cache_entries` and
`bazar_follower_lag_seconds`.

Cost on the request path: one counter increment and one histogram observation per
request (a few microseconds, done by the `_Instrumented` middleware); everything a process
already counts (cache counters, Raft indexes, the journal's size) is read only when
Prometheus scrapes.
"""
from __future__ import annotations

import time
from typing import Callable

from flask import Flask, Response
from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram,
                               ProcessCollector, disable_created_metrics, generate_latest)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from werkzeug.wsgi import ClosingIterator

from bazar.web import logs
from bazar.web.protocol import REQUEST_ID_HEADER

# Bazar's latencies run from a fraction of a millisecond (a cache hit, a commit) to the
# commit timeout (seconds): the default buckets start at 5 ms and would lump most together.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
FSYNC_BUCKETS = (0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0)
PURCHASE_STAGES = ("begin", "take_stock", "finish")
# A `_created` timestamp beside every counter and histogram doubles a scrape's size and tells
# nothing process_start_time_seconds does not (all of a process's series start with it).
disable_created_metrics()
UNMATCHED = "unmatched"
# The methods counted (and logged) under their own name; any other is `OTHER_METHOD`.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
OTHER_METHOD = "other"
# What monitoring polls (every second, from each dashboard and `bazar status --watch`):
# counted like every route, but logged at DEBUG.
PROBE_ROUTES = frozenset({"/healthz", "/readyz", "/status", "/metrics", "/cluster"})


class Metrics:
    """One process's registry, with the HTTP families every Bazar process has."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        self.requests = Counter("bazar_http_requests", "HTTP requests answered, by URL rule, method and status",
                                ["route", "method", "status"], registry=self.registry)
        self.request_duration = Histogram("bazar_http_request_duration_seconds",
                                          "Time from a request's arrival to its answer, by URL rule",
                                          ["route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self._children: dict[tuple, tuple] = {}

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:  # labels() costs more than the update itself: look each series up once
            children = self._children[key] = (self.requests.labels(route, method, str(status)),
                                              self.request_duration.labels(route))
        children[0].inc()
        children[1].observe(seconds)

    def traffic(self, exclude: frozenset = PROBE_ROUTES) -> dict:
        """Requests so far on every route but `exclude` (monitoring's own), with their latency
        as cumulative histogram buckets: `{"count", "buckets": [[upper bound, count], ...]}`,
        the last bound null (+Inf). The dashboard charts rates and quantiles from two of these."""
        buckets = [0.0] * (len(LATENCY_BUCKETS) + 1)
        for sample in self.request_duration.collect()[0].samples:
            if sample.name.endswith("_bucket") and sample.labels["route"] not in exclude:
                bound = float(sample.labels["le"])
                index = len(LATENCY_BUCKETS) if bound == float("inf") else LATENCY_BUCKETS.index(bound)
                buckets[index] += sample.value
        bounds = list(LATENCY_BUCKETS) + [None]
        return {"count": buckets[-1], "buckets": [[b, n] for b, n in zip(bounds, buckets)]}

    def value(self, name: str, labels: dict | None = None) -> float | None:
        """One sample's current value (a test's or the dashboard's read), None if absent."""
        return self.registry.get_sample_value(name, labels or {})

    def samples(self, family: str) -> list:
        """Every sample of one family, as (name, labels, value)."""
        return [(s.name, s.labels, s.value) for metric in self.registry.collect() if metric.name == family
                for s in metric.samples]

    def render(self) -> bytes:
        return generate_latest(self.registry)


def instrument(app: Flask, metrics: Metrics, authorize: Callable[[], None] | None = None) -> None:
    """Count and time every request of `app`, give it a request id (web/logs.py), log one
    access line for it, and serve `GET /metrics`. `authorize()`, if given, runs before a
    scrape is rendered and raises (an ApiError) to refuse it: the frontend's needs the
    admin token."""
    app.wsgi_app = _Instrumented(app.wsgi_app, metrics)

    @app.get("/metrics")
    def _metrics():
        if authorize is not None:
            authorize()
        return Response(metrics.render(), content_type=CONTENT_TYPE_LATEST)


# The request id header as WSGI names it in the environ.
_REQUEST_ID_ENVIRON = "HTTP_" + REQUEST_ID_HEADER.upper().replace("-", "_")


class _Instrumented:
    """WSGI middleware around a Flask app (Flask's documented `app.wsgi_app = ...`) that does
    `instrument`'s per-request work.

    A middleware rather than Flask's before/after/teardown hooks because it is on every
    request's path: it reads the environ and the status line directly and appends the id
    to the header list, where each hook costs Flask's dispatch and every `request`/`g`
    access a context-local lookup. Measured with valgrind on a one-route Flask app (which
    itself takes 378,000 instructions a request): the hooks added 132,000 instructions,
    this adds 50,000, most of it prometheus-client's own counter and histogram updates.
    """

    def __init__(self, wsgi_app, metrics: Metrics) -> None:
        self.wsgi_app = wsgi_app
        self.metrics = metrics

    def __call__(self, environ, start_response):
        started = time.perf_counter()
        token = logs.begin_request(environ.get(_REQUEST_ID_ENVIRON))
        request_id = logs.current_request_id()
        answered = []  # (status, URL rule), noted when Flask starts the answer

        def start(status: str, headers: list, exc_info=None):
            # Flask calls this before it pops the request context, while its request (which
            # holds the rule it matched) is still in the environ; it is cleared after.
            answered.append((int(status[:3]), getattr(environ.get("werkzeug.request"), "url_rule", None)))
            headers.append((REQUEST_ID_HEADER, request_id))
            return start_response(status, headers, exc_info)

        try:
            body = self.wsgi_app(environ, start)  # Flask builds the whole answer here
        finally:
            logs.end_request(token)
        seconds = time.perf_counter() - started
        status, rule = answered[-1]
        route = rule.rule if rule is not None else UNMATCHED
        method = method_label(environ["REQUEST_METHOD"])
        self.metrics.observe_request(route, method, status, seconds)
        # The access line is noted when waitress closes the body. For an answer that fits
        # its send buffer, waitress sends it only after that, so the note must be cheap:
        # it is a tuple on a deque, written out by logs' background thread.
        return ClosingIterator(body, lambda: logs.log_access(method, route, status, seconds, request_id,
                                                             quiet=route in PROBE_ROUTES))


def method_label(method: str) -> str:
    """The method as labels and access lines name it: one of METHODS, else `other` (a
    client chooses the method, so it must not choose a series or the length of a line)."""
    return method if method in METHODS else OTHER_METHOD


class RaftMetrics:
    """A replica's Raft families (see the module): gauges and leader changes read from its
    member when scraped, commit latency and failures counted by `Replica.commit`."""

    def __init__(self, metrics: Metrics, group: str, member) -> None:
        self.group = group
        self.commit_duration = Histogram(
            "bazar_raft_commit_duration_seconds",
            "Time from asking for a commit to its result being applied here, retries included",
            ["group"], buckets=LATENCY_BUCKETS, registry=metrics.registry).labels(group)
        self._failures = Counter("bazar_raft_commit_failures", "Commits that failed, by reason",
                                 ["group", "reason"], registry=metrics.registry)
        self.fsync_duration = Histogram(
            "bazar_journal_fsync_duration_seconds", "Time one fsync of the Raft journal took",
            ["group"], buckets=FSYNC_BUCKETS, registry=metrics.registry).labels(group)
        metrics.registry.register(_RaftCollector(group, member))
        # What the retention bounds (node/retention.py), counted by the state machine when scraped.
        Gauge("bazar_outcomes_remembered", "Outcomes kept for retries, until the retention forgets them",
              ["group"], registry=metrics.registry).labels(group).set_function(
                  lambda: member.state.read(lambda machine: machine.remembered())[0])

    def commit_failed(self, reason: str) -> None:
        self._failures.labels(self.group, reason).inc()

    def commits(self) -> dict:
        """`{"count", "seconds"}`: commits asked for so far and their total time (for /status,
        from which the dashboard charts commit latency)."""
        totals = {s.name: s.value for s in self.commit_duration.collect()[0].samples}
        return {"count": totals["bazar_raft_commit_duration_seconds_count"],
                "seconds": totals["bazar_raft_commit_duration_seconds_sum"]}


class _RaftCollector:
    """Reads a Raft member's term, indexes, role, leader changes, journal size and Raft port
    guards' counts at scrape time."""

    def __init__(self, group: str, member) -> None:
        self.group = group
        self.member = member

    def collect(self):
        status = self.member.status()
        gauges = (("bazar_raft_term", "The Raft term this replica is in", status["term"]),
                  ("bazar_raft_commit_index", "The highest log index this replica knows committed",
                   status["commit_index"]),
                  ("bazar_raft_applied_index", "The highest log index applied to this replica's state",
                   status["applied_index"]),
                  ("bazar_raft_is_leader", "1 while this replica is its group's leader, else 0",
                   1 if status["role"] == "leader" else 0),
                  ("bazar_journal_bytes", "Size of this replica's Raft journal file", self.member.journal_bytes))
        for name, documentation, value in gauges:
            if value is None:
                continue
            family = GaugeMetricFamily(name, documentation, labels=["group"])
            family.add_metric([self.group], value)
            yield family
        changes = CounterMetricFamily("bazar_raft_leader_changes",
                                      "Times this replica saw its group's leader change (a first leader included)",
                                      labels=["group"])
        changes.add_metric([self.group], self.member.leader_changes)
        yield changes
        port = self.member.raft_port_stats()
        closed = CounterMetricFamily("bazar_raft_connections_closed",
                                     "Raft connections this replica closed before they proved the cluster key "
                                     "(or for an oversized frame), by reason", labels=["group", "reason"])
        for reason, count in sorted(port["closed"].items()):
            closed.add_metric([self.group, reason], count)
        yield closed
        rebinds = CounterMetricFamily("bazar_raft_listener_rebinds",
                                      "Times this replica found its Raft listener closed and bound it again",
                                      labels=["group"])
        rebinds.add_metric([self.group], port["listener_rebinds"])
        yield rebinds


def purchase_stages(metrics: Metrics) -> dict:
    """`bazar_purchase_stage_duration_seconds{stage}` in `metrics`, one histogram per stage,
    on whichever process coordinates purchases (a frontend, or an order replica)."""
    stages = Histogram("bazar_purchase_stage_duration_seconds",
                       "Time each step of a purchase took on the process that coordinated it",
                       ["stage"], buckets=LATENCY_BUCKETS, registry=metrics.registry)
    return {stage: stages.labels(stage) for stage in PURCHASE_STAGES}


class OrderMetrics:
    """An order replica's purchase families: the time each step of a purchase takes, and
    how many orders are recorded but not decided (read from the state when scraped)."""

    def __init__(self, metrics: Metrics, pending_count) -> None:
        self.stages = purchase_stages(metrics)
        Gauge("bazar_orders_pending", "Orders recorded but not yet completed or failed",
              registry=metrics.registry).set_function(pending_count)

    def stage(self, name: str):
        """A context manager that times one step (`with metrics.stage("begin"): ...`)."""
        return self.stages[name].time()


class CatalogMetrics:
    """A catalog replica's purchases kept until the order group records them
    (node/orders/purchase.py): how many, and the oldest one's age, read when scraped."""

    def __init__(self, metrics: Metrics, unrecorded) -> None:
        """`unrecorded()`: (how many purchases are kept, the oldest one's created_at or None)."""
        Gauge("bazar_purchases_unrecorded", "Purchases the catalog keeps until the order group has recorded them",
              registry=metrics.registry).set_function(lambda: unrecorded()[0])
        Gauge("bazar_purchases_unrecorded_oldest_seconds",
              "Age of the oldest purchase kept until the order group records it (0: none)",
              registry=metrics.registry).set_function(lambda: _age(unrecorded()[1]))


def _age(created_at: float | None) -> float:
    return max(0.0, time.time() - created_at) if created_at is not None else 0.0


class FrontendCollector:
    """The frontend's cache counters and its follower's lag, read when scraped."""

    COUNTERS = (("hits", "Cached reads answered from the cache"),
                ("misses", "Cached reads the cache could not answer (or bypassed)"),
                ("invalidations", "Keys invalidated by applied catalog entries and own writes"),
                ("flushes", "Times the whole cache was emptied (seed, snapshot, lost touch, leader change)"),
                ("stale_fills_refused", "Answers not cached because an invalidation had outdated them"))

    def __init__(self, cache, follower) -> None:
        self.cache = cache
        self.follower = follower

    def collect(self):
        stats = self.cache.snapshot_stats()
        for key, documentation in self.COUNTERS:
            family = CounterMetricFamily(f"bazar_cache_{key}", documentation)
            family.add_metric([], stats[key])
            yield family
        yield GaugeMetricFamily("bazar_cache_entries", "Entries in the cache now", value=stats["size"])
        silence = self.follower.member.seconds_since_leader()
        yield GaugeMetricFamily(
            "bazar_follower_lag_seconds",
            "Seconds since this frontend's catalog follower last heard from the leader (+Inf: no leader known)",
            value=float("inf") if silence is None else silence)
