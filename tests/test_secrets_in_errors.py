"""A failure's one line reaches the terminal, the UI, the event log and the failure webhook: no credential in it."""

from __future__ import annotations

import secrets
from urllib.parse import quote

import pytest

from platform_assets.oltp.seed import duckdb_with_extensions
from resources.errors import ServiceUnavailableError
from resources.object_store import ObjectStoreResource
from resources.oltp_postgres import OltpPostgresResource
from resources.spark import SparkResource
from tests.conftest import TEST_DATA


# plain, and with quotes, a space and a backslash (every way a connection string escapes a value)
@pytest.mark.parametrize("password", ["s3cr3t-plain", "s3cr3t-'quoted' pass\\word"])
def test_an_unreachable_oltp_attached_to_duckdb_fails_without_its_password(password):
    oltp = OltpPostgresResource(host="127.0.0.1", port=1, database="tpch", user="platform", password=password)
    con = duckdb_with_extensions(TEST_DATA / "duckdb_extensions", "postgres_scanner")
    with pytest.raises(ServiceUnavailableError, match="oltp-postgres on vps_1") as failed:
        oltp.attach(con, "oltp")
    assert "s3cr3t" not in str(failed.value)
    assert "Connection refused" in str(failed.value)  # the reason itself is kept


def test_a_spark_remote_holding_its_token_shows_it_neither_in_errors_nor_as_the_endpoint():
    """``SPARK_REMOTE`` in the form pyspark documents, the token among the URL's parameters (URL-quoted)."""
    store = ObjectStoreResource(endpoint_url="http://127.0.0.1:9", bucket="lake", aws_access_key_id="k",
                                aws_secret_access_key="s")  # fmt: skip
    token = "tok/" + secrets.token_hex(8)
    remote = f"sc://127.0.0.1:9/;use_ssl=true;token={quote(token, safe='')}"
    spark = SparkResource(object_store=store, remote=remote, connect_retry_seconds=1)
    assert spark.endpoint == "sc://127.0.0.1:9"  # what a materialization's spark_endpoint shows
    with pytest.raises(ServiceUnavailableError, match=r"spark-connect on vps_2 .* at sc://127\.0\.0\.1:9: ") as lost:
        spark.ping()
    secret = token.removeprefix("tok/")
    assert secret not in str(lost.value)
    # the server's own text of the token, raw or quoted, is masked too
    assert secret not in str(spark.unavailable(f"rejected {token} ({quote(token, safe='')})"))
