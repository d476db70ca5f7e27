"""The run-failure sensor reports a real failed run (asset, partition, root error) to a real HTTP webhook and the log.

No stack needed: an ephemeral Dagster instance, a daily-partitioned asset that fails, ``http.server`` on a free port.
"""

import json
import logging
import secrets
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest

from platform_assets.automation.failure_sensor import defs, failure_sensor, partition_of
from resources.webhook import WebhookDeliveryError, WebhookResource, webhook_resource

PARTITION = "1998-08-05"
ERROR = "column l_discount not found in table warehouse.fct_lineitem"
TOKEN = secrets.token_hex(8)  # stands for the secret a chat webhook URL carries; must never appear in errors


@dg.asset(key_prefix=["marts"], partitions_def=dg.DailyPartitionsDefinition(start_date="1998-01-01"))
def daily_revenue() -> None:
    raise ValueError(f"{ERROR}\n(a second line that the report leaves out)")


@pytest.fixture(scope="module")
def failed_run() -> Iterator[tuple[dg.DagsterInstance, dg.DagsterRun, dg.DagsterEvent]]:
    job = dg.define_asset_job("daily_revenue_job", selection=[daily_revenue])
    job_def = dg.Definitions(assets=[daily_revenue], jobs=[job]).resolve_job_def("daily_revenue_job")
    with dg.instance_for_test() as instance:
        result = job_def.execute_in_process(partition_key=PARTITION, instance=instance, raise_on_error=False)
        assert not result.success
        run = instance.get_run_by_id(result.run_id)
        records = instance.get_records_for_run(run_id=result.run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records
        assert run is not None and len(records) == 1
        yield instance, run, records[0].event_log_entry.dagster_event


class _Webhook(BaseHTTPRequestHandler):
    received: list[dict]
    status = 204

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        content_type = self.headers["Content-Type"]
        self.received.append({"path": self.path, "content_type": content_type, "json": json.loads(body)})
        self.send_response(self.status)
        self.end_headers()

    def log_message(self, *args: object) -> None:  # keep pytest output quiet
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict], type[_Webhook]]]:
    """A real HTTP server on 127.0.0.1 (free port): (url with a token in its path, received POSTs, handler class)."""
    handler = type("Handler", (_Webhook,), {"received": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hooks/{TOKEN}", handler.received, handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class _Collect(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__()
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def evaluate(failed_run, resource: WebhookResource, log: list[logging.LogRecord]) -> None:
    """Run the sensor on the failed run as the daemon would, collecting what it writes to ``context.log``."""
    instance, run, event = failed_run
    context = dg.build_run_status_sensor_context(
        sensor_name=failure_sensor.name,
        dagster_event=event,
        dagster_instance=instance,
        dagster_run=run,
        resources={"failure_webhook": resource},
    ).for_run_failure()
    context.log.addHandler(_Collect(log))
    failure_sensor(context)


def error_lines(log: list[logging.LogRecord]) -> list[str]:
    return [r.getMessage() for r in log if r.levelno == logging.ERROR]


def test_posts_asset_partition_and_error_to_webhook(failed_run, webhook) -> None:
    url, received, _ = webhook
    log: list[logging.LogRecord] = []
    evaluate(failed_run, WebhookResource(url=url, timeout_seconds=5), log)

    assert len(received) == 1
    assert received[0]["path"] == f"/hooks/{TOKEN}"
    assert received[0]["content_type"] == "application/json"
    report = received[0]["json"]
    run = failed_run[1]
    assert report["job"] == "daily_revenue_job"
    assert report["run_id"] == run.run_id
    assert report["run_path"] == f"/runs/{run.run_id}"
    assert report["partition"] == PARTITION
    assert report["asset_keys"] == ["marts/daily_revenue"]
    (step,) = report["failed_steps"]
    assert step == {
        "step_key": "marts__daily_revenue",
        "asset_keys": ["marts/daily_revenue"],
        "error_class": "ValueError",
        "error": ERROR,
    }

    (line,) = error_lines(log)
    assert "\n" not in line
    for part in (run.run_id, PARTITION, "marts/daily_revenue", f"ValueError: {ERROR}"):
        assert part in line


def test_without_url_only_logs(failed_run, webhook) -> None:
    _, received, _ = webhook
    log: list[logging.LogRecord] = []
    evaluate(failed_run, WebhookResource(), log)
    assert received == []
    (line,) = error_lines(log)
    assert PARTITION in line and ERROR in line


def test_unreachable_webhook_is_a_clear_error(failed_run) -> None:
    with socket.socket() as s:  # a port that was free a moment ago and has nothing listening now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log: list[logging.LogRecord] = []
    with pytest.raises(WebhookDeliveryError) as excinfo:
        evaluate(failed_run, WebhookResource(url=f"http://127.0.0.1:{port}/hooks/{TOKEN}", timeout_seconds=5), log)
    message = str(excinfo.value)
    assert f"failure webhook at 127.0.0.1:{port} is unreachable" in message
    assert TOKEN not in message and "\n" not in message
    assert len(error_lines(log)) == 1  # the failure is still in the log


def test_http_error_names_host_not_url(webhook) -> None:
    url, received, handler = webhook
    handler.status = 500
    with pytest.raises(WebhookDeliveryError, match=r"127\.0\.0\.1:\d+ rejected the report: HTTP 500") as excinfo:
        WebhookResource(url=url).post({"x": 1})
    assert TOKEN not in str(excinfo.value)
    assert len(received) == 1


def test_partition_range_and_resource_factory(monkeypatch) -> None:
    tags = {"dagster/asset_partition_range_start": "1998-08-01", "dagster/asset_partition_range_end": "1998-08-05"}
    assert partition_of(tags) == "1998-08-01..1998-08-05"
    assert partition_of({}) is None

    monkeypatch.delenv("FAILURE_WEBHOOK_URL", raising=False)
    assert webhook_resource().url is None
    assert WebhookResource().post({"x": 1}) is False
    monkeypatch.setenv("FAILURE_WEBHOOK_URL", "")
    assert webhook_resource().url is None
    monkeypatch.setenv("FAILURE_WEBHOOK_URL", "http://127.0.0.1:9/hooks/x")
    assert webhook_resource().url == dg.EnvVar("FAILURE_WEBHOOK_URL")


def test_definitions_load_with_the_resource() -> None:
    assert defs.sensors == [failure_sensor]
    assert failure_sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert "failure_webhook" in failure_sensor.required_resource_keys
    dg.Definitions.validate_loadable(
        dg.Definitions.merge(defs, dg.Definitions(resources={"failure_webhook": webhook_resource()}))
    )


def test_the_root_error_is_the_users_also_after_the_steps_retries_ran_out() -> None:
    """Once a step's RetryPolicy gives up, Dagster wraps the error in RetryRequestedFromPolicy: report the cause."""
    from platform_assets.automation.failure_sensor import root_error

    @dg.asset(retry_policy=dg.RetryPolicy(max_retries=1))
    def flaky() -> None:
        raise ValueError(f"{ERROR}\n(a second line)")

    with dg.instance_for_test() as instance:
        result = dg.materialize([flaky], instance=instance, raise_on_error=False)
        (failure,) = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
        error = failure.step_failure_data.error
        assert error.cls_name == "RetryRequestedFromPolicy"  # what the report used to name
        assert root_error(error) == ("ValueError", ERROR)
