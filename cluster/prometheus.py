"""A Prometheus configuration that scrapes every process a cluster file names.

`bazar prometheus-config` prints it; deploy/prometheus.yml is its output for the
repository's cluster.yaml (tests/unit/test_prometheus_config.py keeps the two equal).
It loads the alerting rules in deploy/bazar-alerts.yml, which must sit beside it.
Each process is one target of its role's job (bazar-catalog, bazar-order,
bazar-frontend) at its advertised HTTP address, labelled with its node id, so
a query can name a replica (`bazar_raft_is_leader{node="catalog2"}`). The label is
`node`, not `group`: Raft families carry their own `group` label.

A frontend's /metrics needs the admin token (its port is public, and its request and cache
counters count the store's sales): the bazar-frontend job sends it as a bearer, read from
`admin_token_file` ("admin-token" by default, which Prometheus looks for beside its
configuration file, as it does the rules). Replicas' /metrics need none.
"""
from __future__ import annotations

import yaml

from bazar.cluster.config import ClusterConfig

SCRAPE_INTERVAL = "5s"  # elections take under a second; a minute-long interval would hide them
RULE_FILES = ["bazar-alerts.yml"]  # deploy/bazar-alerts.yml, beside the configuration
ADMIN_TOKEN_FILE = "admin-token"  # the admin token, beside the configuration unless named


def prometheus_config(config: ClusterConfig, scrape_interval: str = SCRAPE_INTERVAL,
                      admin_token_file: str = ADMIN_TOKEN_FILE) -> dict:
    """Prometheus' configuration (as a dict) with one scrape job per role; the frontends'
    scraped with the admin token read from `admin_token_file`."""
    roles = {"catalog": config.catalog, "order": config.order, "frontend": config.frontends}
    jobs = [{"job_name": f"bazar-{role}", "metrics_path": "/metrics",
             **({"authorization": {"type": "Bearer", "credentials_file": admin_token_file}}
                if role == "frontend" else {}),
             "static_configs": [{"targets": [str(process.http)], "labels": {"node": process.id}}
                                for process in processes]}
            for role, processes in roles.items()]
    return {"global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
            "rule_files": RULE_FILES, "scrape_configs": jobs}


def prometheus_yaml(config: ClusterConfig, scrape_interval: str = SCRAPE_INTERVAL,
                    admin_token_file: str = ADMIN_TOKEN_FILE) -> str:
    header = (f"# Prometheus scraping every process of {config.path.name} (made by `bazar prometheus-config`).\n"
              f"# The frontends' /metrics needs the admin token: it is read from {admin_token_file}"
              + (" (beside this file)" if admin_token_file == ADMIN_TOKEN_FILE else "") + ".\n"
              "# Run: prometheus --config.file=deploy/prometheus.yml\n")
    return header + yaml.safe_dump(prometheus_config(config, scrape_interval, admin_token_file), sort_keys=False)
