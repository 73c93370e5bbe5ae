"""Bazar as a user gets it: a built wheel, installed into a fresh venv, run from elsewhere.

The rest of the suite runs from the source tree with an editable install, where
every module is importable whether or not the package ships it. That is how a
wheel without `node/` (every replica died at start with ModuleNotFoundError)
went unnoticed. Here the wheel is built from a copy of the sources, installed
into a new venv with only its declared dependencies (by this process's pip, `pip --python`:
the venv gets no pip of its own, which saved 10 s of ensurepip), and a whole 3+3+1 cluster
is run by that venv's `bazar up` from a folder outside the checkout, with a
cluster file that names no seed file (so the packaged `books.json` is used).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import venv
from pathlib import Path

import pytest
import requests
import yaml

from bazar.local.cluster import write_config

REPO = Path(__file__).resolve().parents[2]
# Never copied into the build: what the tree accumulates but does not ship.
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", "var", "build", "dist", "*.egg-info", "__pycache__",
                                     ".hypothesis", ".pytest_cache", "chaos-results")
INSTALL_TIMEOUT = 600
CHAOS_SECONDS = 1  # the shortest run the command takes in whole seconds; it still checks a history


def run(command: list, **kwargs) -> subprocess.CompletedProcess:
    """Run a build or install step; fail the test with its output if it fails."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, **kwargs)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the wheel built from this checkout installed; its folder."""
    work = tmp_path_factory.mktemp("wheel")
    # A copy, so that leftovers of earlier builds (build/, *.egg-info) cannot leak into the wheel.
    sources = work / "sources"
    shutil.copytree(REPO, sources, ignore=NOT_SOURCES)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(work / "dist"), str(sources)])
    wheels = list((work / "dist").glob("bazar-*.whl"))
    assert len(wheels) == 1, wheels
    shutil.rmtree(sources)
    env_dir = work / "venv"
    venv.create(env_dir, with_pip=False)
    run([sys.executable, "-m", "pip", "--python", str(env_dir / "bin" / "python"), "install",
         "--disable-pip-version-check", str(wheels[0])])
    yield env_dir
    shutil.rmtree(work, ignore_errors=True)


def clean_env() -> dict:
    """This process's environment without anything that would let the checkout be imported."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "BAZAR_CONFIG")}


def test_the_wheel_ships_every_package_and_data_file(installed):
    code = ("import importlib.resources as r, importlib.util as u, bazar.node as node, bazar.frontend.app,"
            " bazar.node.replica, bazar.frontend.server, bazar.cli;"
            "print(node.__file__);"
            "print(r.files('bazar.node').joinpath('books.json').is_file());"
            "print(r.files('bazar.frontend').joinpath('templates', 'home.html').is_file());"
            "print(u.find_spec('matplotlib') is None);"
            # One installed name: none of the folders' own names is importable on its own.
            "print([n for n in ('node', 'frontend', 'consensus', 'cluster', 'web', 'local', 'chaos', 'bench')"
            " if u.find_spec(n) is not None])")
    lines = run([str(installed / "bin" / "python"), "-c", code], cwd=installed, env=clean_env()).stdout.split("\n")
    assert Path(lines[0]).is_relative_to(installed), "imported from outside the venv"
    assert lines[1:4] == ["True", "True", "True"]  # and the plotting library is an extra, not installed
    assert lines[4] == "[]", f"generic top-level packages installed: {lines[4]}"
    usage = run([str(installed / "bin" / "bazar"), "--help"], cwd=installed, env=clean_env()).stdout
    assert "chaos" in usage and "bench" in usage  # their commands load without it


def test_the_installed_bazar_runs_a_cluster_from_outside_the_checkout(installed, tmp_path):
    run_dir = tmp_path / "elsewhere"
    config_path = write_config(run_dir)
    doc = yaml.safe_load(config_path.read_text())
    doc.pop("catalog_seed", None)  # the checkout's books.json must not be needed
    config_path.write_text(yaml.safe_dump(doc, sort_keys=False))
    frontend = "http://" + doc["frontends"][0]["http"]
    log = open(tmp_path / "bazar-up.log", "wb")
    up = subprocess.Popen([str(installed / "bin" / "bazar"), "--config", str(config_path), "up"],
                          cwd=run_dir, env=clean_env(), stdout=log, stderr=subprocess.STDOUT,
                          start_new_session=True)
    try:
        wait_ready(frontend, up, tmp_path / "bazar-up.log")
        search = requests.get(f"{frontend}/search/distributed%20systems", timeout=10).json()
        assert {item["title"] for item in search["items"]} == {
            "How to get a good grade in DOS in 40 minutes a day", "RPCs for Noobs"}
        assert requests.get(f"{frontend}/info/7", timeout=10).json()["title"] == "Spring in the Pioneer Valley"
        bought = requests.post(f"{frontend}/purchase/1", headers={"Idempotency-Key": "wheel-1"}, timeout=10)
        assert bought.status_code == 200, bought.text
        order = requests.get(f"{frontend}/orders/wheel-1", timeout=10).json()
        assert order["status"] == "completed"
        page = requests.get(f"{frontend}/", headers={"Accept": "text/html"}, timeout=10)
        assert page.status_code == 200 and "<html" in page.text.lower()  # packaged templates
    finally:
        stop(up)
        log.close()


def test_chaos_without_the_plotting_extra_writes_its_results_and_exits_by_its_checks(installed, tmp_path):
    """`pip install bazar` has no matplotlib: the run is still checked, every result written,
    and one line says how to get the plot (it used to end in a ModuleNotFoundError, exit 1)."""
    out = tmp_path / "chaos"
    result = subprocess.run([str(installed / "bin" / "bazar"), "chaos", "--duration", str(CHAOS_SECONDS),
                             "--clients", "2", "--faults", "none", "--out", str(out)],
                            cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output, output
    lines = result.stdout.strip().splitlines()
    assert lines[-1].startswith("PASS: results in"), output
    assert [line for line in lines if "pip install 'bazar[tools]'" in line] == [
        "timeline.png not drawn: the plot needs matplotlib, pip install 'bazar[tools]'"], output
    assert json.loads((out / "results.json").read_text())["ok"] is True
    assert (out / "history.jsonl").read_text().strip()
    assert not (out / "timeline.png").exists()


def wait_ready(frontend: str, up: subprocess.Popen, log: Path, timeout: float = 90.0) -> None:
    """Wait for the frontend's /readyz; fail with the log if `bazar up` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if up.poll() is not None:
            pytest.fail(f"bazar up exited with {up.returncode}:\n{log.read_text()}")
        try:
            if requests.get(f"{frontend}/readyz", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    pytest.fail(f"cluster not ready in {timeout:.0f} s:\n{log.read_text()}")


def stop(up: subprocess.Popen) -> None:
    """SIGTERM `bazar up` (it stops every process it started); SIGKILL its whole session if it hangs."""
    up.terminate()
    try:
        up.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(up.pid, signal.SIGKILL)
        up.wait()
