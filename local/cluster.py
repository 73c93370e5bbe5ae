"""Start, stop, kill, pause and restart a whole Bazar cluster on this machine.

`bazar up`, the integration tests, `bazar chaos` and `bazar bench` all run
clusters through this one class, so they all clean up the same way: every
process is started with a parent-death signal, and `stop()` ends every process
it started (SIGCONT first for paused ones, SIGTERM, then SIGKILL).
"""
from __future__ import annotations

import ctypes
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import requests
import yaml

from bazar.cluster.config import ClusterConfig, load
from bazar.cluster.secrets import INSECURE_ENV
from bazar.web.admin import Admin
from bazar.web.signing import PeerAuth

PR_SET_PDEATHSIG = 1
STOP_GRACE_SECONDS = 5.0


def _die_with_parent() -> None:  # runs in the child between fork and exec
    # SIGKILL, not SIGTERM: a child paused by the nemesis (SIGSTOP) ignores SIGTERM until
    # continued, and a replica loses nothing to SIGKILL (its journal is already on disk).
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class LocalCluster:
    """Every process a cluster file names, run as children of this process.

    Processes must be started from a thread that outlives them: Linux sends the
    parent-death signal when the *thread* that forked a child exits.

    `launcher(name)`, if given, is put before each process's command: a program that
    sets up where it runs and then executes it, such as `ip netns exec <namespace>`.
    """

    def __init__(self, config_path: str | os.PathLike, log_dir: str | os.PathLike | None = None,
                 env: dict | None = None, launcher: Callable[[str], list[str]] | None = None,
                 generate_secret: bool = True, generate_admin_token: bool = True) -> None:
        self.config_path = Path(config_path).resolve()
        self.config: ClusterConfig = load(self.config_path)
        self.log_dir = Path(log_dir) if log_dir else None
        self.env = {**os.environ, **(env or {})}
        self.launcher = launcher or (lambda name: [])
        self.processes: dict[str, subprocess.Popen] = {}
        self.paused: set[str] = set()
        # Always a secret: with none given, one is made and kept in the data directory, where
        # every process of this cluster (and `bazar status`) finds it (ClusterConfig.secret).
        # Only a test of what an open cluster allows passes generate_secret=False.
        given = self.config.secret(self.env)
        self.secret_generated = given is None and generate_secret
        self.secret = self.config.ensure_secret(self.env) if self.secret_generated else given
        if self.secret is None:
            self.env[INSECURE_ENV] = "1"  # or its processes would make one for themselves
        # Always an admin token too, made and kept beside the secret when none is given, where
        # the frontends, the tools and the tests read it (ClusterConfig.admin_token). Only a test
        # of a store with no admin passes generate_admin_token=False.
        # admin_token_generated: the token is the one kept in the data directory (made now or
        # by an earlier run), not one the operator gave.
        given_token = self.config.given_admin_token(self.env)
        self.admin_token_generated = given_token is None and generate_admin_token
        self.admin_token = (self.config.ensure_admin_token(self.env) if self.admin_token_generated
                            else self.config.admin_token(self.env))
        # Sees the replicas as Bazar's own processes do (it signs with the same secret).
        self.admin = Admin(self.config, secret=self.secret)
        # For `requests` calls straight to a replica: `requests.get(url, auth=cluster.peer_auth)`.
        self.peer_auth = PeerAuth(self.secret)

    # -- whole cluster ------------------------------------------------------

    @property
    def names(self) -> list[str]:
        c = self.config
        return [n.id for n in c.catalog + c.order] + [f.id for f in c.frontends]

    @property
    def admin_headers(self) -> dict[str, str]:
        """What a request to an admin route of the frontends sends (nothing if no token)."""
        return {"Authorization": f"Bearer {self.admin_token}"} if self.admin_token else {}

    @property
    def frontend_url(self) -> str:
        return self.config.frontends[0].http.url

    def start(self, wait: bool = True, timeout: float = 30.0) -> "LocalCluster":
        """Start every replica and frontend; with `wait`, return once the cluster is ready."""
        for name in self.names:
            self.start_process(name)
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until every frontend says both groups have a leader with quorum."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._raise_if_exited()
            if self.is_ready():
                return
            time.sleep(0.1)
        raise TimeoutError(f"cluster not ready after {timeout:.0f} s (logs: {self.log_dir})")

    def is_ready(self) -> bool:
        """Whether every frontend answers /readyz (both groups lead with quorum, caught up)."""
        return all(_ok(f.http.url + "/readyz") for f in self.config.frontends)

    def stop(self) -> None:
        """End every process this cluster started; safe to call twice."""
        for name in list(self.processes):
            self.resume(name)
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for proc in self.processes.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.processes.clear()
        self.paused.clear()

    def __enter__(self) -> "LocalCluster":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- one process --------------------------------------------------------

    def start_process(self, name: str) -> subprocess.Popen:
        """Start (or restart) the replica or frontend called `name`."""
        old = self.processes.get(name)
        if old is not None and old.poll() is None:
            raise RuntimeError(f"{name} is already running (pid {old.pid})")
        kind = "frontend" if name in {f.id for f in self.config.frontends} else "node"
        command = self.launcher(name) + [sys.executable, "-m", "bazar", kind, name,
                                         "--config", str(self.config_path)]
        output = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            output = open(self.log_dir / f"{name}.log", "ab")
        proc = subprocess.Popen(command, env=self.env, stdout=output, stderr=subprocess.STDOUT if output else None,
                                preexec_fn=_die_with_parent, cwd=str(Path(__file__).resolve().parent.parent))
        if output is not None:
            output.close()
        self.processes[name] = proc
        self.paused.discard(name)
        return proc

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send `sig` (SIGKILL by default) to `name` and reap it."""
        proc = self.processes[name]
        if proc.poll() is None:
            proc.send_signal(sig)
            proc.wait(STOP_GRACE_SECONDS)
        self.paused.discard(name)

    def pause(self, name: str) -> None:
        """SIGSTOP: the process keeps its sockets but does nothing, like a long GC pause."""
        self.processes[name].send_signal(signal.SIGSTOP)
        self.paused.add(name)

    def resume(self, name: str) -> None:
        if name in self.paused:
            proc = self.processes.get(name)
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
            self.paused.discard(name)

    def is_running(self, name: str) -> bool:
        proc = self.processes.get(name)
        return proc is not None and proc.poll() is None

    def pid(self, name: str) -> int:
        return self.processes[name].pid

    def children(self) -> dict[str, list[int]]:
        """The live child processes of each running process, by name (a replica's forked
        snapshot writer, say): one scan of /proc, so a fault can strike while a child works."""
        names = {proc.pid: name for name, proc in self.processes.items() if proc.poll() is None}
        found: dict[str, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                # "pid (comm) state ppid ...": comm may hold spaces, so split after its ")".
                state, ppid = stat.read_text().rpartition(")")[2].split()[:2]
            except (OSError, ValueError):
                continue  # the process ended while we looked
            if int(ppid) in names and state != "Z":
                found.setdefault(names[int(ppid)], []).append(int(stat.parent.name))
        return found

    # -- helpers ------------------------------------------------------------

    def leader(self, group: str) -> str | None:
        """The id of the replica of `group` that says it leads, if exactly one does."""
        return self.admin.leader(group, among=[
            n.id for n in self.config.group(group)
            if n.id not in self.paused and (n.id not in self.processes or self.is_running(n.id))])

    def status(self, name: str, timeout: float = 0.5) -> dict | None:
        """Replica `name`'s GET /status (role, term, commit and applied index), or None if it does not answer."""
        return self.admin.status(name, timeout)

    def log_path(self, name: str) -> str:
        """Where process `name` writes its output."""
        return str(self.log_dir / f"{name}.log") if self.log_dir else "this terminal"

    def _raise_if_exited(self) -> None:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with status {proc.returncode} (log: {self.log_path(name)})")


class GaveUp(Exception):
    """A child keeps dying as soon as it starts: restarting it again would not help."""


class Supervisor:
    """Restarts the children of a LocalCluster that exit, as `bazar up` does.

    A child that dies is restarted after a back-off that doubles with every death in a
    row that came soon after a start (within `start_window` seconds): a crash-looping
    child is not restarted twice a second forever, and one that ran for a while and then
    crashed is restarted at once. After `max_start_deaths` such deaths in a row the
    supervisor gives up (GaveUp): a child that cannot even start (its port is taken,
    its data directory refuses to open, its configuration is wrong) needs an operator.
    `say` reports every death, restart and the giving up.
    """

    def __init__(self, cluster: LocalCluster, say: Callable[[str], None], first_delay: float = 0.5,
                 max_delay: float = 30.0, start_window: float = 10.0, max_start_deaths: int = 5,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cluster = cluster
        self.say = say
        self.first_delay, self.max_delay = first_delay, max_delay
        self.start_window, self.max_start_deaths = start_window, max_start_deaths
        self.clock = clock
        self.started_at: dict[str, float] = {name: clock() for name in cluster.processes}
        self.start_deaths: dict[str, int] = {}  # deaths in a row soon after a start, by child
        self.restart_at: dict[str, float] = {}  # children waiting out their back-off

    def check(self) -> None:
        """Notice children that exited, restart those whose back-off is over; GaveUp when one
        has died at start `max_start_deaths` times in a row. Call it every few tenths of a second."""
        now = self.clock()
        for name, proc in list(self.cluster.processes.items()):
            if name in self.restart_at or proc.poll() is None:
                continue
            lived = now - self.started_at.get(name, now)
            deaths = self.start_deaths.get(name, 0) + 1 if lived < self.start_window else 1
            self.start_deaths[name] = deaths
            where = self.cluster.log_path(name)
            if deaths >= self.max_start_deaths:
                raise GaveUp(f"giving up: {name} died within {self.start_window:g} s of starting "
                             f"{deaths} times in a row (last exit status {proc.returncode}; "
                             f"its output: {where})")
            delay = min(self.max_delay, self.first_delay * 2 ** (deaths - 1))
            self.say(f"{name} exited with status {proc.returncode} after {lived:.1f} s; "
                     f"restarting it in {delay:g} s")
            self.restart_at[name] = now + delay
        for name, when in list(self.restart_at.items()):
            if when <= now:
                del self.restart_at[name]
                self.cluster.start_process(name)
                self.started_at[name] = self.clock()
                self.say(f"{name} restarted (pid {self.cluster.pid(name)})")


def _ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=0.5).status_code == 200
    except requests.RequestException:
        return False


def write_config(directory: str | os.PathLike, catalog: int = 3, order: int = 3, frontends: int = 1,
                 distinct_hosts: bool = False, **sections) -> Path:
    """Write a cluster file for a throwaway cluster on free loopback ports; return its path.

    With `distinct_hosts`, every process gets its own loopback address
    (127.0.0.11, .12, ...), so that firewall rules can cut single links.
    Data lives under `directory`; `sections` override top-level keys (raft=..., cache=...).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    count = catalog + order + frontends
    hosts = iter([f"127.0.0.{11 + i}" for i in range(count)] if distinct_hosts else ["127.0.0.1"] * count)
    ports = iter(free_ports(2 * (catalog + order) + frontends))

    def replicas(prefix: str, count: int) -> list[dict]:
        result = []
        for i in range(1, count + 1):
            host = next(hosts)
            result.append({"id": f"{prefix}{i}", "raft": f"{host}:{next(ports)}", "http": f"{host}:{next(ports)}"})
        return result

    seed = Path(__file__).resolve().parent.parent / "node" / "books.json"
    doc = {"data_dir": str(directory / "data"), "catalog_seed": str(seed),
           "catalog": replicas("catalog", catalog), "order": replicas("order", order),
           "frontends": [{"id": f"frontend{i}", "http": f"{next(hosts)}:{next(ports)}"}
                         for i in range(1, frontends + 1)]}
    doc.update(sections)
    path = directory / "cluster.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def ephemeral_port_range() -> tuple[int, int]:
    """The ports the kernel gives to outgoing connections (Linux's default if unknown)."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


def free_ports(count: int, host: str = "") -> list[int]:
    """`count` distinct TCP ports that are free on every local address right now.

    Chosen outside the kernel's ephemeral range: a port is bound only when its process
    starts, maybe a minute after the cluster file was written, and meanwhile any outgoing
    connection on the machine could have been given it as its own local port."""
    low, high = ephemeral_port_range()
    candidates = [p for p in range(10000, 65536) if not low <= p <= high]
    ports: set[int] = set()
    while len(ports) < count:
        port = random.choice(candidates)
        with socket.socket() as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
        ports.add(port)
    return sorted(ports)
