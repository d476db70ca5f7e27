"""A step retries what a retry can fix, not bad input, and never an interrupt: a run terminated from the UI stops
(in a one-process run, a ``RetryPolicy`` would turn the interrupt into a retry and the run would go on)."""

import os
import signal

import dagster as dg
import pytest

from platform_assets.retries import TRANSIENT, permanent, retried_if_transient

pytestmark = pytest.mark.filterwarnings("ignore::dagster.BetaWarning")


def _events(instance: dg.DagsterInstance, kind: str) -> list[str]:
    records = instance.get_event_records(dg.EventRecordsFilter(event_type=dg.DagsterEventType[kind]))
    return [r.event_log_entry.step_key for r in records]


def _run(*assets: dg.AssetsDefinition) -> tuple[dg.DagsterInstance, BaseException | None]:
    instance = dg.DagsterInstance.ephemeral()
    try:
        dg.materialize(list(assets), instance=instance, raise_on_error=False)
    except BaseException as interrupted:  # an interrupt leaves the run through its caller
        return instance, interrupted
    return instance, None


def test_a_transient_error_is_retried_until_the_step_succeeds():
    calls = []

    @dg.asset
    @retried_if_transient
    def flaky(context: dg.AssetExecutionContext) -> int:
        calls.append(context.retry_number)
        if len(calls) == 1:
            raise ConnectionError("the server restarted")
        return 1

    instance, interrupted = _run(flaky)
    assert interrupted is None and calls == [0, 1]
    assert _events(instance, "STEP_UP_FOR_RETRY") == ["flaky"]
    assert _events(instance, "STEP_SUCCESS") == ["flaky"]


def test_bad_input_is_not_retried():
    @dg.asset
    @retried_if_transient
    def drifted(context: dg.AssetExecutionContext):
        yield dg.MaterializeResult()
        raise permanent("raw/orders: column o_comment is missing (partition 1998-08-03)")

    instance, _ = _run(drifted)
    assert _events(instance, "STEP_UP_FOR_RETRY") == []
    assert _events(instance, "STEP_FAILURE") == ["drifted"]


def _interrupted_run(with_policy: bool) -> tuple[dg.DagsterInstance, list[str]]:
    """``first`` interrupts its own run on its first attempt (what a run worker gets when the run is terminated);
    its retries come from a ``RetryPolicy`` or from :func:`retried_if_transient`."""
    ran = []

    def first(context: dg.AssetExecutionContext) -> None:
        ran.append("first")
        if context.retry_number == 0:
            os.kill(os.getpid(), signal.SIGINT)

    @dg.asset(deps=["first"])
    def second() -> None:
        ran.append("second")

    step = dg.asset(retry_policy=TRANSIENT)(first) if with_policy else dg.asset(retried_if_transient(first))
    original = signal.getsignal(signal.SIGINT)
    try:
        instance, _ = _run(step, second)
    finally:
        signal.signal(signal.SIGINT, original)
    return instance, ran


def test_an_interrupted_step_is_not_retried_and_the_run_stops():
    instance, ran = _interrupted_run(with_policy=False)
    assert ran == ["first"], ran
    assert _events(instance, "STEP_UP_FOR_RETRY") == []


def test_with_a_retry_policy_the_interrupt_would_be_spent_on_a_retry():
    """Why the steps request their retries themselves: the policy retries the interrupted step and the run goes on."""
    instance, ran = _interrupted_run(with_policy=True)
    assert ran == ["first", "first", "second"], ran
    assert _events(instance, "STEP_UP_FOR_RETRY") == ["first"]
