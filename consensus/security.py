"""Bazar's ports are for Bazar's own processes, and one secret keeps them so.

The Raft port is a remote-code-execution port unless it is encrypted: PySyncObj
unpickles what arrives on it. With a password it uses an encrypted, authenticated
session, so only holders of the cluster secret can speak. The replicas' internal
HTTP routes (a replica's /purchase, /state) check the same secret. So a cluster
that anything but this machine can reach, through any Raft or HTTP address it
advertises or listens on, must have a secret.
"""
from __future__ import annotations

import logging

from bazar.cluster.config import ClusterConfig, ConfigError


def raft_password(config: ClusterConfig) -> str | None:
    """The cluster secret to give PySyncObj; refuse to run off loopback without one."""
    secret = config.secret()
    if secret is None and not config.all_loopback:
        raise ConfigError(
            f"refusing to start: some addresses in {config.path} (Raft or HTTP, advertised or "
            f"listened on) are not loopback, and no cluster secret is given (${config.secret_env} "
            f"is not set, nor ${config.secret_env}_FILE, nor the Docker secret "
            f"{config.secret_env.lower()}). Anyone who can reach a Raft port without the secret can "
            f"run code on the node. Give every process the same secret.")
    if secret is None:
        logging.getLogger("bazar").warning(
            "running WITHOUT a cluster secret (allowed only because every address is loopback): "
            "anyone on this machine can run code through the Raft ports and call internal routes")
    return secret
