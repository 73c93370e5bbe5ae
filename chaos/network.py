"""Real network partitions on one machine: iptables rules between loopback addresses.

Every process of a chaos cluster has its own 127.0.0.x and connects from it
(consensus/transport.py, web/client.py), so a DROP rule on (source, destination)
cuts exactly the links we name, in both directions, for Raft and HTTP alike.
All rules live in one chain, BAZAR-CHAOS, which `close()` removes entirely.
"""
from __future__ import annotations

import itertools
import logging
import os
import shutil
import subprocess
from collections.abc import Iterable

log = logging.getLogger("bazar.chaos.network")

CHAIN = "BAZAR-CHAOS"


def unavailable_reason() -> str | None:
    """Why partitions cannot be made here (None when they can)."""
    if shutil.which("iptables") is None:
        return "iptables is not installed (apt-get install iptables)"
    if os.geteuid() != 0:
        return "partitions need root (iptables)"
    probe = subprocess.run(["iptables", "-w", "-L", "OUTPUT", "-n"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"iptables does not work here: {probe.stderr.strip()}"
    return None


class Firewall:
    """Cut and heal links between hosts; use as a context manager so rules never outlive it."""

    def __init__(self) -> None:
        self.cuts: list[tuple[str, str]] = []
        self._open = False

    def __enter__(self) -> "Firewall":
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> None:
        _iptables("-N", CHAIN, check=False)  # may exist after a crash: reuse it, emptied
        _iptables("-F", CHAIN)
        if _iptables("-C", "OUTPUT", "-j", CHAIN, check=False) != 0:
            _iptables("-I", "OUTPUT", "-j", CHAIN)
        self._open = True

    def cut(self, side_a: Iterable[str], side_b: Iterable[str]) -> None:
        """Drop every packet between a host of `side_a` and a host of `side_b`, both ways."""
        for a, b in itertools.product(list(side_a), list(side_b)):
            for source, destination in ((a, b), (b, a)):
                _iptables("-A", CHAIN, "-s", source, "-d", destination, "-j", "DROP")
                self.cuts.append((source, destination))
        log.info("cut %s | %s", ",".join(side_a), ",".join(side_b))

    def heal(self) -> None:
        """Remove every cut."""
        if self._open:
            _iptables("-F", CHAIN)
        self.cuts.clear()

    def close(self) -> None:
        """Remove every cut and the chain itself; safe to call twice.

        The chain is checked to be gone afterwards, and the teardown repeated if not: a rule
        change that lands between the flush and the chain's removal makes `-X` fail.
        """
        if not self._open:
            return
        for _ in range(5):
            _iptables("-F", CHAIN, check=False)
            while _iptables("-D", "OUTPUT", "-j", CHAIN, check=False) == 0:
                pass
            _iptables("-X", CHAIN, check=False)
            if _iptables("-n", "-L", CHAIN, check=False) != 0:
                break
        else:
            log.error("could not remove iptables chain %s; remove it by hand (iptables -F/-X %s)", CHAIN, CHAIN)
        self._open = False
        self.cuts.clear()


def _iptables(*args: str, check: bool = True) -> int:
    """Run one iptables command to its end, even through Ctrl-C.

    subprocess.run kills its child on KeyboardInterrupt and returns without waiting; with
    iptables-nft the kernel can still apply that child's change afterwards, after close()
    has flushed the chain, which then survives the run with a rule in it. So an interrupt
    waits for the command (in a session of its own, a terminal's Ctrl-C does not reach it)
    and is raised once the change has landed or failed.
    """
    process = subprocess.Popen(["iptables", "-w", *args], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, stderr = process.communicate()
    except KeyboardInterrupt:
        process.communicate()
        raise
    if check and process.returncode != 0:
        raise RuntimeError(f"iptables {' '.join(args)}: {stderr.strip()}")
    return process.returncode
