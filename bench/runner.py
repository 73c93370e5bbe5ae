"""Run every benchmark phase (bench/phases.py) on throwaway clusters; collect the results.

Every process is a child of this one (LocalCluster) and every temporary directory is
removed in `finally` blocks, also when a phase fails. The results follow bench/schema.py.
"""
from __future__ import annotations

import datetime
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from bazar.bench import wrk
from bazar.bench.load import ClientPool
from bazar.bench.phases import Phases, progress
from bazar.bench.settings import Settings


def environment() -> dict:
    try:
        from importlib.metadata import version
        pysyncobj_version = version("pysyncobj")
    except Exception:  # pragma: no cover - reported, not fatal
        pysyncobj_version = "unknown"
    return {"cores": os.cpu_count(), "loadavg_before": list(os.getloadavg()),
            "python": platform.python_version(), "python_implementation": platform.python_implementation(),
            "pysyncobj": pysyncobj_version, "platform": platform.platform(),
            # Encrypted Raft links and signed requests cost CPU: every throwaway cluster has a
            # secret (the one given, else one LocalCluster makes), so both are always measured.
            "cluster_secret": "given" if os.environ.get("BAZAR_SECRET") else "generated",
            # The C load generator of the floor's and the hot item's throughput; None: not installed.
            "wrk": wrk.version(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def run(settings: Settings) -> dict:
    started = time.monotonic()
    results: dict = {"environment": environment(), "settings": settings.to_json(),
                     "operations": {}, "rss_mb": {}}
    workdir = Path(tempfile.mkdtemp(prefix="bazar-bench-"))
    pool = None
    try:
        if results["environment"]["wrk"] is None:
            progress("wrk not found: the hot-item target will not be measured; " + wrk.INSTALL)
        progress(f"starting {settings.clients} client processes")
        pool = ClientPool(settings.clients)
        bench = Phases(settings, pool, workdir, results)
        bench.replicated()
        bench.unreplicated()
        bench.durability()
        bench.recovery()
    except BaseException:
        if settings.keep_logs_on_failure:
            _keep_logs(workdir, settings.out)
        raise
    finally:
        if pool is not None:
            pool.close()
        shutil.rmtree(workdir, ignore_errors=True)
    results["environment"]["loadavg_after"] = list(os.getloadavg())
    results["environment"]["wall_seconds"] = round(time.monotonic() - started, 1)
    return results


def _keep_logs(workdir: Path, out: Path) -> None:
    logs = [p for p in workdir.glob("*/logs") if p.is_dir()]
    if not logs:
        return
    target = out / "failed-run-logs"
    shutil.rmtree(target, ignore_errors=True)
    for path in logs:
        shutil.copytree(path, target / path.parent.name, dirs_exist_ok=True)
    progress(f"the run failed; process logs kept in {target}")
