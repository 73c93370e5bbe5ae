"""The shape of a bench run's results, shared by the runner (bench/phases.py) and the
report (bench/report.py): the operations measured, under one key and label each.

    {"environment": {cores, loadavg_before/after, python, pysyncobj, date,
                     wrk: its version line, or None when it is not installed, ...},
     "settings":    Settings.to_json(): sizes, goals and lab figures of the run,
     "operations":  {key: {"label", "latency_source",
                           "latency": {p50_ms, p99_ms, mean_ms, server_cpu_ms_per_op, ...},
                           "load": {throughput_rps, ok_total, statuses, latency_under_load, ...},
                           "wrk": bench/wrk.py's record, floor and purchase_hot only (None when
                                  wrk is not installed): {connections, threads, duration_s,
                                  requests, ok, non_2xx, socket_errors, throughput_rps,
                                  latency_under_load, server_cpu_ms_per_op, generator_cpu_share,
                                  stock_check (purchase_hot)},
                           ...checks of that operation}},
     "rss_mb":      {process: MB}, "failover": {group: {...}}, "recovery": {kind: {...}},
     "targets":     [{key, goal, value, unit, met, note?}]}   (added by the report; met None:
                                                               not measured or not judged)

Labels may name the run's settings (`{clients}`), so they always say what was run.
"""
from __future__ import annotations

OPERATIONS = {
    "floor": "floor: hello-world Flask + waitress",
    "info_cached": "info, cache hit (cached)",
    "info_local": "info, cache miss (local read)",
    "info_strong": "info, strong (read index, no log entry)",
    "search": "search (cached)",
    "purchase_3x3": "purchase, 3+3 replicas",
    "purchase_1x1": "purchase, 1+1 replicas",
    "purchase_spread": "purchases, spread ({clients} clients, {clients} items)",
    "purchase_hot": "purchases, hot item ({clients} clients, 1 item)",
    "purchase_fsync_on": "purchase, 3+3, raft.fsync on (default)",
    "purchase_fsync_off": "purchase, 3+3, raft.fsync off",
}

# The latency CDF's curves, fastest first.
CDF_ORDER = ["floor", "info_cached", "info_local", "info_strong", "search", "purchase_1x1",
             "purchase_3x3", "purchase_spread", "purchase_hot"]


def label(key: str, settings: dict) -> str:
    """Operation `key`'s label for a run with `settings` (Settings.to_json())."""
    return OPERATIONS[key].format(**settings)
