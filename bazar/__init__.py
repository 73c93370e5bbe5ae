"""Bazar: a replicated online bookstore (catalog and order Raft groups behind a caching frontend).

Everything installs under this one name. The repository keeps one folder per concept
at its top (node/, frontend/, consensus/, web/, cluster/, local/, chaos/, bench/); setup.py
maps each to `bazar.<folder>`, so `bazar.node` is the folder node/, and nothing with a
generic name (web, node, cluster...) lands in site-packages.

The layers, bottom to top (tests/unit/test_shape.py checks that imports only run down):

- `bazar.cluster`: cluster.yaml, validated (`config`), its secret and admin token
  (`secrets`), and the Prometheus scrape configuration that follows from it (`prometheus`);
- `bazar.consensus` (the only package that knows PySyncObj: `consensus.join` gives a
  member) and `bazar.web` (HTTP protocol, errors, the group and admin clients);
- `bazar.node`: the catalog and order replicas (state machines, commands, routes);
- `bazar.frontend`: the public API, its fenced cache and the catalog follower;
- `bazar.local`, `bazar.chaos`, `bazar.bench`: tools that run clusters;
- `bazar.cli`: the `bazar` command (`python -m bazar` runs it too).
"""

__version__ = "0.1.0"
