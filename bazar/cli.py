"""The `bazar` command: run a cluster, one of its processes, or look at it."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time

from bazar.cluster.config import ConfigError, load

DEFAULT_CONFIG = os.environ.get("BAZAR_CONFIG", "cluster.yaml")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bazar", description="Bazar: a replicated bookstore.")
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="cluster file (default: %(default)s)")
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("up", help="run every process of the cluster here, in the foreground")
    node = commands.add_parser("node", help="run one catalog or order replica")
    node.add_argument("id")
    frontend = commands.add_parser("frontend", help="run one frontend (the first listed by default)")
    frontend.add_argument("id", nargs="?")
    commands.add_parser("status", help="print every replica's role, term and indexes")
    health = commands.add_parser("health", help="exit 0 if a process of the cluster answers here "
                                                "(a container's HEALTHCHECK)")
    health.add_argument("id", nargs="?", help="the process to ask (default: any in the file)")
    backup = commands.add_parser("backup", help="write both groups' state, read on their leaders at a "
                                                "committed index, to FILE (online)")
    backup.add_argument("file")
    restore = commands.add_parser("restore", help="fill the empty data directories of every replica "
                                                  "(or of the ones named) from FILE, before the cluster starts")
    restore.add_argument("file")
    restore.add_argument("nodes", nargs="*", metavar="id", help="only these replicas (the ones this machine runs)")
    _add_extensions(commands)

    # Accept --config after the subcommand too (`bazar node catalog1 --config x.yaml`): each
    # subcommand knows it, and leaves the main parser's value alone when it is not given.
    for subcommand in commands.choices.values():
        subcommand.add_argument("--config", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    _setup_logging(getattr(args, "id", None) or args.command)
    handler = COMMANDS[args.command]
    try:
        config = load(args.config) if getattr(handler, "needs_config", True) else None
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
    if cluster.secret_generated:
        print(f"bazar: no cluster secret given (${config.secret_env}); generated one in "
              f"{config.generated_secret_file} (owner-only)", flush=True)
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

    os.umask(0o077)  # journals, snapshots and their temporary files: readable by the owner only
    run(config, args.id)
    return 0


def _frontend(config, args) -> int:
    from bazar.frontend.server import run

    run(config, args.id)
    return 0


def _status(config, args) -> int:
    from bazar.web.admin import Admin, format_table, ready

    groups = Admin(config).collect()
    print(format_table(groups))
    return 0 if ready(groups) else 1


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


def _backup(config, args) -> int:
    from pathlib import Path

    from bazar.node import backup

    try:
        taken = backup.take(config)
        backup.write(taken, Path(args.file))
    except (backup.BackupError, OSError) as exc:
        print(f"bazar backup: {exc}", file=sys.stderr)
        return 1
    for group, part in taken["groups"].items():
        print(f"bazar backup: {group} at index {part['index']} (digest {part['digest']})")
    print(f"bazar backup: wrote {args.file}")
    return 0


def _restore(config, args) -> int:
    from pathlib import Path

    from bazar.node import backup

    try:
        written = backup.restore(config, backup.read(Path(args.file)), args.nodes or None)
    except backup.BackupError as exc:
        print(f"bazar restore: {exc}; nothing was written", file=sys.stderr)
        return 1
    except OSError as exc:  # the disk, part-way: the data directories filled so far are whole
        print(f"bazar restore: stopped writing under {config.data_dir}: {exc}", file=sys.stderr)
        return 1
    print(f"bazar restore: filled {len(written)} data directories under {config.data_dir}; start the cluster")
    return 0


COMMANDS = {"up": _up, "node": _node, "frontend": _frontend, "status": _status, "health": _health,
            "backup": _backup, "restore": _restore}


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


def _setup_logging(process: str) -> None:
    logging.basicConfig(
        level=os.environ.get("BAZAR_LOG_LEVEL", "INFO"),
        format=f"%(asctime)s {process} %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)


if __name__ == "__main__":
    sys.exit(main())
