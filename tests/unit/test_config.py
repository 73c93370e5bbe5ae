"""cluster/config.py (cluster.yaml), cluster/secrets.py and consensus/security.py (the Raft secret)."""
from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bazar.cluster.config import Address, ConfigError, RaftConfig, load
from bazar.consensus.security import raft_password

REPO = Path(__file__).resolve().parents[2]


def replicas(prefix: str, count: int, base: int, host: str = "127.0.0.1") -> list[dict]:
    return [{"id": f"{prefix}{i}", "raft": f"{host}:{base + i}", "http": f"{host}:{base + 50 + i}"}
            for i in range(1, count + 1)]


def document(catalog: int = 3, order: int = 3, host: str = "127.0.0.1") -> dict:
    return {
        "data_dir": "data",
        "raft": {"append_entries_period": 0.05, "election_timeout": [0.2, 0.4]},
        "catalog": replicas("catalog", catalog, 7100, host),
        "order": replicas("order", order, 7200, host),
        "frontends": [{"id": "frontend1", "http": "127.0.0.1:8000"}],
    }


def write(tmp_path: Path, doc) -> Path:
    path = tmp_path / "cluster.yaml"
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False))
    return path


# -- the repository's own file -------------------------------------------------


def test_repository_cluster_yaml_loads():
    config = load(REPO / "cluster.yaml")
    assert len(config.catalog) == 3 and len(config.order) == 3 and len(config.frontends) == 1
    assert [n.id for n in config.catalog] == ["catalog1", "catalog2", "catalog3"]
    assert [n.id for n in config.order] == ["order1", "order2", "order3"]
    assert all(n.group == "catalog" for n in config.catalog)
    assert config.frontend().http == Address("127.0.0.1", 8000)
    assert config.frontend().http.url == "http://127.0.0.1:8000"
    assert config.node("catalog2").raft == Address("127.0.0.1", 7102)
    assert config.data_dir == REPO / "var"
    assert config.catalog_seed == REPO / "node" / "books.json"
    assert config.secret_env == "BAZAR_SECRET"
    assert config.raft == RaftConfig(0.05, (0.2, 0.4), 1.0, 3.0)
    assert config.cache.capacity == 1000
    assert config.all_loopback is True


def test_unknown_node_and_frontend_names():
    config = load(REPO / "cluster.yaml")
    with pytest.raises(ConfigError, match="catalog9"):
        config.node("catalog9")
    with pytest.raises(ConfigError, match="frontend7"):
        config.frontend("frontend7")
    assert config.frontend("frontend1").id == "frontend1"


def test_relative_paths_resolve_against_the_file(tmp_path):
    config = load(write(tmp_path, {**document(), "catalog_seed": "seed/books.json"}))
    assert config.data_dir == tmp_path.resolve() / "data"
    assert config.catalog_seed == tmp_path.resolve() / "seed" / "books.json"


def test_defaults_when_sections_are_left_out(tmp_path):
    doc = document()
    del doc["raft"], doc["data_dir"]
    config = load(write(tmp_path, doc))
    assert config.raft == RaftConfig()
    assert config.cache.capacity == 1000 and config.cache.max_follower_lag == 1.0
    assert config.data_dir == tmp_path.resolve() / "var"
    assert config.admin_token_env == "BAZAR_ADMIN_TOKEN"


# -- group sizes ---------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7])
def test_valid_group_sizes_load(tmp_path, size):
    config = load(write(tmp_path, document(catalog=size, order=size)))
    assert len(config.catalog) == size and len(config.order) == size
    assert len(config.group("catalog")) == size and config.group("order") == config.order


@pytest.mark.parametrize("group", ["catalog", "order"])
@pytest.mark.parametrize("size", [8, 9])
def test_oversized_groups_are_refused(tmp_path, group, size):
    doc = document(**{group: size})
    with pytest.raises(ConfigError, match=rf"^{group}: a Raft group of more than 7 replicas .*got {size}"):
        load(write(tmp_path, doc))


@pytest.mark.parametrize("value", [[], None, "catalog1", {"id": "x"}])
def test_group_must_be_a_non_empty_list(tmp_path, value):
    doc = document()
    doc["catalog"] = value
    with pytest.raises(ConfigError, match="^catalog: expected a list"):
        load(write(tmp_path, doc))


# -- each kind of mistake names its key ---------------------------------------


def mutate(change):
    doc = document()
    change(doc)
    return doc


def _set(path, value):
    def change(doc):
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return change


def _delete(path):
    def change(doc):
        target = doc
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    return change


MISTAKES = [
    ("unknown top-level key", _set(["replicas"], 3), "replicas: unknown key"),
    ("unknown replica key", _set(["order", 2, "port"], 1), r"order\[2\]\.port: unknown key"),
    ("unknown raft key", _set(["raft", "heartbeat"], 1), r"raft\.heartbeat: unknown key"),
    ("unknown cache key", _set(["cache"], {"size": 3}), r"cache\.size: unknown key"),
    ("raft address without port", _set(["catalog", 1, "raft"], "127.0.0.1"), r"catalog\[1\]\.raft: expected host:port"),
    ("raft address with empty port", _set(["catalog", 1, "raft"], "127.0.0.1:"), r"catalog\[1\]\.raft"),
    ("port out of range", _set(["order", 0, "http"], "127.0.0.1:70000"), r"order\[0\]\.http: expected host:port"),
    ("port zero", _set(["order", 0, "http"], "127.0.0.1:0"), r"order\[0\]\.http"),
    ("address not a string", _set(["catalog", 0, "http"], 8101), r"catalog\[0\]\.http: expected a non-empty string"),
    ("missing raft address", _delete(["catalog", 2, "raft"]), r"catalog\[2\]\.raft"),
    ("wildcard IPv4 bind", _set(["catalog", 0, "raft"], "0.0.0.0:7101"), r"catalog\[0\]\.raft: the others must reach this process at a specific address.*0\.0\.0\.0.*listen"),
    ("wildcard IPv6 bind", _set(["order", 1, "http"], ":::8202"), r"order\[1\]\.http: the others must reach this process at a specific address"),
    ("wildcard frontend bind", _set(["frontends", 0, "http"], "0.0.0.0:8000"), r"frontends\[0\]\.http: the others must reach"),
    ("missing id", _delete(["order", 0, "id"]), r"order\[0\]\.id: expected a non-empty string"),
    ("bad id characters", _set(["order", 0, "id"], "order 1"), r"order\[0\]\.id: 'order 1' must be"),
    ("duplicate replica ids", _set(["order", 1, "id"], "catalog1"), r"^catalog1: two processes share this id"),
    ("frontend id equal to a replica id", _set(["frontends", 0, "id"], "order3"), r"^order3: two processes share"),
    ("duplicate raft addresses", _set(["order", 0, "raft"], "127.0.0.1:7101"), r"^order1: address 127\.0\.0\.1:7101 is used twice"),
    ("raft address equal to an http address", _set(["catalog", 1, "raft"], "127.0.0.1:7251"), r"^order1: address 127\.0\.0\.1:7251 is used twice"),
    ("frontend on a replica's port", _set(["frontends", 0, "http"], "127.0.0.1:7253"), r"^frontend1: address 127\.0\.0\.1:7253 is used twice"),
    ("election_timeout not a list", _set(["raft", "election_timeout"], 0.3), r"raft\.election_timeout: expected \[min, max\]"),
    ("election_timeout of one value", _set(["raft", "election_timeout"], [0.3]), r"raft\.election_timeout: expected \[min, max\]"),
    ("election_timeout with text", _set(["raft", "election_timeout"], ["0.2", 0.4]), r"raft\.election_timeout: expected"),
    ("election_timeout with bool", _set(["raft", "election_timeout"], [True, 0.4]), r"raft\.election_timeout: expected"),
    ("election_timeout min == 3*period", _set(["raft", "election_timeout"], [0.15, 0.4]), r"raft\.election_timeout: need 3 \* append_entries_period < min < max"),
    ("election_timeout min < 3*period", _set(["raft", "election_timeout"], [0.1, 0.4]), r"raft\.election_timeout: need"),
    ("election_timeout min == max", _set(["raft", "election_timeout"], [0.4, 0.4]), r"raft\.election_timeout: need"),
    ("election_timeout min > max", _set(["raft", "election_timeout"], [0.5, 0.4]), r"raft\.election_timeout: need"),
    ("period not positive", _set(["raft", "append_entries_period"], 0), r"raft\.append_entries_period: expected a positive"),
    ("commit_timeout text", _set(["raft", "commit_timeout"], "3s"), r"raft\.commit_timeout: expected a positive"),
    ("fallback below period", _set(["raft", "leader_fallback_timeout"], 0.01), r"raft\.leader_fallback_timeout: must exceed"),
    ("cache.capacity 0", _set(["cache"], {"capacity": 0}), r"^cache\.capacity: expected a positive integer"),
    ("cache.capacity float", _set(["cache"], {"capacity": 2.5}), r"^cache\.capacity: expected a positive integer"),
    ("cache.capacity bool", _set(["cache"], {"capacity": True}), r"^cache\.capacity"),
    ("cache.max_follower_lag negative", _set(["cache"], {"max_follower_lag": -1}), r"cache\.max_follower_lag"),
    ("raft not a mapping", _set(["raft"], [1, 2]), r"^raft: expected a mapping"),
    ("replica not a mapping", _set(["catalog", 0], "catalog1"), r"^catalog\[0\]: expected a mapping"),
    ("no frontends", _set(["frontends"], []), r"^frontends: expected a list"),
    ("data_dir empty", _set(["data_dir"], ""), r"^data_dir: expected a non-empty string"),
    ("secret_env not a string", _set(["secret_env"], 5), r"^secret_env: expected a non-empty string"),
]


@pytest.mark.parametrize("change, pattern", [m[1:] for m in MISTAKES], ids=[m[0] for m in MISTAKES])
def test_each_mistake_raises_config_error_naming_the_key(tmp_path, change, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load(write(tmp_path, mutate(change)))


def test_mistakes_do_not_mutate_a_valid_document(tmp_path):
    doc = document()
    before = copy.deepcopy(doc)
    load(write(tmp_path, doc))
    assert doc == before


@pytest.mark.parametrize("text", ["catalog: [\n  - {id: a\n", "key: : :\n  - x", "a: 'unterminated\n",
                                  "\t- tab\n"])
def test_malformed_yaml(tmp_path, text):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load(path)


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just a string\n"])
def test_top_level_must_be_a_mapping(tmp_path, text):
    with pytest.raises(ConfigError, match=r"^\(top level\): expected a mapping"):
        load(write(tmp_path, text))


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cluster file not found: .*nope.yaml"):
        load(tmp_path / "nope.yaml")


def test_address_properties():
    assert Address("127.0.0.1", 1).is_loopback
    assert Address("127.5.5.5", 1).is_loopback
    assert Address("localhost", 1).is_loopback
    assert Address("::1", 1).is_loopback
    assert not Address("10.0.0.2", 1).is_loopback
    assert not Address("node-a.example", 1).is_loopback
    assert str(Address("10.0.0.2", 7101)) == "10.0.0.2:7101"


# -- consensus/security.py -----------------------------------------------------


def test_raft_password_refuses_off_loopback_without_secret(tmp_path, monkeypatch):
    doc = document()
    doc["secret_env"] = "BAZAR_TEST_SECRET"
    doc["catalog"][2]["raft"] = "10.1.2.3:7103"
    config = load(write(tmp_path, doc))
    assert config.all_loopback is False
    monkeypatch.delenv("BAZAR_TEST_SECRET", raising=False)
    with pytest.raises(ConfigError, match=r"BAZAR_TEST_SECRET is not set") as excinfo:
        raft_password(config)
    assert "not loopback" in str(excinfo.value)
    monkeypatch.setenv("BAZAR_TEST_SECRET", "")  # empty counts as unset
    with pytest.raises(ConfigError, match="BAZAR_TEST_SECRET"):
        raft_password(config)


def test_raft_password_returns_the_secret_when_set(tmp_path, monkeypatch):
    doc = document(host="10.0.0.5")
    config = load(write(tmp_path, doc))
    monkeypatch.setenv("BAZAR_SECRET", "s3cret-value-of-at-least-32-bytes")
    assert raft_password(config) == "s3cret-value-of-at-least-32-bytes"


def test_raft_password_on_loopback(tmp_path, monkeypatch):
    config = load(write(tmp_path, document()))
    monkeypatch.delenv("BAZAR_SECRET", raising=False)
    assert raft_password(config) is None
    monkeypatch.setenv("BAZAR_SECRET", "abc" * 11)
    assert raft_password(config) == "abc" * 11  # a secret is still used when given


def test_without_a_seed_file_the_packaged_books_are_used(tmp_path):
    config = load(write(tmp_path, document()))  # names no catalog_seed, and tmp_path has no node/
    assert config.catalog_seed.name == "books.json" and config.catalog_seed.is_file()
    assert config.catalog_seed.parent.name == "node" and config.catalog_seed.parent != tmp_path / "node"


# -- listen and advertised addresses ---------------------------------------------


def container_document() -> dict:
    """Each process in its own container: listens on every interface, reached by service name."""
    doc = document()
    for group in ("catalog", "order"):
        for i, node in enumerate(doc[group], start=1):
            node.update(raft=f"{group}{i}:7101", http=f"{group}{i}:8101", listen="0.0.0.0")
    doc["frontends"] = [{"id": "frontend1", "http": "frontend1:8000", "listen": "0.0.0.0"}]
    return doc


def test_service_names_are_advertised_and_the_wildcard_is_listened_on(tmp_path):
    config = load(write(tmp_path, container_document()))
    node = config.node("catalog2")
    assert node.raft == Address("catalog2", 7101) and node.listen == "0.0.0.0"
    assert node.bind(node.raft) == Address("0.0.0.0", 7101)     # PySyncObj's bindAddress
    assert node.bind(node.http) == Address("0.0.0.0", 8101)     # waitress
    assert node.source_host is None  # no wildcard nor host name as a source address
    assert node.health_url == "http://127.0.0.1:8101/healthz"
    assert config.frontend().bind(config.frontend().http) == Address("0.0.0.0", 8000)


def test_without_listen_a_process_binds_and_leaves_from_its_advertised_address(tmp_path):
    doc = document(host="10.0.0.7")
    doc["catalog"][1]["listen"] = "10.0.0.9"
    config = load(write(tmp_path, doc))
    first, second = config.catalog[0], config.catalog[1]
    assert first.bind(first.raft) == first.raft and first.source_host == "10.0.0.7"
    assert second.bind(second.raft) == Address("10.0.0.9", second.raft.port)
    assert second.source_host == "10.0.0.9" and second.health_url.startswith("http://10.0.0.9:")
    assert config.frontend().source_host == "127.0.0.1"


def test_a_host_name_is_never_a_source_address(tmp_path):
    doc = document()
    doc["catalog"][0].update(raft="localhost:7101", http="localhost:7151")
    config = load(write(tmp_path, doc))
    assert config.catalog[0].source_host is None  # "localhost" may well resolve to ::1
    assert config.catalog[0].bind(config.catalog[0].http) == Address("localhost", 7151)


@pytest.mark.parametrize("field, value, message", [
    ("raft", "bad_host!:7101", r"catalog\[0\]\.raft: 'bad_host!' is neither an IP address nor a host name"),
    ("raft", "-lead.example:7101", r"neither an IP address nor a host name"),
    ("listen", "every interface", r"catalog\[0\]\.listen: 'every interface' is neither"),
    ("listen", 7, r"catalog\[0\]\.listen: expected a non-empty string"),
])
def test_bad_hosts_name_the_key(tmp_path, field, value, message):
    doc = document()
    doc["catalog"][0][field] = value
    with pytest.raises(ConfigError, match=message):
        load(write(tmp_path, doc))


def test_listen_is_a_known_key_of_frontends_too(tmp_path):
    doc = document()
    doc["frontends"][0]["listen"] = "::"
    assert load(write(tmp_path, doc)).frontend().bind(Address("x", 1)) == Address("::", 1)


# -- the secret: required off loopback, for any address; from env, file or Docker secret


@pytest.mark.parametrize("where", ["replica http", "frontend http", "listen"])
def test_an_http_or_listen_address_off_loopback_needs_the_secret_too(tmp_path, monkeypatch, where):
    doc = document()
    if where == "replica http":
        doc["order"][1]["http"] = "10.1.2.3:8202"
    elif where == "frontend http":
        doc["frontends"][0]["http"] = "192.168.7.7:8000"
    else:
        doc["catalog"][0]["listen"] = "0.0.0.0"
    config = load(write(tmp_path, doc))
    monkeypatch.delenv("BAZAR_SECRET", raising=False)
    monkeypatch.delenv("BAZAR_SECRET_FILE", raising=False)
    assert config.all_loopback is False
    with pytest.raises(ConfigError, match="not loopback"):
        raft_password(config)


@pytest.fixture
def no_secret(monkeypatch, tmp_path):
    """No secret in the environment, and an empty stand-in for /run/secrets."""
    from bazar.cluster import secrets as cluster_secrets
    monkeypatch.delenv("BAZAR_SECRET", raising=False)
    monkeypatch.delenv("BAZAR_SECRET_FILE", raising=False)
    secrets = tmp_path / "run-secrets"
    secrets.mkdir()
    monkeypatch.setattr(cluster_secrets, "SECRETS_DIR", secrets)
    return secrets


def test_the_secret_can_come_from_a_file_named_by_the_environment(tmp_path, monkeypatch, no_secret):
    config = load(write(tmp_path, container_document()))
    (tmp_path / "secret.txt").write_text("from-a-file-of-at-least-32-bytes\n")
    monkeypatch.setenv("BAZAR_SECRET_FILE", str(tmp_path / "secret.txt"))
    assert raft_password(config) == "from-a-file-of-at-least-32-bytes"  # the editor's final newline is not part of it
    monkeypatch.setenv("BAZAR_SECRET", "from-the-environment-at-least-32-bytes")
    assert raft_password(config) == "from-the-environment-at-least-32-bytes"  # the variable itself comes first


def test_the_secret_can_come_from_a_docker_secret(tmp_path, no_secret):
    config = load(write(tmp_path, container_document()))
    with pytest.raises(ConfigError, match="Docker secret bazar_secret"):
        raft_password(config)
    (no_secret / "bazar_secret").write_text("")  # empty (say, /dev/null mounted): no secret
    with pytest.raises(ConfigError, match="not loopback"):
        raft_password(config)
    (no_secret / "bazar_secret").write_text("mounted-by-docker-at-least-32-bytes")
    assert raft_password(config) == "mounted-by-docker-at-least-32-bytes"


@pytest.mark.parametrize("source", ["environment", "file", "docker secret"])
def test_a_secret_shorter_than_32_bytes_is_refused_wherever_it_comes_from(tmp_path, monkeypatch, no_secret, source):
    """A short secret can be guessed offline from one recorded signature: refused, with the
    way to make a good one."""
    config = load(write(tmp_path, container_document()))
    weak = "a" * 31
    if source == "environment":
        monkeypatch.setenv("BAZAR_SECRET", weak)
    elif source == "file":
        (tmp_path / "secret.txt").write_text(weak + "\n")
        monkeypatch.setenv("BAZAR_SECRET_FILE", str(tmp_path / "secret.txt"))
    else:
        (no_secret / "bazar_secret").write_text(weak)
    with pytest.raises(ConfigError, match=r"at least 32 bytes.*bazar secret") as excinfo:
        config.secret()
    assert weak not in str(excinfo.value)  # the error never repeats the secret
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        raft_password(config)


def test_bazar_secret_prints_a_fresh_secret_the_config_accepts(tmp_path, monkeypatch, no_secret):
    config = load(write(tmp_path, container_document()))
    printed = []
    for _ in range(2):  # needs no cluster file: run where there is none
        done = subprocess.run([sys.executable, "-m", "bazar", "secret"], cwd=tmp_path, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        printed.append(done.stdout.strip())
    assert printed[0] != printed[1] and len(printed[0].encode()) >= 32
    monkeypatch.setenv("BAZAR_SECRET", printed[0])
    assert config.secret() == printed[0]


def test_a_named_secret_file_that_cannot_be_read_is_an_error(tmp_path, monkeypatch, no_secret):
    config = load(write(tmp_path, container_document()))
    monkeypatch.setenv("BAZAR_SECRET_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match=r"cannot read the cluster secret from .*missing \(\$BAZAR_SECRET_FILE\)"):
        config.secret()


def test_the_admin_token_can_come_from_a_file_or_a_docker_secret_like_the_secret(tmp_path, monkeypatch, no_secret):
    """`docker inspect` shows a container's environment: the token must not have to be in it."""
    config = load(write(tmp_path, container_document()))
    monkeypatch.delenv("BAZAR_ADMIN_TOKEN", raising=False)
    monkeypatch.delenv("BAZAR_ADMIN_TOKEN_FILE", raising=False)
    assert config.admin_token() is None
    (no_secret / "bazar_admin_token").write_text("mounted-token\n")
    assert config.admin_token() == "mounted-token"
    (tmp_path / "token.txt").write_text("token-from-a-file\n")
    monkeypatch.setenv("BAZAR_ADMIN_TOKEN_FILE", str(tmp_path / "token.txt"))
    assert config.admin_token() == "token-from-a-file"
    monkeypatch.setenv("BAZAR_ADMIN_TOKEN", "token-from-the-environment")
    assert config.admin_token() == "token-from-the-environment"
    monkeypatch.delenv("BAZAR_ADMIN_TOKEN")
    monkeypatch.setenv("BAZAR_ADMIN_TOKEN_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match=r"cannot read the admin token from .*missing \(\$BAZAR_ADMIN_TOKEN_FILE\)"):
        config.admin_token()


@pytest.fixture
def no_admin_token(monkeypatch, no_secret):
    monkeypatch.delenv("BAZAR_ADMIN_TOKEN", raising=False)
    monkeypatch.delenv("BAZAR_ADMIN_TOKEN_FILE", raising=False)
    return no_secret


def test_a_loopback_process_given_no_admin_token_makes_one_every_process_shares(tmp_path, no_admin_token):
    """Without one, a loopback store let everyone be the admin (a reverse proxy on the same
    host, or a page rebinding its name to 127.0.0.1, made the public the admin). Now the
    first process makes one, 0600, and every other one (started at the same time) reads it."""
    import stat
    import threading

    config = load(write(tmp_path, document()))
    assert config.all_loopback and config.admin_token() is None
    found: list[str] = []
    threads = [threading.Thread(target=lambda: found.append(config.admin_token_for_this_process()))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    token_file = config.generated_admin_token_file
    assert token_file == config.data_dir / "admin-token"
    assert len(set(found)) == 1 and len(found[0].encode()) >= 32
    assert token_file.read_text().strip() == found[0] == config.admin_token()
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.data_dir.stat().st_mode) == 0o700
    assert [p.name for p in config.data_dir.iterdir()] == ["admin-token"]  # no temporary file left
    assert config.admin_token_for_this_process({"BAZAR_ADMIN_TOKEN": "given"}) == "given"  # given wins


def test_off_loopback_no_admin_token_is_made_and_none_means_no_admin(tmp_path, no_admin_token):
    config = load(write(tmp_path, container_document()))
    assert config.admin_token_for_this_process() is None
    assert not config.generated_admin_token_file.exists()
    (no_admin_token / "bazar_admin_token").write_text("mounted-token\n")
    assert config.admin_token_for_this_process() == "mounted-token"


def test_a_frontend_answers_its_own_addresses_loopback_names_and_the_allowed_hosts(tmp_path):
    doc = document()
    doc["frontends"].append({"id": "frontend2", "http": "10.0.0.5:8001", "listen": "0.0.0.0"})
    doc["frontend"] = {"allowed_hosts": ["Shop.Example.com", "api.example.com:8443", "[2001:db8::1]"]}
    config = load(write(tmp_path, doc))
    # Loopback names on any port: docker-compose publishes the frontend on $BAZAR_PORT, and
    # the container test reaches it on a port of Docker's choosing (seen failing: 421).
    assert config.allowed_hosts(config.frontend("frontend1")) == {
        "127.0.0.1:8000", "10.0.0.5:8001", "localhost", "127.0.0.1", "[::1]",
        "shop.example.com", "api.example.com:8443", "[2001:db8::1]"}
    assert "10.0.0.5:8001" in config.allowed_hosts(config.frontend("frontend2"))
    assert load(write(tmp_path, document())).frontend_settings.allowed_hosts == ()


@pytest.mark.parametrize("value, key", [
    ("shop.example.com", "frontend.allowed_hosts"), ([""], r"frontend.allowed_hosts\[0\]"),
    (["ok.example", "bad host"], r"frontend.allowed_hosts\[1\]"), ([7], r"frontend.allowed_hosts\[0\]"),
])
def test_bad_allowed_hosts_name_the_key(tmp_path, value, key):
    doc = document()
    doc["frontend"] = {"allowed_hosts": value}
    with pytest.raises(ConfigError, match=key):
        load(write(tmp_path, doc))
    doc["frontend"] = {"allowed_host": []}
    with pytest.raises(ConfigError, match="frontend.allowed_host: unknown key"):
        load(write(tmp_path, doc))
