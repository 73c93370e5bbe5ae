"""`bazar bench`: registered into the `bazar` command by bazar/cli.py."""
from __future__ import annotations

from pathlib import Path

from bazar import plotting


def register(subparsers) -> dict:
    parser = subparsers.add_parser(
        "bench", help="benchmark latency, throughput, failover, recovery and memory",
        description="Start throwaway clusters on free loopback ports (the --config file is not used), "
                    "measure them, and write results.json, results.md and latency_cdf.png.")
    parser.add_argument("--quick", action="store_true",
                        help="50 samples per operation, short loads, 1 failover round, 5,000-purchase journal")
    parser.add_argument("--out", default="bench/results", help="output folder (default: %(default)s)")
    _bench.needs_config = False
    return {"bench": _bench}


def _bench(config, args) -> int:
    from bazar.bench import report, runner
    from bazar.bench.settings import Settings

    settings = Settings.make(args.quick, args.out)
    results = runner.run(settings)
    paths = report.write(results, Path(args.out))
    print(report.table_markdown(results))
    print()
    warning = report.busy_warning(results)
    if warning:
        print(warning)
        print()
    for line in report.not_measured(results):
        print(line)
        print()
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    if "plot" not in paths:
        print(plotting.skipped_line(report.PLOT_NAME))
    return 0
