"""`make bench SF=x`: every stage of the lineage side by side with the naive way and the engine's own limit.

``run`` orchestrates; each measured piece of work runs in its own subprocess (``worker``) so its peak RSS is
its own; ``ours`` drives the real Dagster assets, ``*_refs`` hold the naive and limit references.
"""
