"""The floor: a hello-world Flask route served by waitress exactly like the frontend.

Same WSGI server, same `web.server.serve` (16 threads, same options), same JSON answer
machinery, no work at all. No Bazar route can answer faster than this on this machine,
so "cached info p50 / floor p50" tells how much the cache path itself costs.

Run as a child process: `python -m bazar.bench.floor PORT`.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from bazar.local.cluster import _die_with_parent, free_ports

ROOT = Path(__file__).resolve().parent.parent


def create_app():
    from flask import Flask, jsonify

    from bazar.web import errors

    app = Flask("bazar.floor")
    errors.install(app)  # the frontend's error handlers and JSON settings, for a like-for-like app

    @app.get("/hello")
    def hello():
        return jsonify(message="hello, world")

    return app


class Floor:
    """The hello-world server as a child process on a free loopback port."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = free_ports(1, host)[0]
        self.url = f"http://{host}:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0) -> "Floor":
        self.proc = subprocess.Popen([sys.executable, "-m", "bazar.bench.floor", self.host, str(self.port)],
                                     cwd=str(ROOT), preexec_fn=_die_with_parent,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the floor server exited with status {self.proc.returncode}")
            try:
                if requests.get(self.url + "/hello", timeout=0.5).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise TimeoutError("the floor server did not answer")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> "Floor":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str]) -> None:
    from bazar.cluster.config import Address
    from bazar.web.server import serve

    host, port = argv
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    serve(create_app(), Address(host, int(port)))


if __name__ == "__main__":
    main(sys.argv[1:])
