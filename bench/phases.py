"""The bench's phases, each on its own processes so they never compete for the two cores:

1. 3+3+1      the floor (hello-world Flask on waitress, bench/floor.py) sampled in
              alternating blocks with cached info, then under wrk; info (local, strong),
              search, purchase, spread purchases, hot-item purchases (Python clients, then
              wrk, then a sell-out), memory; then catalog and order leader failover
2. 1+1+1      purchase without replication (the 3+3 / 1+1 ratio is replication's cost)
3. fsync      two 3+3+1 clusters side by side, raft.fsync on and off, purchases sampled in
              alternating blocks (the on / off ratio, beside the disk's own fsync time)
4. recovery   a 1-node catalog restarted on a journal of many purchases

Each phase records its operations under the keys and labels of bench/schema.py.
"""
from __future__ import annotations

import statistics
import sys
import time
import uuid
from pathlib import Path

import requests

from bazar.bench import measure, schema, wrk
from bazar.bench.floor import Floor
from bazar.bench.journal import build_journal_subprocess
from bazar.bench.load import ClientPool, ClientTask
from bazar.bench.probes import (ADMIN_TOKEN, BIG_STOCK, cache_stats, concurrent_fsync_latency, cpu_by_role, fsync_latency,
                                fsyncs_per_purchase, journal_fsyncs, oversold_check, prepare_books, process_roles,
                                purchase_stages, put, rss_mb, settled_stock, stage_means, stock,
                                wait_caught_up, wait_settled)
from bazar.bench.settings import Settings
from bazar.local.cluster import LocalCluster, write_config

SEARCH_TOPIC = "distributed systems"
INFO_BOOK = 1        # read by the info benchmarks; never bought from, so a cache entry stays valid
HOT_BOOK = 2         # every client buys this one in the hot-item run
PURCHASE_BOOK = 3    # the sequential purchase latency runs buy this one
LOCAL_READ_IDS = list(range(1, 8))  # the seeded books
ADMIN_TOKEN_ENV = "BAZAR_ADMIN_TOKEN"  # write_config keeps the default admin_token_env
UNCOMPACTED = 10 ** 9  # raft.compaction_entries that no run reaches: the journal keeps every entry


def progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


class Phases:
    def __init__(self, settings: Settings, pool: ClientPool, workdir: Path, results: dict) -> None:
        self.s = settings
        self.pool = pool
        self.workdir = workdir
        self.results = results
        self.ops = results["operations"]
        self.run_id = uuid.uuid4().hex[:8]
        self.pids: dict[str, int] = {}  # the server processes of the phase, for CPU per request

    def watch(self, cluster: LocalCluster) -> None:
        self.pids = {name: cluster.pid(name) for name in cluster.names if cluster.is_running(name)}

    # -- helpers -------------------------------------------------------------

    def cluster(self, name: str, **sizes) -> LocalCluster:
        directory = self.workdir / name
        path = write_config(directory, **sizes)
        # The bench sets stock and adds books with this run's admin token (probes.ADMIN_TOKEN).
        return LocalCluster(path, log_dir=directory / "logs", env={ADMIN_TOKEN_ENV: ADMIN_TOKEN})

    def latency(self, url: str, factory, ok=(200,)) -> measure.Samples:
        return measure.sample(url, factory, self.s.samples, ok_statuses=ok, server_pids=self.pids)

    def load(self, tasks: list[ClientTask], duration: float | None = None) -> dict:
        return self.pool.run(tasks, duration or self.s.load_seconds)

    def wrk(self, url: str, pids: dict[str, int], method: str = "GET") -> dict | None:
        """`url` driven by wrk with as many connections as the bench has clients; None
        when wrk is not installed (the figures that need it are then not measured)."""
        if wrk.executable() is None:
            return None
        run = wrk.run(url, self.s.wrk_seconds, connections=self.s.clients, threads=self.s.wrk_threads,
                      method=method, server_pids=pids)
        cpu = run.get("server_cpu_ms_per_op") or {}
        progress(f"    wrk, {run['connections']} connections, {run['duration_s']:.1f} s: "
                 f"{run['throughput_rps']:.0f}/s ({run['ok']} ok, {run['non_2xx']} non-2xx), "
                 f"p50 {_fmt(run['latency_under_load']['p50_ms'])} ms, server CPU "
                 f"{sum(cpu.values()):.2f} ms/request, "
                 f"wrk itself {100 * run.get('generator_cpu_share', 0):.0f}% of the cores")
        return run

    def same_for_all(self, method: str, url: str) -> list[ClientTask]:
        return [ClientTask(method, url) for _ in range(self.s.clients)]

    def record(self, key: str, samples: measure.Samples | None, load: dict | None,
               latency_source: str = "sequential") -> dict:
        label = schema.label(key, self.s.to_json())
        entry: dict = {"label": label, "latency_source": latency_source}
        if samples is not None:
            entry["latency"] = samples.to_json()
        elif load is not None:  # latency under load, from the concurrent clients
            under = measure.Samples(latencies_ms=load["latencies_ms"])
            entry["latency"] = under.to_json()
        if load is not None:
            entry["load"] = _load_json(load)
        self.ops[key] = entry
        lat = entry.get("latency", {})
        thr = entry.get("load", {}).get("throughput_rps")
        cpu = lat.get("server_cpu_ms_per_op")
        progress(f"  {label}: p50 {_fmt(lat.get('p50_ms'))} ms, p99 {_fmt(lat.get('p99_ms'))} ms"
                 + (f", server CPU {sum(cpu.values()):.2f} ms/request" if cpu else "")
                 + (f", {thr:.0f}/s with {self.s.clients} clients" if thr is not None else ""))
        return entry

    # -- phase 1: the replicated cluster, and the floor ---------------------------

    def replicated(self) -> None:
        progress("phase 1/4: 3 catalog + 3 order replicas + 1 frontend, and the floor "
                 "(hello-world Flask on waitress) beside them")
        cluster = self.cluster("c33", catalog=3, order=3, frontends=1)
        floor = Floor()
        try:
            cluster.start(timeout=60)
            floor.start()
            self.watch(cluster)
            url = cluster.frontend_url
            spread_ids = prepare_books(url, self.s.clients)

            # The floor and the cache hit are sampled in alternating blocks: their ratio is the
            # key figure, and on a shared machine it should not depend on which ran first.
            cache_before = cache_stats(url)
            floor_samples, samples = measure.interleaved(
                (floor.url, measure.get("/hello"), {"floor": floor.pid}),
                (url, measure.get(f"/info/{INFO_BOOK}?consistency=cached"), self.pids), self.s.samples)
            floor_load = self.load(self.same_for_all("GET", floor.url + "/hello"))
            load = self.load(self.same_for_all("GET", f"{url}/info/{INFO_BOOK}?consistency=cached"))
            self.record("floor", floor_samples, floor_load)
            # What the hot item's wrk throughput is compared with: the floor under the same load.
            self.ops["floor"]["wrk"] = self.wrk(floor.url + "/hello", {"floor": floor.pid})
            self.results["rss_mb"]["floor"] = rss_mb(floor.pid)
            floor.stop()
            entry = self.record("info_cached", samples, load)
            entry["frontend_cache"] = {"before": cache_before, "after": cache_stats(url)}

            ids = LOCAL_READ_IDS
            samples = self.latency(url, lambda i: ("GET", f"/info/{ids[i % len(ids)]}?consistency=local",
                                                   None, None))
            load = self.load([ClientTask("GET", f"{url}/info/{ids[c % len(ids)]}?consistency=local")
                              for c in range(self.s.clients)])
            self.record("info_local", samples, load)

            samples = self.latency(url, measure.get(f"/info/{INFO_BOOK}?consistency=strong"))
            load = self.load(self.same_for_all("GET", f"{url}/info/{INFO_BOOK}?consistency=strong"))
            self.record("info_strong", samples, load)

            topic = requests.utils.quote(SEARCH_TOPIC, safe="")
            samples = self.latency(url, measure.get(f"/search/{topic}"))
            load = self.load(self.same_for_all("GET", f"{url}/search/{topic}"))
            self.record("search", samples, load)

            self.purchases(cluster, "3x3", spread_ids, with_hot=True)
            self.results["rss_mb"].update(
                {name: rss_mb(cluster.pid(name)) for name in cluster.names if cluster.is_running(name)})

            self.results["failover"] = {}
            for group in ("catalog", "order"):
                self.results["failover"][group] = failover(cluster, group, self.s.failover_rounds)
        finally:
            floor.stop()
            cluster.stop()

    def purchases(self, cluster: LocalCluster, tag: str, spread_ids: list[int], with_hot: bool) -> None:
        url = cluster.frontend_url
        put(url, PURCHASE_BOOK, {"stock": BIG_STOCK})
        prefix = f"bench-{self.run_id}-{tag}"
        stages_before = purchase_stages(cluster)
        samples = self.latency(url, lambda i: ("POST", f"/purchase/{PURCHASE_BOOK}", None,
                                               {"Idempotency-Key": f"{prefix}-{i}"}))
        time.sleep(0.2)  # the last purchase's finish applies after its answer
        stages = stage_means(stages_before, purchase_stages(cluster))
        roles = process_roles(cluster)
        # Spread: client i buys its own book, so no two clients touch the same item.
        before = {b: stock(url, b) for b in spread_ids}
        load = self.load([ClientTask("POST", f"{url}/purchase/{spread_ids[c % len(spread_ids)]}")
                          for c in range(self.s.clients)])
        after = {b: stock(url, b) for b in spread_ids}
        entry = self.record(f"purchase_{tag}", samples, load)
        # Where a sequential purchase's time and CPU go: each stage on the coordinating order
        # replica, and the server CPU per purchase of each role.
        entry["stages_ms"] = stages
        if samples.server_cpu_ms_per_op:
            entry["server_cpu_ms_by_role"] = cpu_by_role(samples.server_cpu_ms_per_op, roles)
        progress("    stages: " + ", ".join(f"{name} {_fmt(s['mean_ms'])} ms" for name, s in stages.items())
                 + "; CPU by role: " + ", ".join(f"{role} {r['ms']:.2f} ms" for role, r in
                                                 sorted(entry.get("server_cpu_ms_by_role", {}).items())))
        if not with_hot:
            return
        spread = self.record("purchase_spread", None, load,
                             latency_source=f"{self.s.clients} concurrent clients")
        taken = sum(before[b] - after[b] for b in spread_ids)
        spread["stock_check"] = {"stock_taken": taken, "successes": load["ok_total"],
                                 "consistent": taken == load["ok_total"]}
        self.hot_item(url)

    def hot_item(self, url: str) -> None:
        """All clients buy one item: throughput, then a sell-out, checking nothing is oversold."""
        put(url, HOT_BOOK, {"stock": BIG_STOCK})
        initial = stock(url, HOT_BOOK)
        load = self.load(self.same_for_all("POST", f"{url}/purchase/{HOT_BOOK}"))
        final = stock(url, HOT_BOOK)
        entry = self.record("purchase_hot", None, load,
                            latency_source=f"{self.s.clients} concurrent clients")
        entry["oversold_check"] = oversold_check(initial, final, load)

        # The same with wrk, whose own CPU is a few percent of the cores where the Python
        # clients take much of it: the throughput the target compares with the floor's.
        before = stock(url, HOT_BOOK)
        run = self.wrk(f"{url}/purchase/{HOT_BOOK}", self.pids, method="POST")
        if run is not None:
            run["stock_check"] = wrk.stock_check(before, settled_stock(url, HOT_BOOK), run)
            progress(f"    wrk stock check: {run['stock_check']}")
        entry["wrk"] = run

        # Sell-out: fewer copies than the clients try to buy; exactly `stock` must succeed.
        copies = self.s.sellout_stock
        put(url, HOT_BOOK, {"stock": copies})
        per_client = -(-2 * copies // self.s.clients)  # twice as many attempts as copies
        tasks = self.same_for_all("POST", f"{url}/purchase/{HOT_BOOK}")
        for task in tasks:
            task.max_requests = per_client
        sellout = self.pool.run(tasks, duration=120.0)
        final = stock(url, HOT_BOOK)
        check = oversold_check(copies, final, sellout)
        check.update(attempts=sum(sellout["statuses"].values()),
                     refused_out_of_stock=sellout["statuses"].get("409", 0),
                     sold_out=final == 0 and sellout["ok_total"] == copies)
        entry["sellout_check"] = check
        progress(f"  hot item: oversold {entry['oversold_check']['oversold']} "
                 f"(stock consistent: {entry['oversold_check']['consistent']}); sell-out of {copies}: "
                 f"{sellout['ok_total']} sold, {check['refused_out_of_stock']} refused, final stock {final}")

    # -- phase 2: without replication --------------------------------------------

    def unreplicated(self) -> None:
        progress("phase 2/4: 1 catalog + 1 order replica + 1 frontend (no replication)")
        cluster = self.cluster("c11", catalog=1, order=1, frontends=1)
        try:
            cluster.start(timeout=60)
            self.watch(cluster)
            url = cluster.frontend_url
            spread_ids = prepare_books(url, self.s.clients)
            self.purchases(cluster, "1x1", spread_ids, with_hot=False)
            self.results["rss_mb"].update({f"{name} (1+1)": rss_mb(cluster.pid(name))
                                           for name in cluster.names if cluster.is_running(name)})
        finally:
            cluster.stop()

    # -- phase 3: the cost of fsync -----------------------------------------------

    def durability(self) -> None:
        """Purchase latency with every write fsynced before it is acknowledged (raft.fsync,
        the default) and without, on two identical 3+3 clusters sampled in alternating blocks."""
        progress("phase 3/4: purchases on two 3+3 clusters side by side, raft.fsync on and off")
        clusters = {fsync: self.cluster(f"fsync-{'on' if fsync else 'off'}", catalog=3, order=3, frontends=1,
                                        raft={"fsync": fsync})
                    for fsync in (True, False)}
        try:
            for cluster in clusters.values():
                cluster.start(timeout=60)
            sides = []
            for fsync, cluster in clusters.items():
                url = cluster.frontend_url
                put(url, PURCHASE_BOOK, {"stock": BIG_STOCK})
                prefix = f"bench-{self.run_id}-fsync-{fsync}"
                pids = {name: cluster.pid(name) for name in cluster.names}
                sides.append((url, lambda i, p=prefix: ("POST", f"/purchase/{PURCHASE_BOOK}", None,
                                                        {"Idempotency-Key": f"{p}-{i}"}), pids))
            disk_before = fsync_latency(self.workdir)
            durable = clusters[True]
            fsyncs_before = journal_fsyncs(durable)
            stock_before = stock(durable.frontend_url, PURCHASE_BOOK)
            on, off = measure.interleaved(sides[0], sides[1], self.s.samples)
            fsyncs_after = journal_fsyncs(durable)
            leaders = {group: durable.leader(group) for group in ("order", "catalog")}
            entry = self.record("purchase_fsync_on", on, None)
            self.record("purchase_fsync_off", off, None)
            # The disk's own fsync time, around the run: what a commit waits for, three times a purchase.
            entry["disk_fsync_ms"] = {"before": disk_before, "after": fsync_latency(self.workdir)}
            # Here every replica of a group shares this one disk: what one fsync costs while the
            # group's three replicas fsync at once (each commit's case), against one alone.
            entry["disk_fsync_ms"]["three_at_once_p50_ms"] = concurrent_fsync_latency(self.workdir, 3)
            # What the leaders' fsyncs cost a purchase, timed inside the replicas (warm-up included).
            bought = stock_before - stock(durable.frontend_url, PURCHASE_BOOK)
            entry["replica_fsyncs"] = fsyncs_per_purchase(fsyncs_before, fsyncs_after, leaders, max(bought, 1))
            progress(f"  one fsync of an appended record on this disk: p50 {disk_before['p50_ms']:.2f} ms "
                     f"before, {entry['disk_fsync_ms']['after']['p50_ms']:.2f} ms after; "
                     f"{entry['disk_fsync_ms']['three_at_once_p50_ms']:.2f} ms each with three at once")
        finally:
            for cluster in clusters.values():
                cluster.stop()

    # -- phase 4: restart recovery ------------------------------------------------

    def recovery(self) -> None:
        count = self.s.journal_purchases
        progress(f"phase 4/4: restart of a 1-node catalog whose journal holds {count:,} purchases")
        one = dict(catalog=1, order=1, frontends=1)
        # "journal": log compaction off, so the restart replays every purchase from the journal
        # (the worst case, and the target). "compacted": the default settings, where PySyncObj
        # snapshots the state every `raft.compaction_entries` entries and replays only the rest.
        self.results["recovery"] = {
            "empty": restart_recovery(self.cluster("r0", **one), 0),
            "journal": restart_recovery(self.cluster("rj", **one, raft={"compaction_entries": UNCOMPACTED}),
                                        count),
            "compacted": restart_recovery(self.cluster("rc", **one), count),
        }
        r = self.results["recovery"]
        progress(f"  start-up with an empty journal: {r['empty']['ready_s']:.2f} s; with {count:,} purchases "
                 f"in the journal: {r['journal']['ready_s']:.2f} s; with the default log compaction: "
                 f"{r['compacted']['ready_s']:.2f} s")


def failover(cluster: LocalCluster, group: str, rounds: int) -> dict:
    """SIGKILL `group`'s leader; time from the kill to the first successful purchase after it."""
    url = cluster.frontend_url
    put(url, PURCHASE_BOOK, {"stock": BIG_STOCK})
    session = requests.Session()
    times, details = [], []
    try:
        for round_no in range(rounds):
            leader = None
            while leader is None:
                wait_settled(cluster)
                leader = cluster.leader(group)
            _buy(session, url, timeout=10)  # the path works, and the session is warm
            cluster.kill(leader)
            killed_at = time.perf_counter()
            attempts = 0
            while True:
                attempts += 1
                if _buy(session, url, timeout=1.0):
                    break
                if time.perf_counter() - killed_at > 60:
                    raise TimeoutError(f"no purchase succeeded within 60 s of killing {leader}")
            seconds = time.perf_counter() - killed_at
            new_leader = cluster.leader(group)
            times.append(seconds)
            details.append({"killed": leader, "new_leader": new_leader, "seconds": seconds,
                            "attempts": attempts})
            progress(f"  {group} failover {round_no + 1}/{rounds}: killed {leader}, first purchase "
                     f"after {seconds * 1000:.0f} ms ({attempts} attempts), new leader {new_leader}")
            restarted_at = time.perf_counter()
            cluster.start_process(leader)
            wait_caught_up(cluster, leader)
            details[-1]["rejoin_s"] = time.perf_counter() - restarted_at
    finally:
        session.close()
    return {"median_s": statistics.median(times), "max_s": max(times), "mean_s": statistics.fmean(times),
            "samples_s": times, "rounds": details}


def _buy(session: requests.Session, url: str, timeout: float) -> bool:
    try:
        response = session.post(f"{url}/purchase/{PURCHASE_BOOK}", timeout=timeout,
                                headers={"Idempotency-Key": uuid.uuid4().hex})
        return response.status_code == 200
    except requests.RequestException:
        return False


def restart_recovery(cluster: LocalCluster, purchases: int) -> dict:
    """Build a journal of `purchases` offline, then time a fresh process until it serves them."""
    node = cluster.config.catalog[0]
    try:
        built_at = time.perf_counter()
        built = build_journal_subprocess(cluster.config_path, node.id, purchases)
        build_s = time.perf_counter() - built_at
        journal_bytes = sum(p.stat().st_size for p in (cluster.config.data_dir / node.id).glob("*")
                            if p.is_file())
        started = time.perf_counter()
        cluster.start_process(node.id)
        first_answer = None
        book_url = f"{node.http.url}/books/{built['book']}"
        session = requests.Session()
        session.auth = cluster.peer_auth
        while True:
            elapsed = time.perf_counter() - started
            if elapsed > 300:
                raise TimeoutError(f"{node.id} did not recover its journal within 300 s")
            if not cluster.is_running(node.id):
                raise RuntimeError(f"{node.id} exited while recovering (log: {cluster.log_dir})")
            try:
                response = session.get(book_url, timeout=1.0)
                if response.status_code == 200:
                    if first_answer is None:
                        first_answer = elapsed
                    if response.json()["stock"] == built["final_stock"]:
                        break
            except requests.RequestException:
                pass
            time.sleep(0.005)
        ready_s = time.perf_counter() - started
        session.close()
        return {"purchases": purchases, "ready_s": ready_s, "first_http_answer_s": first_answer,
                "build_s": build_s, "data_bytes": journal_bytes, "final_stock": built["final_stock"],
                "build_purchases_per_s": built.get("purchases_per_s"),
                "build_longest_stall_s": built.get("longest_stall_s"),
                "rss_mb_after": rss_mb(cluster.pid(node.id))}
    finally:
        cluster.stop()


def _load_json(load: dict) -> dict:
    latencies = load["latencies_ms"]
    return {k: v for k, v in load.items() if k != "latencies_ms"} | {
        "latency_under_load": measure.summarize(latencies),
        "samples_ms": [round(x, 4) for x in latencies]}


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.2f}"
