"""Each resource reaches its real engine, and a down or misconfigured service fails with one clear line."""

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
