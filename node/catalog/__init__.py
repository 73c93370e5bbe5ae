"""The catalog group: books, stock and the purchases applied to them.

- `state.py`: the state machine (pure, deterministic `apply`);
- `commands.py`: every catalog command, its builder, and `keys_changed`;
- `routes.py`: a catalog replica's HTTP routes;
- `seed.py`: the one-time initial catalog;
- `service.py`: how a catalog replica is put together (`CatalogService`).
"""
from bazar.node.catalog.commands import keys_changed  # noqa: F401
from bazar.node.catalog.state import CatalogState  # noqa: F401
