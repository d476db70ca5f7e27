"""Transient failures are retried; failures a retry cannot fix are not, and neither is a run being stopped.

A database or object store restarting, a dropped connection or a node briefly unreachable fails a step; the step
is retried after 2, 4 and 8 s (± jitter), and each layer's step replaces its partition whole, so a retry starts
from a clean slate. Bad input (schema drift, null keys, a malformed file) raises ``permanent(...)``: a
``dg.Failure`` that is not retried and names the table, column and partition.

The retries are requested by the step itself (:func:`retried_if_transient`), not by a ``dg.RetryPolicy``: Dagster
turns an *interrupt* inside a step with a policy into a retry too, and in a one-process run (the in-process
executor of the local stack and of the simulated topology) the interrupt is then spent — a run terminated from the
UI went on to its end, until the run launcher killed it.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import dagster as dg

TRANSIENT = dg.RetryPolicy(max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


def permanent(description: str) -> dg.Failure:
    """A failure no retry can fix: the input itself is wrong."""
    return dg.Failure(description, allow_retries=False)


def _retry(context: dg.AssetExecutionContext) -> dg.RetryRequested:
    wait = TRANSIENT.calculate_delay(context.retry_number + 1)
    return dg.RetryRequested(max_retries=TRANSIENT.max_retries, seconds_to_wait=wait)


def retried_if_transient(fn: Callable[..., Any]) -> Callable[..., Any]:
    """An asset's compute function whose exceptions request :data:`TRANSIENT`'s retries, except ``permanent``
    failures. Interrupts (``BaseException``: a run terminated or stopped) pass through, so the run stops."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def steps(context: dg.AssetExecutionContext, *args: Any, **kwargs: Any) -> Any:
            try:
                yield from fn(context, *args, **kwargs)
            except (dg.Failure, dg.RetryRequested):
                raise
            except Exception as exc:
                raise _retry(context) from exc

        return steps

    @functools.wraps(fn)
    def step(context: dg.AssetExecutionContext, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(context, *args, **kwargs)
        except (dg.Failure, dg.RetryRequested):
            raise
        except Exception as exc:
            raise _retry(context) from exc

    return step
