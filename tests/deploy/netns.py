"""A private network of machines on one machine: one Linux network namespace per host.

Each host gets its own namespace with a veth pair into a bridge, and the bridge lives
in a namespace of its own too, so nothing is added to this machine's own network:
its addresses (10.77.0.x by default) exist only inside namespaces made here, and
`remove()` deletes every namespace, which takes their links and bridge with them.
Needs root and iproute2.
"""
from __future__ import annotations

import ctypes
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

CLONE_NEWNET = 0x40000000
T = TypeVar("T")


def ip(*args: str) -> None:
    """Run `ip ARGS`; raise with its message if it fails."""
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


def existing_namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


class PrivateNetwork:
    """Hosts `names` on one switch, host i at `subnet`.(i + 1); `prefix` keeps names unique."""

    def __init__(self, names: list[str], prefix: str, subnet: str = "10.77.0") -> None:
        self.prefix = prefix
        self.switch = f"{prefix}-switch"
        self.addresses = {name: f"{subnet}.{i + 1}" for i, name in enumerate(names)}
        self.created: list[str] = []
        self._threads: list[ThreadPoolExecutor] = []

    def namespace(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def create(self) -> "PrivateNetwork":
        self._add_namespace(self.switch)
        ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        ip("-n", self.switch, "link", "set", "br0", "up")
        for i, (name, address) in enumerate(self.addresses.items()):
            namespace = self.namespace(name)
            self._add_namespace(namespace)
            port = f"port{i}"
            # Both ends are created inside their namespaces: nothing appears on this machine.
            ip("link", "add", port, "netns", self.switch, "type", "veth", "peer", "name", "eth0", "netns", namespace)
            ip("-n", self.switch, "link", "set", port, "master", "br0", "up")
            ip("-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
            ip("-n", namespace, "link", "set", "eth0", "up")
            ip("-n", namespace, "link", "set", "lo", "up")
        return self

    def _add_namespace(self, namespace: str) -> None:
        ip("netns", "add", namespace)
        self.created.append(namespace)

    def launcher(self, name: str) -> list[str]:
        """The command prefix that runs a program on host `name` (see LocalCluster)."""
        return ["ip", "netns", "exec", self.namespace(name)]

    def set_link(self, name: str, up: bool) -> None:
        """Plug host `name`'s cable in or pull it out: a partition, from inside its namespace."""
        ip("-n", self.namespace(name), "link", "set", "eth0", "up" if up else "down")

    def on(self, name: str) -> ThreadPoolExecutor:
        """A thread that lives in host `name`'s network: what it runs connects from there.

        Processes it starts are its children, so it lives until `remove()`."""
        def enter() -> None:
            fd = os.open(f"/run/netns/{self.namespace(name)}", os.O_RDONLY)
            try:
                if ctypes.CDLL("libc.so.6", use_errno=True).setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns failed")
            finally:
                os.close(fd)
        thread = ThreadPoolExecutor(max_workers=1, initializer=enter)
        self._threads.append(thread)
        return thread

    def run_on(self, name: str, function: Callable[..., T], *args) -> T:
        """Call `function(*args)` from host `name`'s network and return its result."""
        return self.on(name).submit(function, *args).result()

    def remove(self) -> None:
        """Delete every namespace made here; their links and the bridge go with them."""
        for thread in self._threads:
            thread.shutdown(wait=True)
        self._threads.clear()
        for namespace in reversed(self.created):
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
        self.created.clear()
