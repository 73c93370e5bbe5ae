"""Run one replica: its Raft member and its HTTP API, in one process.

The composition root: the group's service (node/catalog/service.py or
node/orders/service.py) says what the replica is; this module puts it together.
"""
from __future__ import annotations

import logging

from bazar import consensus
from bazar.cluster.config import ClusterConfig
from bazar.node import api
from bazar.node.catalog.service import CatalogService
from bazar.node.orders.service import OrderService
from bazar.node.retention import ExpiryProposer
from bazar.web.server import serve

log = logging.getLogger("bazar.node")

# How long a leader told to stop may spend handing its role over: a follower that holds the
# whole log takes it within a round trip; one that lags by an entry or two, a few ticks.
HAND_OFF_SECONDS = 1.0

SERVICES = {CatalogService.group: CatalogService, OrderService.group: OrderService}


def build(config: ClusterConfig, node_id: str):
    """The Flask app of replica `node_id` and the replica, its member and background tasks started."""
    node = config.node(node_id)
    service = SERVICES[node.group](config)
    member = consensus.join(config, node.group, service.machine(), node_id=node.id)
    replica = api.Replica(config, node, member, service)
    app = api.create_app(replica)
    service.register(app, replica)
    service.start(replica)
    # Both groups forget old outcomes the same way, decided by their leader's Expire commands.
    ExpiryProposer(member, config.retention.outcomes, config.raft.commit_timeout).start()
    return app, replica


def run(config: ClusterConfig, node_id: str) -> None:
    """Serve replica `node_id` until SIGTERM or SIGINT.

    On SIGTERM a leader first hands leadership to an up-to-date follower, while it still
    answers HTTP (naming the new leader), so a rolling restart costs the group no
    election timeout; then the requests in progress finish and the replica stops.
    """
    app, replica = build(config, node_id)
    node = replica.node
    log.info("%s (%s group): raft on %s, HTTP on %s, data in %s", node.id, node.group,
             node.raft, node.http.url, config.data_dir / node.id)

    def hand_off() -> None:
        if not replica.member.is_leader:
            return
        if replica.member.hand_off(HAND_OFF_SECONDS):
            log.info("%s handed leadership to %s", node.id, replica.member.leader)
        else:
            log.warning("%s found no connected, up-to-date follower to take over (waited at most "
                        "%.1f s); the group elects a leader once it stops", node.id, HAND_OFF_SECONDS)

    def stop() -> None:
        replica.member.close()
        log.info("%s stopped", node.id)

    serve(app, node.bind(node.http), on_stop=stop, before_stop=hand_off)
