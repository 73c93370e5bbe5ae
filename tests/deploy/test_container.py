"""The image and the compose cluster, for real: Docker, debootstrap, docker-compose.yml.

In order, as a deployment would go (each step's time is printed at the end):

1. A Docker daemon. If `docker info` answers, that daemon is used. Otherwise the test
   starts its own, `dockerd --iptables=false --ip6tables=false --ip-forward=false
   --bridge=none`, with its exec root, socket, config file and log in a temporary
   directory (DOCKER_HOST points there), and stops it at the end. Its data root, where
   images live, is the image cache (see below): /var/cache/bazar-tests/dockerd, or
   $BAZAR_TEST_CACHE/dockerd; one run at a time uses it (a lock file next to it, which a
   second run waits for). The storage driver is dockerd's own choice: overlay2 where the
   kernel and the cache's file system allow it, else vfs.
   Docker must leave the firewall alone: the chaos tests use their own iptables chain
   (BAZAR-CHAOS) and tests/deploy/test_multihost.py a bridge in network namespaces, and
   both would break if Docker set FORWARD to DROP, loaded br_netfilter or turned on
   forwarding. The test compares `iptables -S` (filter and nat), `ip6tables -S`,
   net.ipv4.ip_forward, br_netfilter and the host's bridge/veth links before and after.
2. A base image from Debian's archive (deploy/base-image.sh: debootstrap, docker import;
   no registry is needed), tagged bazar-base:bookworm-<hash of what it is made from: the
   script, the mirror and the CA bundle it copies in>, and the Bazar image on it, built by
   Compose from the compose file's own build section (`network: host`, BASE_IMAGE=that tag).
   Both are cached between runs, keyed by their inputs: base-image.sh keeps a tag that
   exists, and Docker's build cache reuses each layer whose instruction and copied files
   (by content, not by date: a fresh clone hits it) are unchanged, so a run with nothing
   changed rebuilds nothing, and a code change rebuilds only the last layers.
3. The compose cluster (catalog1-3, order1-3, frontend1), under a project name of its
   own, on a free port (BAZAR_PORT, published on 127.0.0.1 only) and with the secret in a
   file (BAZAR_SECRET_FILE, readable by the image's uid 10001): once every container is
   healthy and /readyz answers 200, the public contract through the published port.
4. `docker kill` of the catalog leader's container (found through the frontend's
   /cluster and confirmed by `bazar status`, run inside the compose network with
   `docker exec`): purchases carry on, another replica leads.
5. `down` and `up` (volumes kept): every acknowledged order is still there, completed,
   the stock still matches, an old Idempotency-Key still names its old order.
6. `down -v`: no container, network or volume of the project is left (anonymous volumes
   included). A daemon the test started is stopped and its temporary directory deleted;
   it must hold no container and no volume at all by then: only the two images stay, on
   purpose (bazar-base:bookworm-<hash> and bazar:container-test), on any daemon. The image
   a rebuild replaced, base images of other hashes and dangling layers are removed, so the
   cache holds one version of each.

Compose: `docker compose` (v2) when that plugin is installed, else Debian's `docker-compose`
(v1). Debian bookworm ships only v1 (docker-compose 1.29.2), so on a Debian CI machine this
tests v1. Builds use the classic builder (DOCKER_BUILDKIT=0): Debian's Docker has no buildx.

Needs root (dockerd, debootstrap, iptables); installs docker.io, docker-compose, debootstrap
and iptables with apt-get when missing. The first run on a machine builds both images
(minutes: debootstrap and pip); later runs reuse them (the step times show where it went).
"""
from __future__ import annotations

import json
import os
import shutil
import fcntl
import hashlib
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
IMAGE = "bazar:container-test"
BASE_REPOSITORY = "bazar-base"
# The image cache: the data root of the dockerd this test starts (not the checkout's: CI
# clones afresh every run).
CACHE = Path(os.environ.get("BAZAR_TEST_CACHE", "/var/cache/bazar-tests"))
DEBIAN_MIRROR = "http://deb.debian.org/debian"  # base-image.sh's default
CATALOG = ["catalog1", "catalog2", "catalog3"]
ORDER = ["order1", "order2", "order3"]
SERVICES = CATALOG + ORDER + ["frontend1"]
IMAGE_UID = 10001  # the Dockerfile's `bazar` user: the secret file must be readable by it
DOS = "How to get a good grade in DOS in 40 minutes a day"

pytestmark = [
    pytest.mark.container,
    pytest.mark.slow,
    pytest.mark.timeout(1200),  # a hard stop only: the whole run takes 5 to 8 minutes here
    pytest.mark.skipif(not os.path.isdir("/proc/sys/net") or os.geteuid() != 0,
                       reason="starting dockerd, debootstrap and reading iptables need root on Linux"),
]


# -- the machine ----------------------------------------------------------------------

def run(cmd: list[str], env: dict | None = None, timeout: float = 300, check: bool = True,
        cwd: Path = REPO) -> subprocess.CompletedProcess:
    """Run `cmd` to its end; on failure raise with the end of its output."""
    try:
        result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{' '.join(cmd)}: no answer after {timeout} s\n"
                             f"{tail(exc.stdout)}\n{tail(exc.stderr)}") from None
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {result.returncode}\n--- stdout\n{tail(result.stdout)}"
                             f"\n--- stderr\n{tail(result.stderr)}")
    return result


def tail(text, lines: int = 40) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return "\n".join((text or "").splitlines()[-lines:])


def compose_command() -> list[str] | None:
    """`docker compose` (v2) if that plugin is there, else Debian's docker-compose (v1)."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"],
                                                 capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def ensure_tools() -> list[str]:
    """Install what is missing (as `./bazar.sh test` does); return the compose command."""
    packages = {"dockerd": "docker.io", "docker": "docker.io", "debootstrap": "debootstrap",
                "iptables": "iptables"}
    missing = sorted({package for tool, package in packages.items() if shutil.which(tool) is None})
    if shutil.which("docker-compose") is None and (shutil.which("docker") is None or compose_command() is None):
        missing.append("docker-compose")
    if missing:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run(["apt-get", "update", "-qq"], env=env, timeout=600)
        # As bazar.sh does: no service started (docker.io's dockerd would set up iptables).
        policy = Path("/usr/sbin/policy-rc.d")
        created = not policy.exists()
        if created:
            policy.write_text("#!/bin/sh\nexit 101\n")
            policy.chmod(0o755)
        try:
            run(["apt-get", "install", "-y", "-qq", *missing], env=env, timeout=900)
        finally:
            if created:
                policy.unlink()
    compose = compose_command()
    assert compose is not None, "neither `docker compose` nor docker-compose after installing docker-compose"
    return compose


def host_network() -> dict:
    """What Docker must not change on this machine. Rules of the chain BAZAR-CHAOS are left
    out: a chaos run elsewhere on the machine may add and remove its own rules meanwhile.
    A tool that is not installed yet gives None (ensure_tools may install it), not compared."""
    state: dict = {}
    for tool, table in (("iptables", "filter"), ("iptables", "nat"), ("ip6tables", "filter")):
        if shutil.which(tool) is None:
            state[f"{tool} -t {table} -S"] = None
            continue
        result = subprocess.run([tool, "-t", table, "-S"], capture_output=True, text=True)
        lines = result.stdout.splitlines() if result.returncode == 0 else [f"failed: {result.stderr.strip()}"]
        state[f"{tool} -t {table} -S"] = [line for line in lines if "BAZAR-CHAOS" not in line]
    state["net.ipv4.ip_forward"] = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
    state["br_netfilter loaded"] = Path("/sys/module/br_netfilter").exists()
    bridge = Path("/proc/sys/net/bridge")
    state["net.bridge.*"] = {p.name: p.read_text().strip() for p in sorted(bridge.iterdir())} if bridge.is_dir() else None
    names = os.listdir("/sys/class/net")  # this network namespace's links
    state["docker-like links"] = sorted(n for n in names if n == "docker0" or n.startswith(("br-", "veth")))
    return state


def mounts_under(root: Path) -> list[str]:
    """Mount points at or below `root`, deepest first."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == str(root) or point.startswith(f"{root}/"):
            points.append(point)
    return sorted(points, key=len, reverse=True)


def processes_mentioning(text: str) -> list[tuple[int, str]]:
    """Processes whose command line names `text` (a directory only this test uses)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append((int(entry.name), cmdline.strip()))
    return found


def base_image_tag() -> str:
    """bazar-base:bookworm-<hash of base-image.sh, its mirror and the CA bundle it copies in>.

    base-image.sh keeps a tag that exists: with its inputs in the tag, an image made from an
    older script (or mirror, or bundle) is never taken for the current one."""
    digest = hashlib.sha256()
    digest.update((REPO / "deploy" / "base-image.sh").read_bytes())
    digest.update(os.environ.get("DEBIAN_MIRROR", DEBIAN_MIRROR).encode())
    bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    digest.update(bundle.read_bytes() if bundle.exists() else b"no bundle")
    return f"{BASE_REPOSITORY}:bookworm-{digest.hexdigest()[:12]}"


BASE_IMAGE = base_image_tag()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- step times -----------------------------------------------------------------------

class Steps:
    """Times each step and prints it as it ends (outside pytest's capture) and all at the end."""

    def __init__(self, capsys) -> None:
        self.capsys = capsys
        self.times: list[tuple[str, float, str]] = []
        self.started = time.monotonic()

    def say(self, text: str) -> None:
        with self.capsys.disabled():
            print(f"\n[container test] {text}", flush=True)

    @contextmanager
    def step(self, name: str):
        start = time.monotonic()
        outcome = "ok"
        try:
            yield
        except BaseException:
            outcome = "FAILED"
            raise
        finally:
            seconds = time.monotonic() - start
            self.times.append((name, seconds, outcome))
            self.say(f"{name}: {seconds:.1f} s {outcome}")

    def summary(self) -> str:
        width = max((len(name) for name, _, _ in self.times), default=10)
        lines = [f"  {name:<{width}}  {seconds:7.1f} s  {outcome}" for name, seconds, outcome in self.times]
        total = time.monotonic() - self.started
        return "step times:\n" + "\n".join(lines) + f"\n  {'total':<{width}}  {total:7.1f} s"


@pytest.fixture(scope="module")
def steps(request):
    capsys_plugin = request.config.pluginmanager.getplugin("capturemanager")

    class Disabled:  # capsys is function-scoped; the capture manager can be paused from here
        @contextmanager
        def disabled(self):
            with capsys_plugin.global_and_fixture_disabled():
                yield

    recorder = Steps(Disabled())
    yield recorder
    recorder.say(recorder.summary())


# -- 1. the daemon ----------------------------------------------------------------------

class Docker:
    """A Docker daemon to talk to: `env` for the docker and compose commands."""

    def __init__(self, env: dict, process: subprocess.Popen | None = None, root: Path | None = None,
                 lock=None) -> None:
        self.env = env
        self.compose: list[str] = []  # the compose command, `docker compose` or `docker-compose`
        self.process = process  # the dockerd this test started, or None
        self.root = root        # its temporary directory (socket, exec root, log)
        self.lock = lock        # the open lock file that makes its data root (the cache) ours

    @property
    def started_here(self) -> bool:
        return self.process is not None

    def __call__(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        return run(["docker", *args], env=self.env, timeout=timeout, check=check)

    def answers(self) -> bool:
        try:
            return subprocess.run(["docker", "info"], env=self.env, capture_output=True,
                                  timeout=30).returncode == 0
        except subprocess.TimeoutExpired:
            return False


def lock_cache(steps: Steps):
    """Take the image cache for this run (an exclusive lock); wait while another run has it."""
    CACHE.mkdir(mode=0o700, parents=True, exist_ok=True)
    lock = open(CACHE / "dockerd.lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        steps.say(f"waiting for another run to release {CACHE / 'dockerd.lock'}")
        fcntl.flock(lock, fcntl.LOCK_EX)
    return lock


def start_dockerd(steps: Steps) -> Docker:
    lock = lock_cache(steps)
    root = Path(tempfile.mkdtemp(prefix="bazar-dockerd-"))
    (root / "daemon.json").write_text("{}\n")  # not /etc/docker/daemon.json: only these flags count
    env = {key: value for key, value in os.environ.items() if key not in ("DOCKER_CONTEXT", "DOCKER_CONFIG")}
    env["DOCKER_HOST"] = f"unix://{root}/docker.sock"
    env["DOCKER_CONFIG"] = str(root / "client")  # the CLI's own files (contexts, auth) stay in here
    command = ["dockerd", "--config-file", str(root / "daemon.json"),
               "--iptables=false", "--ip6tables=false", "--ip-forward=false",
               "--bridge=none",  # no docker0: Compose makes its own bridge, builds use the host's network
               "--data-root", str(CACHE / "dockerd"), "--exec-root", str(root / "exec"),
               "--pidfile", str(root / "dockerd.pid"), "--host", env["DOCKER_HOST"]]
    with open(root / "dockerd.log", "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    docker = Docker(env, process, root, lock)
    deadline = time.monotonic() + 90
    while not docker.answers():
        if process.poll() is not None or time.monotonic() > deadline:
            log_tail = tail((root / "dockerd.log").read_text(errors="replace"))
            stop_dockerd(docker)
            raise AssertionError(f"dockerd did not come up (exit {process.poll()}):\n{log_tail}")
        time.sleep(0.5)
    driver = docker("info", "--format", "{{.Driver}}").stdout.strip()
    steps.say(f"started dockerd (pid {process.pid}) in {root}, images in {CACHE / 'dockerd'} ({driver})")
    return docker


def stop_dockerd(docker: Docker) -> list[str]:
    """Stop the dockerd this test started and delete its directory; return what was wrong."""
    problems = []
    process, root = docker.process, docker.root
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            problems.append("dockerd ignored SIGTERM for 60 s; killed its process group")
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
    deadline = time.monotonic() + 20  # its containerd and shims exit after it
    while processes_mentioning(str(root)) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid, cmdline in processes_mentioning(str(root)):
        problems.append(f"left running after dockerd stopped, killed: {pid} {cmdline[:200]}")
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    # dockerd bind-mounts the host's network namespace at <exec-root>/netns/default and
    # leaves it there when it stops; anything else still mounted would be a leak.
    for point in mounts_under(root):
        if point != f"{root}/exec/netns/default":
            problems.append(f"still mounted after dockerd stopped: {point}")
        subprocess.run(["umount", "--lazy", point], capture_output=True)
    if mounts_under(root):
        problems.append(f"could not unmount {mounts_under(root)}; {root} NOT deleted")
    else:
        shutil.rmtree(root)
    # Nothing of that daemon may stay mounted in the cache either (overlay2 mounts each
    # running container's file system under the data root).
    for point in mounts_under(CACHE / "dockerd"):
        problems.append(f"still mounted after dockerd stopped: {point}")
        subprocess.run(["umount", "--lazy", point], capture_output=True)
    docker.lock.close()  # the cache is free for the next run
    return problems


@pytest.fixture(scope="module")
def docker(steps):
    before = host_network()  # before anything is installed or started
    daemon = None
    try:
        with steps.step("1. tools and Docker daemon"):
            compose = ensure_tools()
            existing = Docker({**os.environ})
            daemon = existing if existing.answers() else start_dockerd(steps)
            daemon.compose = compose
            daemon("info")
        yield daemon
    finally:
        problems = []
        if daemon is not None and daemon.started_here:
            with steps.step("6b. stop dockerd, delete its directory"):
                problems = stop_dockerd(daemon)
        after = host_network()
        changed = {key: {"before": before[key], "after": after[key]}
                   for key in before if before[key] is not None and before[key] != after[key]}
        assert not changed, f"Docker changed this machine's network: {json.dumps(changed, indent=1)}"
        assert not problems, "cleanup: " + "; ".join(problems)
        if daemon is not None and daemon.started_here:
            assert not daemon.root.exists()


# -- 3.-6. the compose cluster ----------------------------------------------------------

class Cluster:
    """docker-compose.yml under a project of its own, reached through 127.0.0.1:port."""

    def __init__(self, docker: Docker, workdir: Path) -> None:
        self.docker = docker
        self.project = f"bazarct{os.getpid()}{uuid.uuid4().hex[:6]}"  # v1 and v2 accept it as it is
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.secret = uuid.uuid4().hex + uuid.uuid4().hex
        # The frontend is reachable off loopback: without a token it would have no admin.
        self.admin_token = uuid.uuid4().hex
        secret_file = workdir / "secret"
        secret_file.write_text(self.secret + "\n")
        os.chown(secret_file, IMAGE_UID, -1)
        secret_file.chmod(0o400)
        token_file = workdir / "admin-token"
        token_file.write_text(self.admin_token + "\n")
        os.chown(token_file, IMAGE_UID, -1)
        token_file.chmod(0o400)
        self.env = {**docker.env, "COMPOSE_PROJECT_NAME": self.project, "BAZAR_PORT": str(self.port),
                    "BAZAR_SECRET_FILE": str(secret_file), "BAZAR_SECRET": "",
                    "BAZAR_ADMIN_TOKEN_FILE": str(token_file), "BAZAR_ADMIN_TOKEN": "",
                    "BAZAR_IMAGE": IMAGE, "BASE_IMAGE": BASE_IMAGE,
                    "DOCKER_BUILDKIT": "0", "COMPOSE_DOCKER_CLI_BUILD": "0",
                    # docker-compose v1 gives up on a Docker API call after 60 s; creating seven
                    # containers at once on vfs (each a full copy of the image) took longer here.
                    "COMPOSE_HTTP_TIMEOUT": "600"}
        self.http = requests.Session()
        self.http.trust_env = False  # loopback only: no proxy from the environment

    def compose(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        return run([*self.docker.compose, "-f", str(REPO / "docker-compose.yml"), "-p", self.project, *args],
                   env=self.env, timeout=timeout, check=check)

    def running(self) -> dict[str, list[str]]:
        """The project's running containers by service (docker ps: compose v1's own ps is slow)."""
        out = self.docker("ps", "--filter", f"label=com.docker.compose.project={self.project}",
                          "--format", '{{.ID}} {{.Label "com.docker.compose.service"}}').stdout
        by_service: dict[str, list[str]] = {}
        for line in out.splitlines():
            container, service = line.split()
            by_service.setdefault(service, []).append(container)
        return by_service

    def container(self, service: str) -> str:
        ids = self.running().get(service, [])
        assert len(ids) == 1, f"{service}: expected one running container, got {ids}"
        return ids[0]

    def labelled(self, kind: str) -> list[str]:
        """The project's containers, networks or volumes that still exist."""
        args = {"container": ["ps", "-a"], "network": ["network", "ls"], "volume": ["volume", "ls"]}[kind]
        out = self.docker(*args, "-q", "--filter", f"label=com.docker.compose.project={self.project}").stdout
        return out.split()

    def health(self) -> dict[str, str]:
        """Each service's health: its one running container's, `missing` without one."""
        running = self.running()
        health = {service: "missing" if len(running.get(service, [])) != 1 else None for service in SERVICES}
        ids = {service: running[service][0] for service, status in health.items() if status is None}
        if ids:
            out = self.docker("inspect", "--format", "{{.State.Health.Status}}", *ids.values()).stdout.split()
            health.update(zip(ids, out))
        return health

    def wait_ready(self, timeout: float = 240) -> None:
        """Every container healthy (the image's HEALTHCHECK) and the frontend's /readyz 200."""
        deadline = time.monotonic() + timeout
        health, ready = {}, None
        while time.monotonic() < deadline:
            health = self.health()
            try:
                ready = self.http.get(f"{self.url}/readyz", timeout=3).status_code
            except requests.RequestException as exc:
                ready = type(exc).__name__
            if ready == 200 and all(status == "healthy" for status in health.values()):
                return
            time.sleep(1)
        raise AssertionError(f"not ready after {timeout} s: /readyz {ready}, health {health}\n{self.logs()}")

    def logs(self) -> str:
        return tail(self.compose("logs", "--no-color", "--tail=15", check=False, timeout=60).stdout, 150)

    def get(self, path: str, admin: bool = False) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.admin_token}"} if admin else {}
        return self.http.get(self.url + path, timeout=10, headers=headers)

    def stock(self, book_id: int) -> int:
        response = self.get(f"/info/{book_id}?consistency=strong")
        assert response.status_code == 200, response.text
        return response.json()["stock"]

    def buy(self, book_id: int, key: str, deadline: float) -> requests.Response:
        """Buy like a careful client: retry with the same Idempotency-Key until a definite answer."""
        while True:
            try:
                response = self.http.post(f"{self.url}/purchase/{book_id}",
                                          headers={"Idempotency-Key": key}, timeout=10)
                if response.status_code in (200, 409, 422) or time.monotonic() > deadline:
                    return response
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.1)

    def leaders(self) -> dict:
        body = self.get("/cluster").json()
        return {"catalog": body["groups"]["catalog"]["leader"], "order": body["groups"]["order"]["leader"],
                "ready": body["ready"]}


@pytest.fixture(scope="module")
def cluster(docker, steps):
    workdir = Path(tempfile.mkdtemp(prefix="bazar-compose-"))
    workdir.chmod(0o700)  # the secret file inside is readable by uid 10001, the directory by root only
    dangling_before = set(docker("volume", "ls", "-q", "--filter", "dangling=true").stdout.split())
    image_before = docker("image", "inspect", "--format", "{{.Id}}", IMAGE, check=False).stdout.strip()
    cluster = Cluster(docker, workdir)
    try:
        yield cluster
    finally:
        with steps.step("6a. down -v, nothing of the project left"):
            down = cluster.compose("down", "-v", "--remove-orphans", timeout=600, check=False)
            left = {kind: cluster.labelled(kind) for kind in ("container", "network", "volume")}
            dangling = set(docker("volume", "ls", "-q", "--filter", "dangling=true").stdout.split())
            leaked = sorted(dangling - dangling_before)
            # Whatever down -v left is removed all the same (and the test fails below).
            if left["container"]:
                docker("rm", "--force", "--volumes", *left["container"], timeout=600, check=False)
            for kind in ("network", "volume"):
                if left[kind]:
                    docker(kind, "rm", *left[kind], timeout=600, check=False)
            if leaked:
                docker("volume", "rm", *leaked, timeout=600, check=False)
            shutil.rmtree(workdir)
            image_now = docker("image", "inspect", "--format", "{{.Id}}", IMAGE, check=False).stdout.strip()
            if image_before and image_now != image_before:  # the image this build replaced
                docker("image", "rm", image_before, check=False)
            # The cache keeps one version of each image: base images made from other inputs go.
            bases = docker("image", "ls", BASE_REPOSITORY, "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
            stale = [tag for tag in bases if tag != BASE_IMAGE]
            if stale:
                docker("image", "rm", *stale, check=False, timeout=600)
            everything = {}
            if docker.started_here:  # the cache's daemon: nothing but images may stay in it
                docker("image", "prune", "--force", check=False, timeout=600)  # layers no tag uses
                everything = {"containers": docker("ps", "-a", "-q").stdout.split(),
                              "volumes": docker("volume", "ls", "-q").stdout.split()}
            assert down.returncode == 0, f"down -v exited {down.returncode}: {tail(down.stderr)}"
            assert not any(left.values()), f"left behind by down -v: {left}"
            assert not leaked, f"anonymous volumes left behind: {leaked}"
            assert not any(everything.values()), f"left in the image cache's daemon: {everything}"


# -- the test ---------------------------------------------------------------------------

def test_image_and_compose_cluster(docker, cluster, steps):
    """Build, run, serve, lose the catalog leader, restart, clean up (see the module docstring)."""
    steps.say(f"compose: {' '.join(docker.compose)}, daemon: "
              f"{'started here' if docker.started_here else 'already running'}, project {cluster.project}")

    with steps.step("2a. base image (deploy/base-image.sh, debootstrap)"):
        run(["bash", str(REPO / "deploy" / "base-image.sh"), BASE_IMAGE], env=docker.env, timeout=900)
    with steps.step("2b. Bazar image (compose build, network host)"):
        cluster.compose("build", "frontend1", timeout=900)
        base_layers = json.loads(docker("image", "inspect", "--format", "{{json .RootFS.Layers}}", BASE_IMAGE).stdout)
        layers = json.loads(docker("image", "inspect", "--format", "{{json .RootFS.Layers}}", IMAGE).stdout)
        assert layers[:len(base_layers)] == base_layers, "the image is not built on BASE_IMAGE"
        user = docker("image", "inspect", "--format", "{{.Config.User}}", IMAGE).stdout.strip()
        assert user == "bazar"

    try:
        scenario(cluster, docker, steps)
    except BaseException:
        print(f"compose ps:\n{cluster.compose('ps', check=False, timeout=60).stdout}\n"
              f"logs:\n{cluster.logs()}")
        raise


def scenario(cluster: Cluster, docker: Docker, steps: Steps) -> None:
    with steps.step("3a. up, every container healthy, /readyz"):
        cluster.compose("up", "-d", "--no-build")
        cluster.wait_ready()
        frontend = cluster.container("frontend1")
        published = docker("port", frontend, "8000/tcp").stdout.split()
        assert published == [f"127.0.0.1:{cluster.port}"], published  # this machine only
        for name in ("catalog1", "frontend1"):  # file secrets: `docker inspect` does not show them
            inspected = docker("inspect", cluster.container(name)).stdout
            assert cluster.secret not in inspected and cluster.admin_token not in inspected, name

    with steps.step("3b. the public contract through the published port"):
        check_contract(cluster)

    acknowledged = [f"{cluster.project}-first"]  # bought in check_contract
    with steps.step("4. docker kill the catalog leader, purchases carry on"):
        leaders = cluster.leaders()
        leader = leaders["catalog"]
        assert leaders["ready"] and leader in CATALOG, leaders
        # Confirmed from inside the compose network: `bazar status` in a replica's container asks
        # every replica's own /status by service name, signed with the mounted Docker secret.
        status = json.loads(docker("exec", cluster.container("order1"), "bazar", "status", "--json").stdout)
        assert status["groups"]["catalog"]["leader"] == leader, status
        assert {n["id"]: n["role"] for n in status["groups"]["catalog"]["nodes"]}[leader] == "leader", status
        before = cluster.stock(1)
        docker("kill", cluster.container(leader))
        deadline = time.monotonic() + 60
        for i in range(5):
            key = f"{cluster.project}-after-kill-{i}"
            response = cluster.buy(1, key, deadline)
            assert response.status_code == 200, response.text
            assert response.json()["order_id"] == key
            acknowledged.append(key)
        new = cluster.leaders()
        assert new["catalog"] in CATALOG and new["catalog"] != leader, (leader, new)
        assert cluster.stock(1) == before - 5

    with steps.step("5a. down, then up (volumes kept)"):
        expected_stock = cluster.stock(1)
        cluster.compose("down", timeout=300)
        assert cluster.labelled("container") == []
        assert len(cluster.labelled("volume")) == len(CATALOG + ORDER), "down without -v kept the volumes"
        cluster.compose("up", "-d", "--no-build")
        cluster.wait_ready()

    with steps.step("5b. every acknowledged order still there"):
        orders = cluster.get("/orders?limit=1000", admin=True)
        assert orders.status_code == 200, orders.text
        by_id = {order["order_id"]: order for order in orders.json()["orders"]}
        missing = [key for key in acknowledged if key not in by_id]
        assert not missing, f"acknowledged orders lost across down/up: {missing}"
        for key in acknowledged:
            assert by_id[key]["status"] == "completed" and by_id[key]["id"] == 1, by_id[key]
            one = cluster.get(f"/orders/{key}")
            assert one.status_code == 200 and one.json()["status"] == "completed", one.text
        assert cluster.stock(1) == expected_stock
        again = cluster.buy(1, acknowledged[0], time.monotonic() + 30)  # the same key: the same order
        assert again.status_code == 200 and again.json()["order_id"] == acknowledged[0], again.text
        assert cluster.stock(1) == expected_stock
        fresh = cluster.buy(1, f"{cluster.project}-after-restart", time.monotonic() + 30)
        assert fresh.status_code == 200, fresh.text
        assert cluster.stock(1) == expected_stock - 1


def check_contract(cluster: Cluster) -> None:
    """README's API section, as tests/integration/test_contract.py checks it on loopback."""
    found = cluster.get("/search/Distributed%20Systems")
    assert found.status_code == 200, found.text
    body = found.json()
    assert body["topic"] == "Distributed Systems"
    assert {item["title"] for item in body["items"]} == {DOS, "RPCs for Noobs"}
    assert all(set(item) == {"id", "title"} for item in body["items"])
    assert cluster.get("/search/cookery").json() == {"topic": "cookery", "items": []}

    info = cluster.get("/info/1")
    assert info.status_code == 200, info.text
    book = info.json()
    assert set(book) == {"id", "title", "topic", "price", "stock"}
    assert book["id"] == 1 and book["title"] == DOS
    unknown = cluster.get("/info/8")
    assert unknown.status_code == 404 and "error" in unknown.json()
    assert cluster.get("/info/abc").status_code == 400

    before = cluster.stock(1)
    key = f"{cluster.project}-first"
    bought = cluster.buy(1, key, time.monotonic() + 30)
    assert bought.status_code == 200, bought.text
    order = bought.json()
    assert set(order) == {"order_id", "id", "title", "price"}
    assert order["order_id"] == key and order["id"] == 1 and order["title"] == DOS
    assert order["price"] == book["price"]
    repeated = cluster.buy(1, key, time.monotonic() + 30)
    assert repeated.status_code == 200 and repeated.json() == order  # the same key, the same single order
    other_book = cluster.buy(2, key, time.monotonic() + 30)
    assert other_book.status_code == 422, other_book.text
    assert cluster.stock(1) == before - 1
    recorded = cluster.get(f"/orders/{key}")
    assert recorded.status_code == 200, recorded.text
    assert recorded.json()["status"] == "completed" and recorded.json()["id"] == 1
