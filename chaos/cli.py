"""`bazar chaos`: the command-line face of chaos/runner.py."""
from __future__ import annotations

from pathlib import Path

from bazar.chaos.nemesis import FAULT_KINDS


def register(commands) -> dict:
    parser = commands.add_parser(
        "chaos", help="run a workload against a fresh local cluster while injecting faults, then check it",
        description="Starts its own cluster on loopback (one 127.0.0.x per process), runs careful clients "
                    "and a seeded nemesis together, heals, waits for convergence and checks the history. "
                    "Exit status 0 only when every check passed.")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of workload (default 60)")
    parser.add_argument("--clients", type=int, default=6, help="concurrent clients (default 6)")
    parser.add_argument("--faults", default=",".join(FAULT_KINDS),
                        help=f"comma-separated fault kinds (default all: {','.join(FAULT_KINDS)}); 'none' for none")
    parser.add_argument("--seed", type=int, default=1, help="makes the fault schedule reproducible")
    parser.add_argument("--out", type=Path, default=Path("chaos-results"), help="output folder")
    parser.add_argument("--target", action="store_true",
                        help="run against the already-running cluster of --config instead of starting one "
                             "(workload and checks only: use with --faults none)")
    _chaos.needs_config = False  # it starts its own cluster
    return {"chaos": _chaos}


def _chaos(config, args) -> int:
    from bazar.chaos.runner import ChaosOptions, run

    faults = () if args.faults == "none" else tuple(f.strip() for f in args.faults.split(",") if f.strip())
    unknown = [f for f in faults if f not in FAULT_KINDS]
    if unknown:
        print(f"bazar chaos: unknown fault kind(s): {', '.join(unknown)} (known: {', '.join(FAULT_KINDS)})")
        return 2
    if args.duration <= 0 or args.clients <= 0:
        print("bazar chaos: --duration and --clients must be positive")
        return 2
    if args.target and faults:
        print("bazar chaos: --target runs against a cluster that is not ours to kill, pause or cut; "
              "add --faults none")
        return 2
    return run(ChaosOptions(duration=args.duration, clients=args.clients, faults=faults,
                            seed=args.seed, out=args.out, target=Path(args.config) if args.target else None))
