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
READY_SECONDS = 60  # `bazar up` gives up if the cluster is not ready this long after starting


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
    status.add_argument("--json", action="store_true", help="print the groups as JSON (as /cluster shows them to the admin)")
    status.add_argument("--watch", action="store_true", help="print again every --interval seconds until Ctrl-C")
    status.add_argument("--interval", type=float, default=1.0, help="seconds between --watch prints (default 1)")
    prometheus = commands.add_parser("prometheus-config", help="print a Prometheus configuration that "
                                                               "scrapes every process of the cluster file")
    prometheus.add_argument("--admin-token-file", default="admin-token",
                            help="the file Prometheus reads the admin token from, to scrape the frontends' "
                                 "/metrics (default: admin-token, beside the configuration)")
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
    restore.add_argument("--unsigned", action="store_true",
                         help="accept a backup that carries no signature (an older Bazar's, or one from a "
                              "cluster without a secret): only if you know where it came from")
    member = commands.add_parser("member", help="add a replica to its running group, or remove one")
    member.add_argument("op", choices=("add", "remove"))
    member.add_argument("id", help="the replica, as the cluster file names it (with its addresses)")
    corrections = commands.add_parser("corrections", help="list Bazar's corrections to PySyncObj: what each "
                                                          "replaces, its source digest, the rule it enforces, its tests")
    corrections.add_argument("--json", action="store_true", help="print them as JSON")
    commands.add_parser("secret", help="print a fresh cluster secret (256 random bits) for "
                                       "$BAZAR_SECRET or the file $BAZAR_SECRET_FILE names")
    _add_extensions(commands)

    # Accept --config after the subcommand too (`bazar node catalog1 --config x.yaml`): each
    # subcommand knows it, and leaves the main parser's value alone when it is not given.
    for subcommand in commands.choices.values():
        subcommand.add_argument("--config", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

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
    from bazar.local.cluster import GaveUp, LocalCluster, Supervisor

    cluster = LocalCluster(config.path)
    if cluster.secret_generated:
        print(f"bazar: no cluster secret given (${config.secret_env}); generated one in "
              f"{config.generated_secret_file} (owner-only)", flush=True)
    if cluster.admin_token_generated:
        print(f"bazar: admin token (for PUT/POST /books and GET /orders: "
              f"Authorization: Bearer <token>) in {config.generated_admin_token_file}", flush=True)
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    def say(message: str) -> None:
        print(f"bazar: {message}", flush=True)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        cluster.start(wait=False)
        say(f"starting {len(cluster.names)} processes from {config.path}")
        supervisor = Supervisor(cluster, say)
        ready_by = time.monotonic() + READY_SECONDS
        ready = False
        while not stopping:
            try:
                supervisor.check()
            except GaveUp as exc:
                print(f"bazar: {exc}; stopping everything", file=sys.stderr, flush=True)
                return 1
            if not ready and cluster.is_ready():
                ready = True
                say(f"ready. Storefront and API: {cluster.frontend_url}/  "
                    f"(dashboard: {cluster.frontend_url}/dashboard). Ctrl-C stops everything.")
            elif not ready and time.monotonic() > ready_by:
                print(f"bazar: cluster not ready after {READY_SECONDS} s; stopping everything",
                      file=sys.stderr, flush=True)
                return 1
            time.sleep(0.2)
        return 0
    finally:
        say("stopping every process")
        cluster.stop()


def _node(config, args) -> int:
    from bazar.consensus import BindFailed
    from bazar.node.replica import run
    from bazar.web.server import cap_malloc_arenas

    cap_malloc_arenas()  # before any thread allocates (web/server.py says why)
    os.umask(0o077)  # journals, snapshots and their temporary files: readable by the owner only
    config.secret_for_this_process()
    config.admin_token_for_this_process()  # made with the secret, for the frontends that need it
    try:
        run(config, args.id)
    except BindFailed as exc:
        print(f"bazar node {args.id}: {exc}", file=sys.stderr)
        return 1
    return 0


def _frontend(config, args) -> int:
    from bazar.frontend.server import run
    from bazar.web.server import cap_malloc_arenas

    cap_malloc_arenas()
    config.secret_for_this_process()  # the admin token: read (or made) by run
    run(config, args.id)
    return 0


def _member(config, args) -> int:
    """Ask the group's leader to add or remove replica `id` (one change at a time). The
    file must name the replica; the running group is found from the file's other replicas,
    and followed as it changes (web/client.py)."""
    from bazar.web.client import GroupClient, Refused, Unavailable

    node = config.node(args.id)
    body = {"op": args.op, "id": node.id, "raft": str(node.raft)}
    if args.op == "add":
        body["http"] = str(node.http)
    asked = [n.http.url for n in config.group(node.group) if args.op == "remove" or n.id != node.id]
    # A leader answers within the commit timeout (done, refused, or 503: run it again); a
    # replica that says nothing for longer is paused or cut off: ask the next one.
    client = GroupClient(asked, config.secret(), timeout=3 * config.raft.commit_timeout,
                         write_attempt_timeout=config.raft.commit_timeout + 1.0)
    # A 503 is "ask again" (an election, a follower that knows no leader yet); a change is
    # safe to repeat, so keep asking until the deadline.
    deadline = time.monotonic() + 3 * config.raft.commit_timeout
    while True:
        try:
            reply = client.write("POST", "/members", body)
        except Unavailable as exc:
            print(f"bazar member {args.op}: no {node.group} replica answered ({exc})", file=sys.stderr)
            return 1
        except Refused as exc:
            print(f"bazar member {args.op}: {exc} (is this the cluster's secret?)", file=sys.stderr)
            return 1
        if reply.status_code != 503 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    try:
        answer = reply.json()
    except ValueError:
        answer = {"error": reply.body.decode(errors="replace")}
    if reply.status_code != 200:
        print(f"bazar member {args.op} {node.id}: refused: {answer.get('error')}", file=sys.stderr)
        return 1
    members = ", ".join(f"{m['id']} (raft {m['raft']}, {m['http']})" for m in answer["members"])
    done = "added to" if args.op == "add" else "removed from"
    print(f"bazar: {node.id} {done} the {node.group} group; its members: {members}")
    if args.op == "add":
        print(f"bazar: now start it: bazar node {node.id} --config {config.path}")
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

    print(prometheus_yaml(config, admin_token_file=args.admin_token_file), end="")
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
    if "mac" not in taken:
        print("bazar backup: the cluster has no secret, so the backup is not signed: "
              "restoring it will need --unsigned", file=sys.stderr)
    print(f"bazar backup: wrote {args.file}")
    return 0


def _restore(config, args) -> int:
    from pathlib import Path

    from bazar.node import backup

    try:
        checked = backup.read(Path(args.file), config.secret(), unsigned=args.unsigned)
        written = backup.restore(config, checked, args.nodes or None)
    except backup.BackupError as exc:
        print(f"bazar restore: {exc}; nothing was written", file=sys.stderr)
        return 1
    except OSError as exc:  # the disk, part-way: the data directories filled so far are whole
        print(f"bazar restore: stopped writing under {config.data_dir}: {exc}", file=sys.stderr)
        return 1
    print(f"bazar restore: filled {len(written)} data directories under {config.data_dir}; start the cluster")
    return 0


def _corrections(config, args) -> int:
    """Print the corrections index (consensus/corrections.py), joined with what was installed."""
    import json

    from bazar.consensus import corrections
    rows = corrections.table()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        print(f"{row['replaces']}  sha256 {row['digest'][:16]}...")
        print(f"    rule:      {row['rule']}")
        print(f"    caught by: {row['caught_by']}")
        for test in row["tests"]:
            print(f"    test:      {test}")
    print(f"{len(rows)} corrections to PySyncObj 0.3.17, each refused at start unless its source digest matches")
    return 0


_corrections.needs_config = False

def _secret(config, args) -> int:
    """Print a secret good for a cluster (`bazar up` makes one itself when given none)."""
    from bazar.cluster.secrets import new_secret

    print(new_secret())
    return 0


_secret.needs_config = False


COMMANDS = {"up": _up, "node": _node, "frontend": _frontend, "status": _status, "health": _health,
            "backup": _backup, "restore": _restore, "member": _member,
            "prometheus-config": _prometheus_config, "secret": _secret, "corrections": _corrections}


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
