"""Where the warehouse's rows live on the cluster (production: 2 shards).

- A catalog table is ``<name>_local`` on every shard behind the Distributed table ``<name>``, rows placed by the
  catalog's ``shard_key``.
- A model has two generations of local tables, ``<name>_local_a`` and ``<name>_local_b``: a rebuild fills the one
  the Distributed table does not read, on every shard, then switches the Distributed table to it in one statement
  (readers see the old model or the new one, whole, on every shard), then drops the old one.
- A run's scratch tables (the keys a model run applies) live in ``scratch`` on the node the run talks to only;
  queries ship them to the shards with ``GLOBAL``.

The in-process engine's 2-shard emulation needs these names up front (``sharded_tables``).
"""

from __future__ import annotations

from platform_assets.catalog import MODELS, TABLES, Model, Table

DATABASE = "warehouse"
SCRATCH = "scratch"
GENERATIONS = ("a", "b")


def local_name(spec: Table | Model, cluster: str | None) -> str:
    """The table that holds a catalog table's rows: ``<name>_local`` on each shard with a cluster, else ``<name>``."""
    return f"{spec.name}_local" if cluster else spec.name


def generations(model: Model) -> tuple[str, ...]:
    """A model's two local tables on each shard; the Distributed table reads one of them."""
    return tuple(f"{model.name}_local_{g}" for g in GENERATIONS)


def sharded_tables() -> dict[str, str]:
    """Every local table a Distributed table of the warehouse reads -> its sharding key."""
    out = {f"{DATABASE}.{local_name(t, 'cluster')}": t.shard_key for t in TABLES}
    for m in MODELS:  # and a model's single local table of earlier releases, until its next rebuild
        out.update({f"{DATABASE}.{g}": m.shard_key for g in (*generations(m), local_name(m, "cluster"))})
    return out
