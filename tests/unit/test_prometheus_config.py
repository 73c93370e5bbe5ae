"""deploy/prometheus.yml is what `bazar prometheus-config` makes of cluster.yaml: every process, once."""
from __future__ import annotations

from pathlib import Path

import yaml

from bazar.cluster.config import load
from bazar.cluster.prometheus import prometheus_yaml

ROOT = Path(__file__).resolve().parents[2]


def test_the_shipped_file_is_generated_from_cluster_yaml():
    assert (ROOT / "deploy" / "prometheus.yml").read_text() == prometheus_yaml(load(ROOT / "cluster.yaml"))


def test_every_process_is_one_target_labelled_with_its_id():
    config = load(ROOT / "cluster.yaml")
    scrape = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())["scrape_configs"]
    targets = {group["labels"]["node"]: (job["job_name"], group["targets"])
               for job in scrape for group in job["static_configs"]}
    processes = config.catalog + config.order + config.frontends
    assert targets == {p.id: (f"bazar-{p.group if hasattr(p, 'group') else 'frontend'}", [str(p.http)])
                       for p in processes}
