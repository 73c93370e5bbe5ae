"""The Raft port is a remote-code-execution port unless it is encrypted.

PySyncObj unpickles what arrives on it. With a password it uses an encrypted,
authenticated session, so only holders of the cluster secret can speak.
"""
from __future__ import annotations

from cluster.config import ClusterConfig, ConfigError


def raft_password(config: ClusterConfig) -> str | None:
    """The cluster secret to give PySyncObj; refuse to run off loopback without one."""
    secret = config.secret()
    if secret is None and not config.all_loopback:
        raise ConfigError(
            f"refusing to start: some Raft addresses in {config.path} are not loopback, and "
            f"${config.secret_env} is not set. Anyone who can reach a Raft port without the "
            f"secret can run code on the node. Set {config.secret_env} to the same secret on every node.")
    return secret
