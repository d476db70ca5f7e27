"""Each resource reaches its real engine, and a down or misconfigured service fails with one clear line."""

import secrets
import socket

import pytest

from resources.clickhouse import ClickHouseResource
from resources.errors import ServiceUnavailableError
from resources.object_store import ObjectStoreResource
from resources.oltp_postgres import OltpPostgresResource


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_real_services_answer(oltp, object_store, clickhouse):
    assert "PostgreSQL" in oltp.ping()
    object_store.ping()
    assert clickhouse.ping().startswith("26.")


def test_oltp_down_names_node_service_endpoint():
    port = free_port()
    res = OltpPostgresResource(host="127.0.0.1", port=port, database="tpch", user="platform", password="x")
    with pytest.raises(ServiceUnavailableError) as err:
        res.ping()
    msg = str(err.value)
    assert msg.startswith(
        f"oltp-postgres on vps_1 is unreachable or misconfigured at postgresql://platform@127.0.0.1:{port}/tpch"
    )
    assert "\n" not in msg and "x" not in msg.split(":")[-1].split()  # one line, no password


def test_oltp_wrong_password(oltp):
    bad = oltp.model_copy(update={"password": "wrong-password"})
    with pytest.raises(ServiceUnavailableError, match="password authentication failed"):
        bad.ping()


def test_object_store_down_and_bad_credentials(object_store):
    port = free_port()
    down = ObjectStoreResource(endpoint_url=f"http://127.0.0.1:{port}", bucket="lake", aws_access_key_id="a",
                               aws_secret_access_key="b", max_attempts=1)  # fmt: skip
    with pytest.raises(ServiceUnavailableError, match=rf"object-store-s3 on vps_1 .* http://127.0.0.1:{port}"):
        down.ping()
    object_store.ping()  # the fixture's resource now holds a client; a copy with other credentials must not use it
    assert object_store.client() is object_store.client()
    wrong = object_store.model_copy(update={"aws_secret_access_key": "not-the-secret"})
    with pytest.raises(ServiceUnavailableError, match="object-store-s3 on vps_1"):
        wrong.ping()
    with pytest.raises(ServiceUnavailableError, match="object-store-s3 on vps_1"):
        wrong.list_keys("landing/")
    # a fresh deployment's bucket before the first extract: nothing landed yet, not an error on every sensor tick
    assert object_store.model_copy(update={"bucket": "not-created-yet"}).list_keys("landing/") == []


def test_clickhouse_http_down_names_vps_3():
    port = free_port()
    res = ClickHouseResource(host="127.0.0.1", port=port, connect_timeout_s=2)
    with pytest.raises(ServiceUnavailableError, match=rf"clickhouse on vps_3 .* http://127.0.0.1:{port}"):
        res.ping()


def test_a_lost_spark_connect_server_fails_within_the_retry_budget_naming_vps_2():
    """pyspark's default policy retries an unreachable server for 10+ minutes; the resource's budget bounds it."""
    import time

    from resources.spark import SparkResource

    port = free_port()
    store = ObjectStoreResource(endpoint_url="http://127.0.0.1:9", bucket="lake", aws_access_key_id="k",
                                aws_secret_access_key="s")  # fmt: skip
    res = SparkResource(object_store=store, remote=f"sc://127.0.0.1:{port}", connect_retry_seconds=3)
    started = time.monotonic()
    with pytest.raises(ServiceUnavailableError) as err:
        res.ping()
    assert time.monotonic() - started < 30  # the budget (3 s of waits), not pyspark's 10 minutes
    msg = str(err.value)
    assert msg.startswith(f"spark-connect on vps_2 is unreachable or misconfigured at sc://127.0.0.1:{port}")
    assert "\n" not in msg


def test_a_spark_connect_token_with_url_characters_reaches_the_server_whole_and_never_an_error():
    """A token with `=`, `/` or `;` was cut by pyspark's URL parser and its error quoted the URL, token and all."""
    from pyspark.sql.connect.client.core import DefaultChannelBuilder

    from resources.spark import SparkResource

    token = secrets.token_hex(6) + "=/;+"  # the URL's separators in a token
    store = ObjectStoreResource(endpoint_url="http://127.0.0.1:9", bucket="lake", aws_access_key_id="k",
                                aws_secret_access_key="s")  # fmt: skip
    res = SparkResource(
        object_store=store, remote=f"sc://127.0.0.1:{free_port()}", token=token, connect_retry_seconds=1
    )
    url = res.spark_config()["spark.remote"]
    assert token not in url and DefaultChannelBuilder(url).token == token  # pyspark's own parser gets it whole
    with pytest.raises(ServiceUnavailableError) as err:
        res.ping()
    assert "token" not in str(err.value).replace("/;token=***", "") and token[:12] not in str(err.value)
    # whatever the failure quotes (pyspark's URL errors quote the parameter), the token is masked
    leaky = res.unavailable(f"Parameter 'token={token}' is not valid; url sc://h/;token={url.split('token=')[1]}")
    assert token[:12] not in str(leaky) and str(leaky).count("***") == 2


def test_the_connect_retry_budget_bounds_pyspark_s_own_policy():
    from resources.spark import connect_retry_policy

    def longest_wait(policy) -> float:  # every retry at its largest backoff, jitter included
        state, total = policy.to_state(), 0.0
        while (wait := state.next_attempt()) is not None:
            total += wait / 1000
        return total

    for budget in (3, 60, 300):
        waited = longest_wait(connect_retry_policy(budget))
        assert budget - 10 < waited <= budget + 0.5 * connect_retry_policy(budget).max_retries, budget


def test_only_a_lost_server_is_reported_as_unavailable_not_an_error_of_the_work():
    import grpc
    from pyspark.errors.exceptions.connect import AnalysisException, SparkConnectGrpcException

    from resources.spark import SparkResource, lost_connection

    lost = SparkConnectGrpcException(
        message="<_MultiThreadedRendezvous of RPC that terminated with:\n\tstatus = StatusCode.INTERNAL\n\t"
        'details = "Stream removed (RST_STREAM (Received RST_STREAM with error code 2))"\n>',
        grpc_status_code=grpc.StatusCode.INTERNAL,
    )
    refused = SparkConnectGrpcException(message="failed to connect", grpc_status_code=grpc.StatusCode.UNAVAILABLE)
    work = AnalysisException(message="[UNRESOLVED_COLUMN] x", errorClass="UNRESOLVED_COLUMN.WITH_SUGGESTION",
                             messageParameters={"objectName": "x", "proposal": "y"},
                             grpc_status_code=grpc.StatusCode.INTERNAL)  # fmt: skip
    assert lost_connection(lost) and lost_connection(refused) and lost_connection(ConnectionResetError())
    assert not lost_connection(work) and not lost_connection(ValueError("bad data"))

    store = ObjectStoreResource(endpoint_url="http://127.0.0.1:9", bucket="lake", aws_access_key_id="k",
                                aws_secret_access_key="s")  # fmt: skip
    spark = SparkResource(object_store=store, remote="sc://10.104.0.3:15002")
    with pytest.raises(ServiceUnavailableError) as err, spark.unavailable_if_lost():
        raise lost
    assert str(err.value) == (
        "spark-connect on vps_2 is unreachable or misconfigured at sc://10.104.0.3:15002: "
        "INTERNAL: Stream removed (RST_STREAM (Received RST_STREAM with error code 2))"
    )
    assert err.value.__cause__ is None and err.value.__suppress_context__  # reports show the root cause: this line
    with pytest.raises(AnalysisException), spark.unavailable_if_lost():
        raise work
