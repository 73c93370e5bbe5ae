"""Which tests a run selects, and shared fixtures: throwaway clusters on free loopback
ports, always cleaned up.

The suite has a fast set and the rest (docs/testing.md):

- Every test in tests/integration is marked `integration` (it starts real processes), every
  test in tests/deploy and tests/browser `system` (Docker, network namespaces, a browser);
  a test that takes long (a chaos run, the soak, the long simulator run...) is also marked
  `slow` by hand (`@pytest.mark.slow`, or `pytestmark = pytest.mark.slow` for a module).
- `pytest` alone (no path, no -m, no -k) runs the fast set: every test with none of those
  three markers. A module that wants a long test and a short one marks the long one `slow`.
- A path, `-m` or `-k` runs what it names, whatever its markers: `pytest tests/integration`,
  `pytest -m "integration and not slow"`, `pytest -k chaos`.
- `--full` runs everything (what `./bazar.sh test`, and so CI, runs) but the tests marked
  `manual` (longer than CI's budget), which run only when `-m` names them.
- The fast set alone runs on every core (pytest-xdist); anything else in one process.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from bazar.local.cluster import LocalCluster, write_config

TESTS = Path(__file__).resolve().parent
FOLDER_MARKERS = {"integration": "integration", "deploy": "system", "browser": "system"}
OUTSIDE_THE_FAST_SET = ("integration", "system", "slow")


def pytest_addoption(parser):
    parser.addoption("--full", action="store_true", default=False,
                     help="run every test (the default, with no path, -m or -k, is the fast set)")


def fast_set_only(config) -> bool:
    """True when nothing on the command line chose tests: then only the fast set runs."""
    return (config.args_source == pytest.Config.ArgsSource.TESTPATHS
            and not config.getoption("--full")
            and not config.getoption("markexpr")
            and not config.getoption("keyword"))


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config):
    """The fast set runs on every core, when there are several and pytest-xdist is installed
    (`./bazar.sh test` installs it): about 39 s on this project's two cores, against 62 s on
    one. A `-n` on the command line (`-n 0`: one process) wins; every other run (a path,
    -m, -k, --full) stays in one process, since integration tests share the machine's
    network and firewall. Runs before pytest-xdist's own hook, which reads the option."""
    if (fast_set_only(config) and config.pluginmanager.hasplugin("xdist")
            and config.getoption("numprocesses", None) is None and (os.cpu_count() or 1) > 1
            and "PYTEST_XDIST_WORKER" not in os.environ):  # a worker runs its share itself
        config.option.numprocesses = "auto"


def pytest_report_header(config):
    if fast_set_only(config):
        return ["fast set only (unit tests, short simulator pass); the rest: `pytest --full` "
                "(what ./bazar.sh test runs), or -m integration / system / slow, or a path"]
    return []


def pytest_collection_modifyitems(config, items):
    """Mark tests by folder; with nothing chosen on the command line, keep the fast set."""
    for item in items:
        relative = Path(item.fspath).resolve().relative_to(TESTS)
        marker = FOLDER_MARKERS.get(relative.parts[0])
        if marker is not None:
            item.add_marker(marker)
    if not config.getoption("markexpr"):
        manual = [item for item in items if item.get_closest_marker("manual")]
        if manual:
            config.hook.pytest_deselected(items=manual)
            items[:] = [item for item in items if not item.get_closest_marker("manual")]
    if not fast_set_only(config):
        return
    kept, deselected = [], []
    for item in items:
        outside = any(item.get_closest_marker(name) for name in OUTSIDE_THE_FAST_SET)
        (deselected if outside else kept).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


def pytest_collection_finish(session):
    """Start the simulator's long share of the run in the background (tests/sim/background.py)."""
    from tests.sim import background
    background.start([item.nodeid for item in session.items])


def pytest_sessionfinish(session):
    from tests.sim import background
    background.stop()


@pytest.fixture
def make_cluster():
    """Build and start clusters: make_cluster(catalog=3, order=3, frontends=1, **sections).

    Every process is stopped and every file removed when the test ends.
    """
    started: list[LocalCluster] = []
    directories: list[str] = []

    def make(start: bool = True, env: dict | None = None, generate_secret: bool = True,
             generate_admin_token: bool = True, **kwargs) -> LocalCluster:
        directory = tempfile.mkdtemp(prefix="bazar-test-")
        directories.append(directory)
        path = write_config(directory, **kwargs)
        cluster = LocalCluster(path, log_dir=Path(directory) / "logs", env=env,
                               generate_secret=generate_secret, generate_admin_token=generate_admin_token)
        started.append(cluster)
        if start:
            cluster.start(timeout=60)
        return cluster

    yield make
    for cluster in started:
        cluster.stop()
    for directory in directories:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def shared_cluster():
    """One 3+3+1 cluster shared by a module's read-mostly tests."""
    directory = tempfile.mkdtemp(prefix="bazar-test-")
    cluster = LocalCluster(write_config(directory), log_dir=Path(directory) / "logs")
    try:
        cluster.start(timeout=60)
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)
