"""Turn a bench run's results into results.json, results.md (the summary table) and latency_cdf.png."""
from __future__ import annotations

import json
from pathlib import Path

from bazar import plotting
from bazar.bench.schema import CDF_ORDER
from bazar.bench.settings import GOALS, LAB as DEFAULT_LAB
from bazar.bench.wrk import INSTALL as WRK_INSTALL

PLOT_NAME = "latency_cdf.png"


def goals(results: dict) -> dict:
    """The goals the run was made with; bench/settings.py's for the goals a run predates
    (its own goals that are no longer targets are not judged)."""
    return {**GOALS, **(results.get("settings", {}).get("goals") or {})}


def lab(results: dict) -> dict:
    return results.get("settings", {}).get("lab") or DEFAULT_LAB


def clients(results: dict) -> int:
    return results.get("settings", {}).get("clients", 16)


def write(results: dict, out: Path) -> dict[str, Path]:
    """Write the three files into `out`; return the paths of those written, by kind.

    The plot ("plot", latency_cdf.png) is left out, and not written, when matplotlib is not
    installed (the "tools" extra); the JSON and the table are always written.
    """
    out.mkdir(parents=True, exist_ok=True)
    results["targets"] = evaluate(results)
    paths = {"json": out / "results.json", "markdown": out / "results.md"}
    paths["json"].write_text(json.dumps(results, indent=1, sort_keys=False) + "\n")
    paths["markdown"].write_text(markdown(results))
    if plot_cdf(results, out / PLOT_NAME):
        paths["plot"] = out / PLOT_NAME
    return paths


# -- derived numbers ----------------------------------------------------------------

def _lat(results: dict, key: str, stat: str) -> float | None:
    return results["operations"].get(key, {}).get("latency", {}).get(stat)


def _thr(results: dict, key: str) -> float | None:
    return results["operations"].get(key, {}).get("load", {}).get("throughput_rps")


def _diff(a, b):
    return None if a is None or b is None else a - b


def _ratio(a, b) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def replica_rss(results: dict) -> dict[str, float]:
    """RSS of the 3+3 cluster's replicas (the ones the target is about)."""
    return {name: mb for name, mb in results.get("rss_mb", {}).items()
            if mb is not None and (name.startswith("catalog") or name.startswith("order")) and "(" not in name}


def cpu_per_op(results: dict, key: str) -> float | None:
    """Server CPU per sequential request of operation `key`, summed over its processes (ms)."""
    per_op = results["operations"].get(key, {}).get("latency", {}).get("server_cpu_ms_per_op")
    return sum(per_op.values()) if per_op else None


def wrk_run(results: dict, key: str) -> dict | None:
    return results["operations"].get(key, {}).get("wrk")


def wrk_missing_note(results: dict) -> str:
    """Why the figures that need wrk are absent."""
    env = results.get("environment", {})
    if "wrk" in env and env["wrk"] is None:
        return "wrk is not installed"
    return "no wrk figures in these results"


def evaluate(results: dict) -> list[dict]:
    """Every target with the measured value and whether it is met (None when not measured,
    with a `note` saying why when the reason is not obvious)."""
    t = goals(results)
    targets = []

    def add(key, goal, value, ok, unit="", note=None):
        target = {"key": key, "goal": goal, "value": value, "unit": unit,
                  "met": None if value is None or ok is None else bool(ok)}
        if note:
            target["note"] = note
        targets.append(target)

    floor_p50 = _lat(results, "floor", "p50_ms")
    p50, p99 = _lat(results, "purchase_3x3", "p50_ms"), _lat(results, "purchase_3x3", "p99_ms")

    # Issue 19's targets: the speed of a purchase in units of the floor, measured in the same run.
    ratio = _ratio(p50, floor_p50)
    add("purchase_vs_floor", f"purchase (3+3) p50 <= {t['purchase_vs_floor']:g}x floor p50", ratio,
        None if ratio is None else ratio <= t["purchase_vs_floor"], "x")
    cpu, floor_cpu = cpu_per_op(results, "purchase_3x3"), cpu_per_op(results, "floor")
    ratio = _ratio(cpu, floor_cpu)
    add("purchase_cpu_vs_floor", f"server CPU per purchase (3+3, all processes) <= "
        f"{t['purchase_cpu_vs_floor']:g}x the floor's per request", ratio,
        None if ratio is None else ratio <= t["purchase_cpu_vs_floor"], "x",
        "the floor's CPU per request was not measured" if cpu is not None and ratio is None else None)
    hot = results["operations"].get("purchase_hot", {})
    hot_wrk, floor_wrk = wrk_run(results, "purchase_hot"), wrk_run(results, "floor")
    goal = (f"hot item (wrk, {clients(results)} connections) >= {t['hot_item_vs_floor']:g}x the floor's "
            f"wrk throughput, stock exact, zero oversold")
    if hot_wrk and floor_wrk:
        ratio = _ratio(hot_wrk.get("throughput_rps"), floor_wrk.get("throughput_rps"))
        checks = [hot.get("oversold_check"), hot.get("sellout_check"), hot_wrk.get("stock_check")]
        exact = all(c is not None and c.get("consistent", False) for c in checks)
        oversold = sum(c.get("oversold", 0) + c.get("stock_taken_without_success", 0)
                       + c.get("sold_without_stock", 0) for c in checks if c is not None)
        add("hot_item_vs_floor", goal, ratio,
            None if ratio is None else ratio >= t["hot_item_vs_floor"] and exact and oversold == 0, "x",
            None if exact and oversold == 0 else "stock not exact" if oversold == 0 else f"{oversold} oversold")
    else:
        add("hot_item_vs_floor", goal, None, None, "x", wrk_missing_note(results))
    ratio = _ratio(_lat(results, "info_cached", "p50_ms"), floor_p50)
    add("cached_vs_floor", f"cached info p50 <= {t['cached_vs_floor']}x floor p50", ratio,
        None if ratio is None else ratio <= t["cached_vs_floor"], "x")

    # Issue 5's.
    miss = _lat(results, "info_local", "p50_ms")
    add("cache_miss_p50", f"cache miss p50 <= {t['cache_miss_p50_ms']} ms", miss,
        None if miss is None else miss <= t["cache_miss_p50_ms"], "ms")
    add("purchase_p99", f"purchase (3+3) p99 <= {t['purchase_p99_ms']:g} ms", p99,
        None if p99 is None else p99 <= t["purchase_p99_ms"], "ms")
    overhead = _ratio(p50, _lat(results, "purchase_1x1", "p50_ms"))
    add("replication_overhead", f"purchase p50 3+3 / 1+1 <= {t['replication_overhead']}x", overhead,
        None if overhead is None else overhead <= t["replication_overhead"], "x")
    for group in ("catalog", "order"):
        median = results.get("failover", {}).get(group, {}).get("median_s")
        add(f"failover_{group}", f"{group} leader failover median <= {t['failover_s']} s", median,
            None if median is None else median <= t["failover_s"], "s")
    rss = replica_rss(results)
    worst = max(rss.values()) if rss else None
    add("replica_rss", f"replica RSS <= {t['replica_rss_mb']:.0f} MB (largest of the 3+3)", worst,
        None if worst is None else worst <= t["replica_rss_mb"], "MB")
    recovery = results.get("recovery", {}).get("journal", {})
    seconds, count = recovery.get("ready_s"), recovery.get("purchases")
    ok = None
    if seconds is not None and count is not None and count >= t["recovery_purchases"]:
        ok = seconds <= t["recovery_s"]  # only judged on a full-size journal (not in --quick)
    add("recovery", f"{t['recovery_purchases']:,}-purchase journal recovered in <= {t['recovery_s']:.0f} s",
        seconds, ok, "s", None if ok is not None or seconds is None else
        f"judged on a journal of {t['recovery_purchases']:,} purchases only")
    return targets


def not_measured(results: dict) -> list[str]:
    """A line for each target left unjudged for a reason worth acting on (wrk missing)."""
    lines = []
    for target in evaluate(results):
        if target["met"] is None and target["key"] == "hot_item_vs_floor":
            note = target.get("note") or "not measured"
            hint = f"; {WRK_INSTALL}" if note == "wrk is not installed" else ""
            lines.append(f"Not measured: {target['goal']} ({note}{hint}).")
    return lines


# -- Markdown -------------------------------------------------------------------------

def _ms(value) -> str:
    if value is None:
        return "-"
    return f"{value:.2f} ms" if value < 100 else f"{value:.0f} ms"


def _s(value) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _x(value) -> str:
    # Three decimals, so a ratio that misses its target by a hair does not print as meeting it.
    if value is None:
        return "-"
    return f"{value:.3f}x" if value < 10 else f"{value:.2f}x" if value < 100 else f"{value:.1f}x"


def _rps(value) -> str:
    return "-" if value is None else f"{value:,.0f}/s"


def _met(target: dict | None) -> str:
    if target is None:
        return ""
    if target["met"] is None:
        return "not measured" if target["value"] is None and target["key"] == "hot_item_vs_floor" else "n/a"
    return "PASS" if target["met"] else "FAIL" + (f" ({target['note']})" if target.get("note") else "")


def rows(results: dict) -> list[list[str]]:
    """The summary table's rows, in the order of the lab report's summary plus Bazar's extras."""
    ops = results["operations"]
    targets = {t["key"]: t for t in evaluate(results)}
    floor_p50 = _lat(results, "floor", "p50_ms")
    LAB = lab(results)
    table = []

    def op_row(key, lab_cell, ratio_cell, goal="", met=""):
        entry = ops.get(key)
        if entry is None:
            return
        lat = entry.get("latency", {})
        label = entry["label"]
        if entry.get("latency_source", "sequential") != "sequential":
            label += " - latency under load"
        table.append([label, lab_cell, _ms(lat.get("p50_ms")), _ms(lat.get("p99_ms")), _ms(lat.get("mean_ms")),
                      _rps(_thr(results, key)), ratio_cell, goal, met])

    def wrk_row(key, label, ratio_cell, target=None):
        """A wrk run of operation `key` (its figures under load), when the results have one."""
        run = ops.get(key, {}).get("wrk")
        if key not in ops:
            return
        if run is None:
            if target is not None:  # a target that needs wrk: say it was not measured, and why
                table.append([label, "-", "-", "-", "-", "-", f"not measured: {target.get('note')}",
                              target["goal"], _met(target)])
            return
        under = run["latency_under_load"]
        table.append([label, "-", _ms(under["p50_ms"]), _ms(under["p99_ms"]), _ms(under["mean_ms"]),
                      _rps(run["throughput_rps"]), ratio_cell(run), target and target["goal"] or "",
                      _met(target)])

    def vs_floor(key):
        return _x(_ratio(_lat(results, key, "p50_ms"), floor_p50)) + " floor"

    floor_cpu = cpu_per_op(results, "floor")
    op_row("floor", "-", "1.00x floor" + (f"; server CPU {floor_cpu:.2f} ms per request" if floor_cpu else ""))
    wrk_row("floor", f"floor with wrk ({clients(results)} connections) - latency under load",
            lambda run: f"wrk's own CPU: {_pct(run.get('generator_cpu_share'))} of the cores")
    t = targets.get("cached_vs_floor")
    op_row("info_cached", "-", vs_floor("info_cached"), t and t["goal"], _met(t))
    t = targets.get("cache_miss_p50")
    local = _lat(results, "info_local", "p50_ms")
    op_row("info_local", f"{LAB['lookup_without_cache']:.2f} ms without cache, {LAB['cache_miss']:.2f} ms cache miss",
           f"{_x(_ratio(local, LAB['cache_miss']))} report (miss); {vs_floor('info_local')}", t and t["goal"], _met(t))
    op_row("info_strong", "-", vs_floor("info_strong"))
    op_row("search", "-", vs_floor("search"))
    p50_t, p99_t = targets.get("purchase_vs_floor"), targets.get("purchase_p99")
    goal = f"{p50_t['goal'].replace('purchase (3+3) ', '')}; {p99_t['goal'].replace('purchase (3+3) ', '')}"
    met = ("n/a" if p50_t["met"] is None or p99_t["met"] is None else
           "PASS" if p50_t["met"] and p99_t["met"] else
           "FAIL (" + " ".join(name for name, t in (("p50", p50_t), ("p99", p99_t)) if not t["met"]) + ")")
    op_row("purchase_3x3", f"{LAB['buy_replicated']:.2f} ms (buy, replication)",
           f"{vs_floor('purchase_3x3')}; "
           f"{_x(_ratio(_lat(results, 'purchase_3x3', 'p50_ms'), LAB['buy_replicated']))} report", goal, met)
    t = targets.get("purchase_cpu_vs_floor")
    cpu = cpu_per_op(results, "purchase_3x3")
    if cpu is not None:
        processes = len(ops["purchase_3x3"]["latency"]["server_cpu_ms_per_op"])
        table.append([f"server CPU per sequential purchase (3+3), summed over its {processes} processes",
                      "-", "-", "-", "-", "-",
                      f"{cpu:.2f} ms against the floor's {_ms(floor_cpu)} per request: {_x(t['value'])}",
                      t["goal"], _met(t)])
    op_row("purchase_1x1", f"{LAB['buy_unreplicated']:.2f} ms (buy, no replication)",
           f"{_x(_ratio(_lat(results, 'purchase_1x1', 'p50_ms'), LAB['buy_unreplicated']))} report")
    t = targets.get("replication_overhead")
    if t is not None:
        thr_ratio = _ratio(_thr(results, "purchase_3x3"), _thr(results, "purchase_1x1"))
        table.append(["replication overhead: purchase 3+3 / 1+1", f"{LAB['replication_overhead']:.2f}x",
                      _x(t["value"]), _x(_ratio(_lat(results, 'purchase_3x3', 'p99_ms'),
                                                _lat(results, 'purchase_1x1', 'p99_ms'))),
                      _x(_ratio(_lat(results, 'purchase_3x3', 'mean_ms'), _lat(results, 'purchase_1x1', 'mean_ms'))),
                      f"{_x(thr_ratio)} (3+3 / 1+1)",
                      f"{_x(_ratio(t['value'], LAB['replication_overhead']))} report", t["goal"],
                      _met(t) + (" (vacuous: 1+1 is slower than 3+3, see note)"
                                 if t["value"] is not None and t["value"] < 1 else "")])
    op_row("purchase_fsync_off", "-", "")
    fsyncs = ops.get("purchase_fsync_on", {}).get("disk_fsync_ms", {})
    three = fsyncs.get("three_at_once_p50_ms")
    inside = ops.get("purchase_fsync_on", {}).get("replica_fsyncs")
    path = ""
    if inside:
        groups = inside["groups"]
        on_path = {name: g for name, g in groups.items() if g.get("on_path", True)}
        after = [f"{g['per_purchase']:g} x {_ms(g['mean_ms'])} ({name}, after the answer)"
                 for name, g in groups.items() if name not in on_path]
        path = ("; leaders' fsyncs per purchase, timed in the replicas: " + " + ".join(
            f"{g['per_purchase']:g} x {_ms(g['mean_ms'])} ({name})" for name, g in on_path.items())
            + f" = {_ms(inside['path_ms'])} on the buyer's path"
            + (" (and " + ", ".join(after) + ")" if after else "") + ", against p50 on - off "
            + _ms(_diff(_lat(results, "purchase_fsync_on", "p50_ms"), _lat(results, "purchase_fsync_off", "p50_ms"))))
    fsync_ratio = _ratio(_lat(results, "purchase_fsync_on", "p50_ms"), _lat(results, "purchase_fsync_off", "p50_ms"))
    op_row("purchase_fsync_on", "-", f"{_x(fsync_ratio)} fsync off (side by side; information, not a target); "
           f"one disk fsync {_ms(fsyncs.get('before', {}).get('p50_ms'))}"
           + (f" alone, {_ms(three)} each with three at once (one disk for all replicas)" if three else "") + path)
    t = targets.get("hot_item_vs_floor")
    hot = ops.get("purchase_hot", {})
    over = hot.get("oversold_check", {})
    sell = hot.get("sellout_check", {})
    op_row("purchase_hot", "-",
           f"oversold {over.get('oversold', '-')}, sell-out {sell.get('successes', '-')}/{sell.get('initial_stock', '-')}"
           f" sold, oversold {sell.get('oversold', '-')}")

    def hot_cell(run):
        check = run.get("stock_check", {})
        floor_rps = (ops.get("floor", {}).get("wrk") or {}).get("throughput_rps")
        unanswered = _diff(check.get("stock_taken"), check.get("successes"))
        return (f"{_x(t['value'])} the floor's wrk {_rps(floor_rps)}; stock taken {check.get('stock_taken', '-')}"
                f" = {check.get('successes', '-')} answered + {'-' if unanswered is None else unanswered} "
                f"unanswered (at most {check.get('uncounted_at_most', '-')}: in flight when wrk stopped or "
                f"answered with an error): {'exact' if check.get('consistent') else 'NOT EXACT'}")

    wrk_row("purchase_hot", f"purchases, hot item with wrk ({clients(results)} connections, 1 item)"
            " - latency under load", hot_cell, t)
    op_row("purchase_spread", "-", f"{_x(_ratio(_thr(results, 'purchase_spread'), _thr(results, 'purchase_hot')))}"
           " hot-item throughput")
    for group in ("catalog", "order"):
        f = results.get("failover", {}).get(group)
        t = targets.get(f"failover_{group}")
        if f:
            table.append([f"failover: SIGKILL {group} leader -> first purchase ({len(f['samples_s'])} rounds; "
                          f"p50 = median, p99 = max)", "-", _s(f["median_s"]), _s(f["max_s"]), _s(f["mean_s"]),
                          "-", "-", t["goal"], _met(t)])
    rec = results.get("recovery", {})
    t = targets.get("recovery")
    if rec.get("journal"):
        j, e, c = rec["journal"], rec.get("empty", {}), rec.get("compacted", {})
        table.append([f"restart recovery: 1-node catalog, journal of {j['purchases']:,} purchases, all "
                      "replayed (process start -> serves final stock)", "-", _s(j["ready_s"]), "-", "-", "-",
                      f"empty journal: {_s(e.get('ready_s'))}; default log compaction: "
                      f"{_s(c.get('ready_s'))}", t["goal"], _met(t)])
    rss = replica_rss(results)
    t = targets.get("replica_rss")
    if rss:
        frontend = results["rss_mb"].get("frontend1")
        table.append([f"resident memory, {len(rss)} replicas (p50 = median, p99 = largest)", "-",
                      f"{sorted(rss.values())[len(rss) // 2]:.1f} MB", f"{max(rss.values()):.1f} MB",
                      f"{sum(rss.values()) / len(rss):.1f} MB", "-",
                      f"frontend {frontend:.1f} MB, floor {results['rss_mb'].get('floor') or 0:.1f} MB"
                      if frontend else "-", t["goal"], _met(t)])
    return table


def header(results: dict) -> list[str]:
    return ["operation", "lab report figure", "Bazar p50", "p99", "mean",
            f"throughput ({clients(results)} clients)", "ratio vs floor or vs report", "target", "met"]


def table_markdown(results: dict) -> str:
    head = header(results)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for row in rows(results):
        lines.append("| " + " | ".join(str(c).replace("|", "/") for c in row) + " |")
    return "\n".join(lines)


def markdown(results: dict) -> str:
    env = results["environment"]
    s = results["settings"]
    ops = results["operations"]
    parts = [f"# Bazar benchmark{' (quick)' if s['quick'] else ''}", "",
             f"{env['date']} - {env['cores']} cores, Python {env['python']}, PySyncObj {env['pysyncobj']}, "
             f"{env['platform']}", "",
             f"Load average before: {_load(env.get('loadavg_before'))}; after: {_load(env.get('loadavg_after'))}. "
             f"Whole run: {env.get('wall_seconds', '-')} s.", "",
             f"Latency: {s['samples']} sequential requests per operation on one keep-alive session "
             f"(after a warm-up). Throughput: {s['clients']} concurrent clients, one process and keep-alive "
             f"session each, for {s['load_seconds']} s. Hot-item and spread purchases show the latency of "
             f"the concurrent clients. The floor and the hot item are also driven by wrk (a load generator "
             f"in C, {s.get('wrk_threads', 2)} threads) over {s['clients']} keep-alive connections for "
             f"{s.get('wrk_seconds', '-')} s each, so that the generator's own CPU does not decide their "
             f"throughput. Every process (servers and load generator) shares the same {env['cores']} cores.", "",
             table_markdown(results), ""]
    for line in not_measured(results):
        parts += [line, ""]
    warning = busy_warning(results)
    if warning:
        parts += [f"**{warning}**", ""]
    targets = evaluate(results)
    overhead = next((t["value"] for t in targets if t["key"] == "replication_overhead"), None)
    if overhead is not None and overhead < 1:
        parts += ["Note: purchases with 1+1 replicas were slower than with 3+3, so the 3+3 / 1+1 ratio does "
                  "not measure replication's cost. On loopback a follower's ack arrives within a fraction of a "
                  "millisecond, while in a one-member PySyncObj group no ack wakes the Raft tick thread: an "
                  "appended entry commits on the next tick (consensus/settings.py ticks groups of one every "
                  "1 ms), and a purchase makes three commits. Replication itself costs about nothing here; "
                  "compare the server CPU per request in the details below.", ""]
    met = [t for t in targets if t["met"] is not None]
    if met:
        parts += [f"Targets met: {sum(t['met'] for t in met)} of {len(met)} measured.", ""]
    parts += ["## Details", ""]
    details = ["| operation | samples | errors | server CPU per request (busiest process) | "
               "p50 under load | p99 under load | load requests ok | load statuses | load generator CPU |",
               "|---|---|---|---|---|---|---|---|---|"]
    for key, entry in ops.items():
        lat, load = entry.get("latency", {}), entry.get("load", {})
        under = load.get("latency_under_load", {})
        details.append(f"| {entry['label']} | {lat.get('n', 0)} | {lat.get('errors') or '-'} | "
                       f"{_cpu(lat.get('server_cpu_ms_per_op'))} | "
                       f"{_ms(under.get('p50_ms'))} | {_ms(under.get('p99_ms'))} | {load.get('ok_total', '-')} | "
                       f"{_statuses(load.get('statuses'))} | {_pct(load.get('client_cpu_share'))} |")
    for key, entry in ops.items():
        run = entry.get("wrk")
        if not run:
            continue
        under = run["latency_under_load"]
        errors = {k: v for k, v in run.get("socket_errors", {}).items() if v}
        details.append(f"| {entry['label']}, wrk ({run['connections']} connections, {run['duration_s']:.1f} s) | - | - | "
                       f"{_cpu(run.get('server_cpu_ms_per_op'))} under load | {_ms(under['p50_ms'])} | "
                       f"{_ms(under['p99_ms'])} | {run['ok']} | non-2xx: {run['non_2xx']}"
                       f"{', socket errors: ' + str(errors) if errors else ''} | "
                       f"{_pct(run.get('generator_cpu_share'))} |")
    details.append("")
    details.append("Server CPU per request is the user + system time the server processes used during the "
                   "sequential run, divided by its requests (10 ms clock ticks, so coarse for short runs). "
                   "Unlike latency it barely depends on other load on the machine; with 2 cores, "
                   "2000 ms / (CPU per request) bounds the throughput. Load generator CPU is the share of "
                   f"all cores the {clients(results)} client processes (or wrk) used during the throughput run; "
                   "on the wrk rows, the server CPU is per answered request under that load.")
    parts += details + [""]
    hot = ops.get("purchase_hot", {})
    for name in ("oversold_check", "sellout_check"):
        if name in hot:
            parts.append(f"- hot item, {name.replace('_', ' ')}: {hot[name]}")
    if (hot.get("wrk") or {}).get("stock_check"):
        parts.append(f"- hot item with wrk, stock check: {hot['wrk']['stock_check']}")
    if "stock_check" in ops.get("purchase_spread", {}):
        parts.append(f"- spread purchases, stock check: {ops['purchase_spread']['stock_check']}")
    for key in ("purchase_3x3", "purchase_1x1"):
        parts += purchase_breakdown(ops.get(key, {}))
    cache = ops.get("info_cached", {}).get("frontend_cache")
    parts.append(f"- frontend cache counters (GET /cluster) around the cached-info runs: {cache}")
    for group, f in results.get("failover", {}).items():
        rounds = "; ".join(f"{r['killed']} -> {r['new_leader']}: {r['seconds'] * 1000:.0f} ms, "
                           f"{r['attempts']} attempts, rejoined in {r.get('rejoin_s', 0):.1f} s" for r in f["rounds"])
        parts.append(f"- {group} failover rounds: {rounds}")
    for name, r in results.get("recovery", {}).items():
        parts.append(f"- recovery ({name}): {r['purchases']:,} purchases, data {r['data_bytes'] / 1e6:.1f} MB, "
                     f"first HTTP answer {_s(r['first_http_answer_s'])}, final stock served {_s(r['ready_s'])}, "
                     f"RSS after {r['rss_mb_after'] or 0:.1f} MB; journal built in {r['build_s']:.1f} s "
                     f"({r.get('build_purchases_per_s') or 0:,.0f} purchases/s applied in-process, longest stall "
                     f"between two applied purchases {_s(r.get('build_longest_stall_s'))})")
    rss = results.get("rss_mb", {})
    parts.append("- resident memory (MB): " + ", ".join(f"{k} {v:.1f}" for k, v in rss.items() if v is not None))
    parts.append("")
    return "\n".join(parts)


def busy_warning(results: dict) -> str | None:
    """A warning when other work was competing for the CPU while the bench ran."""
    env = results["environment"]
    cores = env.get("cores") or 1
    before = (env.get("loadavg_before") or [0])[0]
    after = (env.get("loadavg_after") or [0])[0]
    if before > 0.75 * cores:
        return (f"Warning: the machine was already busy when the run started (1-minute load average "
                f"{before:.2f} on {cores} cores; {after:.2f} at the end, which includes the bench's own "
                f"processes). Other processes competed for the CPU: latencies are inflated and throughput "
                f"understated. Re-run on an idle machine for figures to quote.")
    return None


def _load(values) -> str:
    return "-" if not values else " / ".join(f"{v:.2f}" for v in values)


def _statuses(statuses: dict | None) -> str:
    if not statuses:
        return "-"
    return ", ".join(f"{status}: {count}" for status, count in sorted(statuses.items()))


def purchase_breakdown(entry: dict) -> list[str]:
    """Where a sequential purchase's time and server CPU go: the mean of each stage on the
    coordinating order replica, and the CPU per purchase of each process role."""
    lines = []
    stages = entry.get("stages_ms")
    if stages:
        lines.append(f"- {entry['label']}, stages on the order replica (mean; the buyer waits for take_stock, "
                     "and begin only when the catalog cannot decide in time; finish times the record from the "
                     "answer until applied): "
                     + ", ".join(f"{name} {_ms(s.get('mean_ms'))}" for name, s in stages.items()))
    roles = entry.get("server_cpu_ms_by_role")
    if roles:
        lines.append(f"- {entry['label']}, server CPU per purchase by role: "
                     + ", ".join(f"{role} {r['ms']:.2f} ms" + (f" ({r['processes']} together)" if r["processes"] > 1 else "")
                                 for role, r in sorted(roles.items())))
    return lines


def _cpu(per_op: dict | None) -> str:
    if not per_op:
        return "-"
    name, busiest = max(per_op.items(), key=lambda kv: kv[1])
    return f"{sum(per_op.values()):.2f} ms ({name} {busiest:.2f} ms)"


def _pct(value) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


# -- the CDF plot -------------------------------------------------------------------

def plot_cdf(results: dict, path: Path) -> bool:
    """Draw every operation's latency CDF into `path`; False, with nothing written, when
    matplotlib is not installed (the "tools" extra)."""
    plt = plotting.pyplot()
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(13, 6), dpi=110)
    ops = results["operations"]
    palette = iter(["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink",
                    "tab:olive", "tab:cyan"] * 3)  # no grey: grey marks the lab report's figures
    for key in CDF_ORDER + [k for k in ops if k not in CDF_ORDER]:
        entry = ops.get(key)
        samples = sorted((entry or {}).get("latency", {}).get("samples_ms") or [])
        if not samples:
            continue
        under_load = entry.get("latency_source", "sequential") != "sequential"
        n = len(samples)
        ys = [(i + 1) / n for i in range(n)]
        label = f"{entry['label']}{' (under load)' if under_load else ''}: p50 {_ms(entry['latency']['p50_ms'])}"
        ax.step(samples, ys, where="post", label=label, linestyle="--" if under_load else "-",
                linewidth=1.4 if key != "floor" else 2.2, color="black" if key == "floor" else next(palette))
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("fraction of requests")
    ax.set_ylim(0, 1.01)
    ax.grid(True, which="both", alpha=0.3)
    LAB = lab(results)
    for key, style in (("buy_replicated", ":"), ("cache_miss", ":")):
        ax.axvline(LAB[key], color="grey", linestyle=style, linewidth=1)
        ax.text(LAB[key], 0.35, f" lab report: {key.replace('_', ' ')} {LAB[key]} ms", rotation=90,
                fontsize=7, color="grey", va="bottom")
    env = results["environment"]
    ax.set_title(f"Bazar latency CDF - {env['cores']} cores, Python {env['python']}, "
                 f"{results['settings']['samples']} sequential samples per operation", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True
