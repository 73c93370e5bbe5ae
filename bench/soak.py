"""A soak: many purchases against a throwaway cluster, with each replica's RSS sampled.

Remembered outcomes are forgotten after `retention.outcomes` (node/retention.py), so
once that retention has passed the replicas hold a bounded state and their memory
must stop growing with the purchase count. This shows whether it does:

    python -m bazar.bench.soak --purchases 200000 --clients 16 --retention 30

Every `--every` purchases it prints one line: purchases, seconds, rate, what the
group leaders remember (catalog purchase outcomes, orders) and each replica's RSS in
MiB. At the end, each replica's RSS growth after the first 2x retention (when
expiry has taken effect), absolute and per 10,000 purchases. `--json` also
writes the samples to a file. It runs on free loopback ports with a seed of
plenty of stock; the --config file is not used.
"""
from __future__ import annotations

import argparse
import itertools
import json
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import requests

from bazar.local.cluster import LocalCluster, write_config
from bazar.node.validation import MAX_STOCK

BOOKS = 16


def rss_mib(pid: int) -> float | None:
    """Resident set size of process `pid` in MiB (None once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Buyers:
    """`clients` threads, each with a keep-alive session, buying until `total` are answered."""

    def __init__(self, url: str, total: int, clients: int) -> None:
        self.url, self.total = url, total
        self._numbers = itertools.count()
        self._lock = threading.Lock()
        self.answered = 0
        self.statuses: Counter = Counter()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def join(self) -> None:
        for thread in self._threads:
            thread.join()

    def _run(self) -> None:
        session = requests.Session()
        while True:
            with self._lock:
                number = next(self._numbers)
            if number >= self.total:
                return
            try:
                status = session.post(f"{self.url}/purchase/{number % BOOKS + 1}",
                                      headers={"Idempotency-Key": f"soak-{number}"}, timeout=10).status_code
            except requests.RequestException as error:
                status = type(error).__name__
            with self._lock:
                self.answered += 1
                self.statuses[status] += 1


def remembered(cluster: LocalCluster) -> tuple[int | None, int | None]:
    """(catalog purchase outcomes, orders) the group leaders hold right now."""
    counts = []
    for group, field in (("catalog", "purchases"), ("order", "orders")):
        leader = cluster.admin.leader(group)
        state = cluster.admin.state(leader, timeout=30) if leader else None
        counts.append(len(state["state"][field]) if state else None)
    return counts[0], counts[1]


def sample(cluster: LocalCluster, buyers: Buyers, started: float) -> dict:
    purchases_done = buyers.answered
    elapsed = time.monotonic() - started
    outcomes, orders = remembered(cluster)
    replicas = [n.id for n in cluster.config.catalog + cluster.config.order]
    return {"purchases": purchases_done, "seconds": round(elapsed, 1),
            "rate": round(purchases_done / elapsed, 1) if elapsed else 0.0,
            "catalog_outcomes": outcomes, "orders": orders,
            "rss_mib": {name: rss_mib(cluster.pid(name)) for name in replicas}}


def print_sample(row: dict, header: bool) -> None:
    names = list(row["rss_mib"])
    if header:
        print(f"{'purchases':>9} {'seconds':>8} {'per s':>6} {'outcomes':>8} {'orders':>7}  "
              + " ".join(f"{name:>9}" for name in names) + "   (RSS MiB)")
    rss = " ".join(f"{row['rss_mib'][n]:9.1f}" if row["rss_mib"][n] is not None else f"{'-':>9}" for n in names)
    print(f"{row['purchases']:9d} {row['seconds']:8.1f} {row['rate']:6.1f} {row['catalog_outcomes']!s:>8} "
          f"{row['orders']!s:>7}  {rss}", flush=True)


def growth(samples: list[dict], after_seconds: float) -> dict:
    """Per replica: RSS growth (MiB) from the first sample after `after_seconds` to the last,
    and that growth per 10,000 purchases."""
    settled = [s for s in samples if s["seconds"] >= after_seconds]
    if len(settled) < 2:
        return {}
    first, last = settled[0], settled[-1]
    purchases = max(1, last["purchases"] - first["purchases"])
    result = {}
    for name, start in first["rss_mib"].items():
        end = last["rss_mib"].get(name)
        if start is None or end is None:
            continue
        result[name] = {"from_mib": round(start, 1), "to_mib": round(end, 1), "growth_mib": round(end - start, 1),
                        "per_10k_purchases_mib": round((end - start) * 10_000 / purchases, 2),
                        "from_purchases": first["purchases"], "to_purchases": last["purchases"]}
    return result


def run(purchases: int, clients: int, retention: float, every: int, catalog: int, order: int,
        fsync: bool) -> dict:
    directory = Path(tempfile.mkdtemp(prefix="bazar-soak-"))
    try:
        seed = directory / "books.json"
        seed.write_text(json.dumps([{"title": f"Soak book {i}", "topic": "soak", "price": 1.0, "stock": MAX_STOCK}
                                    for i in range(1, BOOKS + 1)]))
        path = write_config(directory, catalog=catalog, order=order, frontends=1, catalog_seed=str(seed),
                            retention={"outcomes": retention}, raft={"fsync": fsync})
        cluster = LocalCluster(path, log_dir=directory / "logs")
        try:
            cluster.start(timeout=60)
            buyers = Buyers(cluster.frontend_url, purchases, clients)
            started = time.monotonic()
            buyers.start()
            samples = [sample(cluster, buyers, started)]
            print_sample(samples[0], header=True)
            next_mark = every
            while buyers.answered < purchases:
                time.sleep(0.5)
                if buyers.answered >= next_mark:
                    samples.append(sample(cluster, buyers, started))
                    print_sample(samples[-1], header=False)
                    next_mark += every
            buyers.join()
            samples.append(sample(cluster, buyers, started))
            print_sample(samples[-1], header=False)
        finally:
            cluster.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return {"purchases": purchases, "clients": clients, "retention_s": retention, "groups": [catalog, order],
            "fsync": fsync, "statuses": {str(k): v for k, v in buyers.statuses.items()}, "samples": samples,
            "growth_after_2x_retention": growth(samples, 2 * retention)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bazar.bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--purchases", type=int, default=200_000)
    parser.add_argument("--clients", type=int, default=16, help="concurrent buyers (threads)")
    parser.add_argument("--retention", type=float, default=30.0, help="retention.outcomes, seconds")
    parser.add_argument("--every", type=int, default=10_000, help="sample every this many purchases")
    parser.add_argument("--catalog", type=int, default=3, choices=(1, 3, 5), help="catalog replicas")
    parser.add_argument("--order", type=int, default=3, choices=(1, 3, 5), help="order replicas")
    parser.add_argument("--no-fsync", dest="fsync", action="store_false", help="raft.fsync: false")
    parser.add_argument("--json", help="also write the samples to this file")
    args = parser.parse_args(argv)
    result = run(args.purchases, args.clients, args.retention, args.every, args.catalog, args.order, args.fsync)
    print(f"answers: {result['statuses']}")
    print(f"RSS growth after 2x retention ({2 * args.retention:g} s):")
    for name, figures in result["growth_after_2x_retention"].items():
        print(f"  {name}: {figures['from_mib']} -> {figures['to_mib']} MiB ({figures['growth_mib']:+} MiB, "
              f"{figures['per_10k_purchases_mib']:+} MiB per 10,000 purchases, purchases "
              f"{figures['from_purchases']} -> {figures['to_purchases']})")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
