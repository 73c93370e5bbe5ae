"""Load and validate `cluster.yaml`, the one place Bazar is configured.

Every error names the offending key (for example ``catalog[2].raft``), so an
operator can fix the file without reading code. Where the cluster secret and the
admin token come from is cluster/secrets.py (`ClusterConfig.secret()` and the rest).
"""
from __future__ import annotations

import importlib.resources
import ipaddress
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bazar.cluster.errors import ConfigError
from bazar.cluster.secrets import ClusterSecrets

GROUPS = ("catalog", "order")
# A group grows and shrinks one member at a time (`bazar member add|remove`), so a file may
# name an even number: such a group tolerates no more failures than the odd size below it.
MAX_GROUP_SIZE = 7


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        return _is_loopback(self.host)


WILDCARDS = ("0.0.0.0", "::")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


class _Listener:
    """Where a process listens, as opposed to where the others reach it (its advertised
    addresses), as etcd separates them. A node in a container listens on 0.0.0.0 and is
    reached as `catalog1:7101`: `listen` is the host it binds, the ports are the advertised ones.
    Without `listen`, a process binds exactly its advertised host."""

    listen: str | None
    http: Address

    def bind(self, address: Address) -> Address:
        """The local address to bind for the advertised `address`."""
        return Address(self.listen or address.host, address.port)

    @property
    def source_host(self) -> str | None:
        """The address outgoing connections leave from, or None to let the kernel choose.

        Only one specific IP address is a source: binding a wildcard would mean nothing,
        and a hostname may resolve to an address of another family than the peer's (or
        to no address of this machine). On loopback, each process leaving from its own
        127.0.0.x is what lets a firewall rule cut exactly one link (chaos/network.py).
        """
        host = self.listen or self.http.host
        return host if _is_ip(host) and host not in WILDCARDS else None

    @property
    def health_url(self) -> str:
        """This process's /healthz, as seen from its own machine (or container)."""
        bound = self.bind(self.http)
        host = "127.0.0.1" if bound.host in WILDCARDS else bound.host
        return f"{Address(host, bound.port).url}/healthz"

    def addresses(self) -> list[str]:
        """Every host this process binds or advertises."""
        return [self.http.host] + ([self.listen] if self.listen else [])


@dataclass(frozen=True)
class NodeConfig(_Listener):
    """One replica: a member of the catalog or the order Raft group."""
    id: str
    group: str
    raft: Address
    http: Address
    listen: str | None = None

    def addresses(self) -> list[str]:
        return [self.raft.host] + super().addresses()


@dataclass(frozen=True)
class FrontendConfig(_Listener):
    id: str
    http: Address
    listen: str | None = None


@dataclass(frozen=True)
class RaftConfig:
    append_entries_period: float = 0.05
    election_timeout: tuple[float, float] = (0.2, 0.4)
    leader_fallback_timeout: float = 1.0
    commit_timeout: float = 3.0
    compaction_entries: int = 5000
    compaction_period: float = 60.0
    # fsync before acknowledging (entries, term and vote, snapshots). Off: a power cut can
    # lose acknowledged writes; a crash of the processes still loses nothing.
    fsync: bool = True


@dataclass(frozen=True)
class CacheConfig:
    capacity: int = 1000
    max_follower_lag: float = 1.0


@dataclass(frozen=True)
class RetentionConfig:
    # Seconds a purchase outcome, finished order or admin write's result is remembered
    # (for retries); then the log forgets it (node/retention.py).
    outcomes: float = 24 * 3600.0


@dataclass(frozen=True)
class FrontendSettings:
    # Host header values every frontend answers besides its own addresses (see
    # `ClusterConfig.allowed_hosts`): the public name a reverse proxy passes on. An entry is
    # a host (any port) or host:port; "*" turns the check off.
    allowed_hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class ClusterConfig(ClusterSecrets):
    path: Path
    data_dir: Path
    catalog_seed: Path
    secret_env: str
    admin_token_env: str
    raft: RaftConfig
    cache: CacheConfig
    catalog: tuple[NodeConfig, ...]
    order: tuple[NodeConfig, ...]
    frontends: tuple[FrontendConfig, ...]
    retention: RetentionConfig = RetentionConfig()
    frontend_settings: FrontendSettings = FrontendSettings()
    extra: dict = field(default_factory=dict)

    def group(self, name: str) -> tuple[NodeConfig, ...]:
        """The replicas of group `name` ("catalog" or "order"); KeyError for any other name."""
        if name not in GROUPS:
            raise KeyError(f"no group {name!r}: the groups are {', '.join(GROUPS)}")
        return self.catalog if name == "catalog" else self.order

    def node(self, node_id: str) -> NodeConfig:
        for node in self.catalog + self.order:
            if node.id == node_id:
                return node
        known = ", ".join(n.id for n in self.catalog + self.order)
        raise ConfigError(f"no replica named {node_id!r} in {self.path} (replicas: {known})")

    def frontend(self, frontend_id: str | None = None) -> FrontendConfig:
        if frontend_id is None:
            return self.frontends[0]
        for frontend in self.frontends:
            if frontend.id == frontend_id:
                return frontend
        known = ", ".join(f.id for f in self.frontends)
        raise ConfigError(f"no frontend named {frontend_id!r} in {self.path} (frontends: {known})")

    @property
    def all_loopback(self) -> bool:
        """True when every address any process binds or advertises (Raft and HTTP) is
        loopback: only then may the cluster run without a secret."""
        processes = self.catalog + self.order + self.frontends
        return all(_is_loopback(host) for process in processes for host in process.addresses())

    def allowed_hosts(self, frontend: FrontendConfig) -> frozenset[str]:
        """The Host header values (lower case; `host:port`, or a bare host for any port)
        `frontend` answers: every frontend's advertised address and this one's listen
        address, localhost, 127.0.0.1 and [::1] on any port, and the entries
        of `frontend.allowed_hosts`. A browser sends the name it resolved: a page that
        rebinds its own name to 127.0.0.1 sends that name, which is in none of these."""
        port = frontend.http.port
        hosts = {_host_header(f.http.host, f.http.port) for f in self.frontends}
        if frontend.listen and frontend.listen not in WILDCARDS:
            hosts.add(_host_header(frontend.listen, port))
        # Loopback names on any port: a port published elsewhere (docker-compose's BAZAR_PORT,
        # a local proxy) still names this machine, and a rebinding page sends its own name.
        hosts.update(("localhost", "127.0.0.1", "[::1]"))
        hosts.update(self.frontend_settings.allowed_hosts)
        return frozenset(host.lower() for host in hosts)



def _host_header(host: str, port: int) -> str:
    """`host:port` as a Host header writes it (an IPv6 address in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def load(path: str | os.PathLike) -> ClusterConfig:
    """Read and validate a cluster file; raise ConfigError naming the bad key."""
    path = Path(path).resolve()
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"cluster file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    return parse(raw, path)


def parse(raw: Any, path: Path) -> ClusterConfig:
    """Validate an already-parsed cluster document."""
    doc = _mapping(raw, "(top level)")
    known = {"data_dir", "catalog_seed", "secret_env", "admin_token_env", "raft", "cache",
             "retention", "catalog", "order", "frontends", "frontend"}
    _reject_unknown(doc, known, "")
    base = path.parent
    catalog = _group(doc, "catalog")
    order = _group(doc, "order")
    frontends = _frontends(doc)
    _check_unique(catalog + order, frontends)
    return ClusterConfig(
        path=path,
        data_dir=base / _string(doc.get("data_dir", "var"), "data_dir"),
        catalog_seed=(base / _string(doc["catalog_seed"], "catalog_seed") if "catalog_seed" in doc
                      else packaged_seed()),
        secret_env=_string(doc.get("secret_env", "BAZAR_SECRET"), "secret_env"),
        admin_token_env=_string(doc.get("admin_token_env", "BAZAR_ADMIN_TOKEN"), "admin_token_env"),
        raft=_raft(doc.get("raft", {})),
        cache=_cache(doc.get("cache", {})),
        retention=_retention(doc.get("retention", {})),
        frontend_settings=_frontend_settings(doc.get("frontend", {})),
        catalog=catalog,
        order=order,
        frontends=frontends,
    )


def packaged_seed() -> Path:
    """The seven books shipped inside the `node` package: the default seed, so that an
    installed Bazar runs from any folder with a cluster file that names no seed."""
    return Path(str(importlib.resources.files("bazar.node").joinpath("books.json")))


def _group(doc: dict, name: str) -> tuple[NodeConfig, ...]:
    entries = doc.get(name)
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{name}: expected a list of replicas")
    if len(entries) > MAX_GROUP_SIZE:
        raise ConfigError(f"{name}: a Raft group of more than {MAX_GROUP_SIZE} replicas only slows "
                          f"commits down, got {len(entries)}")
    nodes = []
    for i, entry in enumerate(entries):
        key = f"{name}[{i}]"
        entry = _mapping(entry, key)
        _reject_unknown(entry, {"id", "raft", "http", "listen"}, key + ".")
        nodes.append(NodeConfig(
            id=_identifier(entry.get("id"), key + ".id"),
            group=name,
            raft=_address(entry.get("raft"), key + ".raft"),
            http=_address(entry.get("http"), key + ".http"),
            listen=_listen(entry, key + ".listen"),
        ))
    return tuple(nodes)


def _frontends(doc: dict) -> tuple[FrontendConfig, ...]:
    entries = doc.get("frontends")
    if not isinstance(entries, list) or not entries:
        raise ConfigError("frontends: expected a list with at least one frontend")
    result = []
    for i, entry in enumerate(entries):
        key = f"frontends[{i}]"
        entry = _mapping(entry, key)
        _reject_unknown(entry, {"id", "http", "listen"}, key + ".")
        result.append(FrontendConfig(id=_identifier(entry.get("id"), key + ".id"),
                                     http=_address(entry.get("http"), key + ".http"),
                                     listen=_listen(entry, key + ".listen")))
    return tuple(result)


def _raft(raw: Any) -> RaftConfig:
    doc = _mapping(raw, "raft")
    _reject_unknown(doc, {"append_entries_period", "election_timeout", "leader_fallback_timeout",
                          "commit_timeout", "compaction_entries", "compaction_period", "fsync"}, "raft.")
    defaults = RaftConfig()
    period = _positive(doc.get("append_entries_period", defaults.append_entries_period),
                       "raft.append_entries_period")
    timeout = doc.get("election_timeout", list(defaults.election_timeout))
    if (not isinstance(timeout, list) or len(timeout) != 2
            or not all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in timeout)):
        raise ConfigError("raft.election_timeout: expected [min, max] in seconds")
    low, high = float(timeout[0]), float(timeout[1])
    if not period * 3 < low < high:
        raise ConfigError("raft.election_timeout: need 3 * append_entries_period < min < max "
                          f"(got period {period}, [{low}, {high}])")
    fallback = _positive(doc.get("leader_fallback_timeout", defaults.leader_fallback_timeout),
                         "raft.leader_fallback_timeout")
    if fallback <= period:
        raise ConfigError("raft.leader_fallback_timeout: must exceed append_entries_period")
    commit = _positive(doc.get("commit_timeout", defaults.commit_timeout), "raft.commit_timeout")
    compaction = doc.get("compaction_entries", defaults.compaction_entries)
    if not isinstance(compaction, int) or isinstance(compaction, bool) or compaction < 2:
        raise ConfigError("raft.compaction_entries: expected an integer >= 2")
    compaction_period = _positive(doc.get("compaction_period", defaults.compaction_period),
                                  "raft.compaction_period")
    fsync = doc.get("fsync", defaults.fsync)
    if not isinstance(fsync, bool):
        raise ConfigError("raft.fsync: expected true or false")
    return RaftConfig(period, (low, high), fallback, commit, compaction, compaction_period, fsync)


def _cache(raw: Any) -> CacheConfig:
    doc = _mapping(raw, "cache")
    _reject_unknown(doc, {"capacity", "max_follower_lag"}, "cache.")
    capacity = doc.get("capacity", CacheConfig.capacity)
    if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 1:
        raise ConfigError("cache.capacity: expected a positive integer")
    lag = _positive(doc.get("max_follower_lag", CacheConfig.max_follower_lag), "cache.max_follower_lag")
    return CacheConfig(capacity, lag)


def _check_unique(nodes: tuple[NodeConfig, ...], frontends: tuple[FrontendConfig, ...]) -> None:
    ids: set[str] = set()
    ports: set[str] = set()
    for item in list(nodes) + list(frontends):
        if item.id in ids:
            raise ConfigError(f"{item.id}: two processes share this id")
        ids.add(item.id)
        addresses = [item.http] + ([item.raft] if isinstance(item, NodeConfig) else [])
        for address in addresses:
            if str(address) in ports:
                raise ConfigError(f"{item.id}: address {address} is used twice")
            ports.add(str(address))


def _mapping(raw: Any, key: str) -> dict:
    if not isinstance(raw, dict):
        raise ConfigError(f"{key}: expected a mapping")
    return raw


def _reject_unknown(doc: dict, known: set[str], prefix: str) -> None:
    for key in doc:
        if key not in known:
            raise ConfigError(f"{prefix}{key}: unknown key (known: {', '.join(sorted(known))})")


def _string(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key}: expected a non-empty string")
    return value


def _identifier(value: Any, key: str) -> str:
    value = _string(value, key)
    if not value.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"{key}: {value!r} must be letters, digits, '-' or '_'")
    return value


def _retention(raw: Any) -> RetentionConfig:
    doc = _mapping(raw, "retention")
    _reject_unknown(doc, {"outcomes"}, "retention.")
    outcomes = _positive(doc.get("outcomes", RetentionConfig.outcomes), "retention.outcomes")
    if not math.isfinite(outcomes):
        raise ConfigError("retention.outcomes: expected a finite number of seconds")
    return RetentionConfig(outcomes)


def _frontend_settings(raw: Any) -> FrontendSettings:
    doc = _mapping(raw, "frontend")
    _reject_unknown(doc, {"allowed_hosts"}, "frontend.")
    entries = doc.get("allowed_hosts", [])
    if not isinstance(entries, list):
        raise ConfigError("frontend.allowed_hosts: expected a list of host or host:port")
    hosts = []
    for i, entry in enumerate(entries):
        key = f"frontend.allowed_hosts[{i}]"
        entry = _string(entry, key)
        if entry != "*":
            name, sep, port = entry.rpartition(":") if not entry.endswith("]") else ("", "", "")
            if sep and port.isdigit() and 0 < int(port) < 65536:
                _host(name.strip("[]"), key)
            else:
                _host(entry.strip("[]"), key)
        hosts.append(entry)
    return FrontendSettings(tuple(hosts))


def _positive(value: Any, key: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{key}: expected a positive number of seconds")
    return float(value)


def address(value: Any, key: str) -> Address:
    """A host:port checked as a cluster file's addresses are (ConfigError names `key`)."""
    return _address(value, key)


def _address(value: Any, key: str) -> Address:
    value = _string(value, key)
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{key}: expected host:port, got {value!r}")
    if host in WILDCARDS:
        raise ConfigError(f"{key}: the others must reach this process at a specific address, not the "
                          f"wildcard {host} (to listen on every interface, add listen: {host!r})")
    return Address(_host(host, key), int(port))


def _listen(entry: dict, key: str) -> str | None:
    """The optional host a process binds instead of its advertised one (the wildcard included)."""
    if "listen" not in entry:
        return None
    return _host(_string(entry["listen"], key), key)


# RFC 1123 host names: dot-separated labels of letters, digits and inner hyphens.
_HOSTNAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*")


def _host(host: str, key: str) -> str:
    """An IP address or a host name (a service name such as `catalog1` resolves through DNS)."""
    if _is_ip(host) or (len(host) <= 253 and _HOSTNAME.fullmatch(host)):
        return host
    raise ConfigError(f"{key}: {host!r} is neither an IP address nor a host name")
