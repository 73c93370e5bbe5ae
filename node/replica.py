"""Run one replica: its Raft member and its HTTP API, in one process."""
from __future__ import annotations

import logging

import consensus
from cluster.config import ClusterConfig
from node import api, catalog_api, order_api
from node.catalog import CatalogState
from node.orders import OrderState
from node.purchase import PurchaseCoordinator
from node.recovery import PendingOrderSweeper
from node.seed import read_seed, seed_when_leader
from web.client import GroupClient
from web.server import serve

log = logging.getLogger("bazar.node")


def build(config: ClusterConfig, node_id: str):
    """The Flask app and background tasks of replica `node_id`, its Raft member started."""
    node = config.node(node_id)
    machine = CatalogState() if node.group == "catalog" else OrderState()
    member = consensus.join(config, node.group, machine, node_id=node.id)
    replica = api.Replica(config, node, member)
    app = api.create_app(replica)
    if node.group == "catalog":
        catalog_api.register(app, replica)
        replica.serving = lambda: replica.state.read(lambda m: m.seeded)[0]
        seed_when_leader(replica, read_seed(config.catalog_seed))
    else:
        catalog = GroupClient([n.http.url for n in config.catalog], secret=config.secret(),
                              source_host=node.source_host, write_attempt_timeout=1.0)
        coordinator = PurchaseCoordinator(replica, catalog)
        order_api.register(app, replica, coordinator)
        PendingOrderSweeper(coordinator, grace=config.raft.commit_timeout + 1.0).start()
    return app, replica


def run(config: ClusterConfig, node_id: str) -> None:
    """Serve replica `node_id` until SIGTERM or SIGINT."""
    app, replica = build(config, node_id)
    node = replica.node
    log.info("%s (%s group): raft on %s, HTTP on %s, data in %s", node.id, node.group,
             node.raft, node.http.url, config.data_dir / node.id)

    def stop() -> None:
        replica.member.close()
        log.info("%s stopped", node.id)

    serve(app, node.bind(node.http), on_stop=stop)
