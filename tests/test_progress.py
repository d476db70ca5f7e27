"""The demo's progress lines: one per materialization, as it happens, with rows and seconds; no event stream."""

import io

import dagster as dg

from platform_assets.automation.local_runs import execute_requests
from platform_assets.progress import with_progress

DAYS = dg.DailyPartitionsDefinition(start_date="2026-11-30")


@dg.asset(partitions_def=DAYS)
def a_rather_long_asset_name() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"dagster/row_count": 12345, "seconds": 0.25})


@dg.asset(partitions_def=DAYS, deps=[a_rather_long_asset_name])
def short(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    context.log.info("an event-stream line that must not reach the progress")
    return dg.MaterializeResult(metadata={"seconds": 1.5})


def test_one_aligned_line_per_materialization_with_rows_and_seconds(capsys):
    job = dg.Definitions(assets=[a_rather_long_asset_name, short], jobs=[dg.define_asset_job("j")]).resolve_job_def("j")
    stream = io.StringIO()
    progressing, run_config = with_progress(job, stream)
    result = progressing.execute_in_process(run_config=run_config, partition_key="2026-12-01")
    assert result.success
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert "a_rather_long_asset_name" in lines[0] and "12,345 rows" in lines[0] and lines[0].endswith("0.25 s")
    assert "short" in lines[1] and "rows" not in lines[1] and lines[1].endswith("1.50 s")
    assert lines[0].index("2026-12-01") == lines[1].index("2026-12-01")  # aligned whatever the name's length
    assert 0 <= float(lines[0].split()[0]) <= float(lines[1].split()[0])  # seconds since the start, in order
    assert "must not reach" not in stream.getvalue()
    assert "must not reach" in capsys.readouterr().err  # the DEBUG event stream stays on stderr (the demo's log)


@dg.asset_check(asset=short)
def short_took_time() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=True)


def test_runs_a_sensor_requests_print_the_same_lines_and_keep_their_checks():
    """The demo's second day: the sensor's requests, one with the checks it names (a job subset), one without."""
    defs = dg.Definitions(
        assets=[a_rather_long_asset_name, short], asset_checks=[short_took_time], jobs=[dg.define_asset_job("j")]
    )
    requests = [
        dg.RunRequest(
            partition_key="2026-12-01", asset_selection=[short.key], asset_check_keys=[short_took_time.check_key]
        ),
        dg.RunRequest(partition_key="2026-12-01", asset_selection=[a_rather_long_asset_name.key]),
    ]
    stream = io.StringIO()
    with dg.instance_for_test() as instance:
        applied = execute_requests(defs, instance, requests, job_name="j", progress=stream)
    assert applied.success
    lines = stream.getvalue().splitlines()
    assert [line.split()[2] for line in lines] == ["short", "a_rather_long_asset_name"], lines
    assert [(c.check_name, c.passed) for c in applied.checks()] == [("short_took_time", True)]
