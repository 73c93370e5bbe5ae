"""The `bazar` command: run a cluster, one of its processes, or look at it."""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time

from bazar import __version__
from bazar.cluster.config import ConfigError, load
from bazar.web import logs

DEFAULT_CONFIG = os.environ.get("BAZAR_CONFIG", "cluster.yaml")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bazar", description="Bazar: a replicated bookstore.")
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="cluster file (default: %(default)s)")
    parser.add_argument("--version", action="version", version=f"bazar {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("up", help="run every process of the cluster here, in the foreground")
    node = commands.add_parser("node", help="run one catalog or order replica")
    node.add_argument("id")
    frontend = commands.add_parser("frontend", help="run one frontend (the first listed by default)")
    frontend.add_argument("id", nargs="?")
    status = commands.add_parser("status", help="print every replica's role, term and indexes")
    status.add_argument("--json", action="store_true", help="print the groups as JSON (as /cluster has them)")
    status.add_argument("--watch", action="store_true", help="print again every --interval seconds until Ctrl-C")
    status.add_argument("--interval", type=float, default=1.0, help="seconds between --watch prints (default 1)")
    commands.add_parser("prometheus-config", help="print a Prometheus configuration that scrapes every "
                                                  "process of the cluster file")
    health = commands.add_parser("health", help="exit 0 if a process of the cluster answers here "
                                                "(a container's HEALTHCHECK)")
    health.add_argument("id", nargs="?", help="the process to ask (default: any in the file)")
    _add_extensions(commands)

    # Accept --config after the subcommand too (`bazar node catalog1 --config x.yaml`).
    args, rest = parser.parse_known_args(argv)
    if rest:
        late = argparse.ArgumentParser(add_help=False)
        late.add_argument("--config")
        extra, unknown = late.parse_known_args(rest)
        if unknown:
            parser.error("unrecognized arguments: " + " ".join(unknown))
        if extra.config:
            args.config = extra.config

    handler = COMMANDS[args.command]
    try:
        config = load(args.config) if getattr(handler, "needs_config", True) else None
        logs.setup(_process_name(config, args))
        return handler(config, args)
    except ConfigError as exc:
        print(f"bazar: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # everything started has been stopped on the way out
        print(f"bazar {args.command}: interrupted", file=sys.stderr)
        return 130


def _up(config, args) -> int:
    from bazar.cluster.local import LocalCluster

    cluster = LocalCluster(config.path)
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        cluster.start(wait=False)
        print(f"bazar: starting {len(cluster.names)} processes from {config.path}", flush=True)
        try:
            cluster.wait_ready(timeout=60)
        except (TimeoutError, RuntimeError) as exc:
            print(f"bazar: {exc}", file=sys.stderr)
            return 1
        print(f"bazar: ready. Storefront and API: {cluster.frontend_url}/  "
              f"(dashboard: {cluster.frontend_url}/dashboard). Ctrl-C stops everything.", flush=True)
        while not stopping:
            for name, proc in list(cluster.processes.items()):
                if proc.poll() is not None:
                    print(f"bazar: {name} exited ({proc.returncode}); restarting it", flush=True)
                    cluster.start_process(name)
            time.sleep(0.5)
        return 0
    finally:
        print("bazar: stopping every process", flush=True)
        cluster.stop()


def _node(config, args) -> int:
    from bazar.node.replica import run

    run(config, args.id)
    return 0


def _frontend(config, args) -> int:
    from bazar.frontend.server import run

    run(config, args.id)
    return 0


def _status(config, args) -> int:
    """Print the table (or JSON) once, or with --watch every --interval seconds until Ctrl-C.
    The exit status is the last print's: 0 only if both groups had a leader with quorum."""
    import json

    from bazar.web.admin import Admin, format_table, ready

    if args.interval <= 0:
        raise ConfigError("--interval must be a positive number of seconds")
    admin = Admin(config)
    groups: dict = {}
    try:
        while True:
            groups = admin.collect()
            if args.json:
                print(json.dumps({"groups": groups, "ready": ready(groups)}), flush=True)
            else:
                if args.watch and sys.stdout.isatty():
                    print("\033[H\033[J", end="")  # clear the terminal, as watch(1) does
                print(format_table(groups), flush=True)
            if not args.watch:
                break
            time.sleep(args.interval)
    except KeyboardInterrupt:  # how --watch is ended: not an error
        if not args.watch:
            raise
    return 0 if groups and ready(groups) else 1


def _prometheus_config(config, args) -> int:
    from bazar.cluster.prometheus import prometheus_yaml

    print(prometheus_yaml(config), end="")
    return 0


def _health(config, args) -> int:
    """Exit 0 if process `id` answers GET /healthz on this machine; without an id, if any
    process of the file does. In a container with a network of its own, the only process
    that can answer is the container's own, so the image's HEALTHCHECK needs no id."""
    import requests

    processes = config.catalog + config.order + config.frontends
    if args.id is not None:
        processes = [p for p in processes if p.id == args.id]
        if not processes:
            raise ConfigError(f"no process named {args.id!r} in {config.path}")
    for process in processes:
        try:
            if requests.get(process.health_url, timeout=2).status_code == 200:
                return 0
        except requests.RequestException:
            continue
    return 1


COMMANDS = {"up": _up, "node": _node, "frontend": _frontend, "status": _status, "health": _health,
            "prometheus-config": _prometheus_config}


def _add_extensions(commands) -> None:
    """Commands that live in their own packages register here."""
    for module_name in ("bazar.chaos.cli", "bazar.bench.cli"):
        try:
            module = __import__(module_name, fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name not in (module_name, module_name.rpartition(".")[0]):
                raise
            continue
        COMMANDS.update(module.register(commands))


def _process_name(config, args) -> str:
    """The `node` field of this process's log lines: its id (catalog1, frontend1, ...) when
    it runs one process of the cluster, else the command's name."""
    if args.command == "frontend" and config is not None:
        return config.frontend(args.id).id
    return args.id if args.command == "node" else args.command


if __name__ == "__main__":
    sys.exit(main())
