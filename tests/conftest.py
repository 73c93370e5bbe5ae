"""Shared fixtures: throwaway clusters on free loopback ports, always cleaned up."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from bazar.local.cluster import LocalCluster, write_config


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
