"""`bazar backup FILE` and `bazar restore FILE`: the whole store in one file, and back.

A backup is taken online: each group is read on its leader at a committed index
(the replicas' `/backup` route: a read index confirmed by a majority, so the
state includes every write acknowledged before it, and nothing is appended to
the log). The two groups are read one after the other, each consistent in
itself; an order still pending in the backup is finished after a restore like
any order whose coordinator died (node/orders/recovery.py).

The file is JSON:

    {"bazar_backup": 2, "taken_at": "...",
     "groups": {"catalog": {"index", "term", "snapshot_format", "digest", "state"},
                "order":   {...}},
     "key_id": "<which cluster secret signed it>",
     "mac": "<HMAC-SHA256 of the canonical JSON of everything above, under the backup key>",
     "sha256": "<hex digest of the canonical JSON of everything else>"}

`state` is the state machine's snapshot as plain data, `digest` the one the
replicas' /state reports for it. A restore checks everything before it writes
anything: the format, the checksum, the signature, each group's digest, and that
each state loads into its state machine; then it fills every replica's data
directory (each must be absent or empty) so that the cluster starts with exactly
that state.

Who may make a backup: a holder of the cluster secret. The state is read from
answers the replicas sign (web/signing.py), so a man in the middle cannot hand
`bazar backup` a state of his own, and the file is signed with the *backup key*
(derived from the secret under a label of its own), so a file changed after it
was written (or made up) is refused by `bazar restore`, which would otherwise write
whatever it holds into every data directory. The checksum tells accidental damage
("corrupt") from a deliberate change that recomputed it ("altered or forged").

`key_id` names the secret that signed (an HMAC of another label under it: it reveals
nothing of the secret), so a restore run with another secret says so rather than
"forged". Such a restore is refused: run it with the secret the backup was taken
under (`BAZAR_SECRET=<old> bazar restore FILE`); the data directories it fills hold
no secret, so the cluster may then start under a new one. A backup with no signature
(format 1, or taken from a cluster run without a secret) is refused unless the
operator, who knows where it came from, says so (`bazar restore --unsigned`).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path

from bazar.cluster.config import GROUPS, ClusterConfig
from bazar.consensus import SNAPSHOT_FORMAT, write_data_dir
from bazar.node.api import digest
from bazar.node.catalog import CatalogState
from bazar.node.orders import OrderState
from bazar.web.admin import Admin, leader_in
from bazar.web.signing import derived_key

BACKUP_FORMAT = 2  # 2: signed (key_id, mac)
_KEY_LABEL = b"bazar backup signing v1"
_KEY_ID_LABEL = b"bazar backup key id v1"
MACHINES = {"catalog": CatalogState, "order": OrderState}
LEADER_WAIT_SECONDS = 30.0     # an election under way, or a leader busy confirming its index
NO_MAJORITY_SECONDS = 5.0      # a replica being restarted answers within this


class BackupError(Exception):
    """A backup that cannot be taken, read or restored; the message says why. Nothing was written."""


# -- taking one ---------------------------------------------------------------------

def take(config: ClusterConfig, admin: Admin | None = None, wait: float = LEADER_WAIT_SECONDS) -> dict:
    """Both groups' states, each read on its leader at a committed index, signed with the
    cluster secret (unsigned if the cluster has none)."""
    admin = admin or Admin(config)
    groups = {group: _read_group(admin, group, wait) for group in GROUPS}
    backup = {"bazar_backup": BACKUP_FORMAT, "taken_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "groups": groups}
    return seal(backup, config.secret())


def seal(backup: dict, secret: str | None) -> dict:
    """`backup` with its signature under `secret` (none without one) and its checksum."""
    if secret is not None:
        backup = {**backup, "key_id": key_id(secret)}
        backup = {**backup, "mac": _mac(derived_key(secret, _KEY_LABEL), backup)}
    return {**backup, "sha256": _checksum(backup)}


def key_id(secret: str) -> str:
    """Which secret signed a backup: a fingerprint that reveals nothing of it."""
    return derived_key(secret, _KEY_ID_LABEL).hex()[:16]


def _read_group(admin: Admin, group: str, wait: float, no_majority: float = NO_MAJORITY_SECONDS) -> dict:
    """The group's state from its leader; during an election, wait up to `wait` seconds for
    the next leader. While fewer than a majority of its replicas answer, no leader can be
    elected: give up once that has lasted `no_majority` seconds."""
    now = time.monotonic()
    deadline, majority_seen = now + wait, now
    while True:
        reports = admin.survey(group)
        leader = leader_in(reports)
        answer = admin.backup(leader) if leader else None
        if answer is not None:
            return {key: answer[key] for key in ("index", "term", "snapshot_format", "digest", "state")}
        now = time.monotonic()
        answering = sum(1 for report in reports if report["reachable"])
        if answering > len(reports) // 2:
            majority_seen = now
        elif now - majority_seen > no_majority:
            raise BackupError(f"the {group} group has no leader: {answering} of its {len(reports)} replicas "
                              f"answer, and it takes a majority of them running to elect one")
        if now > deadline:
            raise BackupError(f"the {group} group has no leader that could confirm a committed index "
                              f"within {wait:.0f} s (is a majority of it running?)")
        time.sleep(0.2)


def write(backup: dict, path: Path) -> None:
    """Write `backup` to `path` whole or not at all (a temporary file renamed into place)."""
    temporary = path.with_name(path.name + ".partial")
    with open(temporary, "w") as file:
        json.dump(backup, file, sort_keys=True, separators=(",", ":"))
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)


# -- reading and restoring one -------------------------------------------------------

def read(path: Path, secret: str | None, unsigned: bool = False) -> dict:
    """The backup in `path`, checked through and through; BackupError if it is not sound,
    or not signed under `secret` (see the module; with `unsigned`, one that carries no
    signature at all is let through: the operator vouches for it)."""
    try:
        backup = json.loads(Path(path).read_bytes())
    except OSError as error:
        raise BackupError(f"cannot read {path}: {error.strerror}") from None
    except ValueError:
        raise BackupError(f"{path} is not a Bazar backup (not JSON: truncated or corrupt)") from None
    if not isinstance(backup, dict) or not isinstance(backup.get("bazar_backup"), int):
        raise BackupError(f"{path} is not a Bazar backup (no format version)")
    if backup["bazar_backup"] > BACKUP_FORMAT:
        raise BackupError(f"{path} has backup format {backup['bazar_backup']}, newer than this Bazar reads "
                          f"({BACKUP_FORMAT}); restore it with the version that wrote it, or a newer one")
    body = {key: value for key, value in backup.items() if key != "sha256"}
    if backup.get("sha256") != _checksum(body):
        raise BackupError(f"{path} is corrupt: its checksum does not match its content")
    _check_signature(path, body, secret, unsigned)
    groups = backup.get("groups")
    if not isinstance(groups, dict) or set(groups) != set(GROUPS):
        raise BackupError(f"{path} does not hold both groups ({', '.join(GROUPS)})")
    for group, part in groups.items():
        _check_group(path, group, part)
    return backup


def _check_signature(path: Path, body: dict, secret: str | None, unsigned: bool) -> None:
    """Refuse a backup not signed with the backup key of `secret` (see the module)."""
    if "mac" not in body:
        if unsigned:
            return
        raise BackupError(f"{path} is not signed (taken by an older Bazar, or from a cluster without a "
                          f"secret): nothing shows it came from your cluster. If you know it did, "
                          f"restore it with --unsigned")
    if secret is None:
        raise BackupError(f"{path} is signed with a cluster secret and none is given: set $BAZAR_SECRET "
                          f"(or its _FILE) to the secret it was taken under")
    if body.get("key_id") != key_id(secret):
        raise BackupError(f"{path} was signed under another cluster secret than the one given: restore it "
                          f"with the secret it was taken under (the data directories keep no secret, so "
                          f"the cluster may then start with a new one)")
    signed = {key: value for key, value in body.items() if key != "mac"}
    given = body["mac"] if isinstance(body["mac"], str) else ""
    if not hmac.compare_digest(_mac(derived_key(secret, _KEY_LABEL), signed).encode(), given.encode()):
        raise BackupError(f"{path} has been altered or forged: its signature does not match its content")


def _check_group(path: Path, group: str, part: dict) -> None:
    if part.get("snapshot_format", 0) > SNAPSHOT_FORMAT:
        raise BackupError(f"{path}: the {group} state has snapshot format {part['snapshot_format']}, newer "
                          f"than this Bazar reads ({SNAPSHOT_FORMAT})")
    if not all(isinstance(part.get(key), int) and part[key] >= 0 for key in ("index", "term")):
        raise BackupError(f"{path}: the {group} group's index and term are missing")
    if digest(part.get("state")) != part.get("digest"):
        raise BackupError(f"{path}: the {group} state does not match its digest")
    try:
        MACHINES[group]().restore(json.loads(json.dumps(part["state"])))
    except (KeyError, TypeError, ValueError, AttributeError):
        raise BackupError(f"{path}: the {group} state is not one this Bazar can load") from None


def restore(config: ClusterConfig, backup: dict, nodes: list[str] | None = None) -> list[Path]:
    """Fill the data directory of every replica `config` names (or of `nodes`); return them.

    Refuses (BackupError, nothing written) if any of them holds anything: a restore
    is for a cluster that has not started yet, never on top of another's data."""
    chosen = [config.node(node_id) for node_id in nodes] if nodes else list(config.catalog + config.order)
    targets = [(node, config.data_dir / node.id) for node in chosen]
    used = [str(path) for _, path in targets if path.exists() and (not path.is_dir() or any(path.iterdir()))]
    if used:
        raise BackupError("restore fills empty data directories only, before the cluster starts; "
                          "not empty: " + ", ".join(used))
    for node, path in targets:
        part = backup["groups"][node.group]
        write_data_dir(path, part["state"], index=max(part["index"], 2), term=max(part["term"], 1),
                       members=[str(n.raft) for n in config.group(node.group)], fsync=config.raft.fsync)
    return [path for _, path in targets]


def _canonical(body: dict) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _checksum(body: dict) -> str:
    return hashlib.sha256(_canonical(body)).hexdigest()


def _mac(key: bytes, body: dict) -> str:
    return hmac.new(key, _canonical(body), hashlib.sha256).hexdigest()
