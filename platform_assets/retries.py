"""Transient failures are retried; failures a retry cannot fix are not.

A database or object store restarting, a dropped connection or a node briefly unreachable fails a step; the step
is retried after 2, 4 and 8 s (± jitter), and each layer's step replaces its partition whole, so a retry starts
from a clean slate. Bad input (schema drift, null keys, a malformed file) raises ``permanent(...)``: a
``dg.Failure`` that is not retried and names the table, column and partition.
"""

from __future__ import annotations

import dagster as dg

TRANSIENT = dg.RetryPolicy(max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


def permanent(description: str) -> dg.Failure:
    """A failure no retry can fix: the input itself is wrong."""
    return dg.Failure(description, allow_retries=False)
