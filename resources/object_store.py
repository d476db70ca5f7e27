"""S3-compatible object store on vps_1 (SeaweedFS), built on dagster-aws's ``S3Resource``.

The same endpoint and credentials feed boto3 (here), pyarrow's S3 filesystem (the extract), Spark's s3a
(the transform) and ClickHouse's ``s3()`` table function (the load), so they are never written twice.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

import pyarrow.fs as pafs
import pyarrow.parquet as pq
from botocore.exceptions import BotoCoreError, ClientError
from dagster_aws.s3 import S3Resource
from pydantic import PrivateAttr

from resources.errors import ServiceUnavailableError


class ObjectStoreResource(S3Resource):
    """One bucket on the S3 API; keys are ``<layer>/<table>/...``."""

    bucket: str
    node: str = "vps_1"

    _client: Any = PrivateAttr(default=None)

    # --- addresses ---------------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        return self.endpoint_url or "https://s3.amazonaws.com"

    def s3_uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def s3a_uri(self, key: str) -> str:
        return f"s3a://{self.bucket}/{key}"

    def http_url(self, key: str) -> str:
        """Path-style URL, as ClickHouse's ``s3()`` table function wants it."""
        return f"{self.endpoint.rstrip('/')}/{self.bucket}/{key}"

    # --- clients for each engine -------------------------------------------------------------------
    def client(self):
        """One boto3 client per connection settings: building one is slow (it loads the service model), and a step
        lists, counts and deletes objects several times (boto3 clients are thread-safe). Keyed by the settings, so a
        copy of this resource with other credentials (``model_copy``) never reuses the original's client."""
        settings = (
            self.endpoint_url,
            self.region_name,
            self.aws_access_key_id,
            self.aws_secret_access_key,
            self.aws_session_token,
            self.max_attempts,
            self.use_ssl,
            self.verify,
            self.profile_name,
        )
        if self._client is None or self._client[0] != settings:
            self._client = (settings, self.get_client())
        return self._client[1]

    def arrow_fs(self) -> pafs.S3FileSystem:
        parsed = urlparse(self.endpoint)
        return pafs.S3FileSystem(
            access_key=self.aws_access_key_id,
            secret_key=self.aws_secret_access_key,
            endpoint_override=parsed.netloc,
            scheme=parsed.scheme or "https",
            region=self.region_name or "us-east-1",
            allow_bucket_creation=False,
        )

    def spark_conf(self) -> dict[str, str]:
        """s3a settings derived from this resource (durations as plain numbers for Hadoop 3.5)."""
        parsed = urlparse(self.endpoint)
        return {
            "spark.hadoop.fs.s3a.endpoint": self.endpoint,
            "spark.hadoop.fs.s3a.path.style.access": "true",
            "spark.hadoop.fs.s3a.connection.ssl.enabled": str(parsed.scheme == "https").lower(),
            "spark.hadoop.fs.s3a.access.key": self.aws_access_key_id or "",
            "spark.hadoop.fs.s3a.secret.key": self.aws_secret_access_key or "",
            "spark.hadoop.fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
            "spark.hadoop.fs.s3a.aws.credentials.provider": ("org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider"),
            "spark.hadoop.fs.s3a.threads.keepalivetime": "60",
            "spark.hadoop.fs.s3a.connection.establish.timeout": "30000",
            "spark.hadoop.fs.s3a.connection.timeout": "200000",
            "spark.hadoop.fs.s3a.connection.ttl": "300000",
            "spark.hadoop.fs.s3a.multipart.purge.age": "86400",
            "spark.hadoop.fs.s3a.retry.interval": "500",
            "spark.hadoop.fs.s3a.retry.throttle.interval": "100",
            "spark.hadoop.fs.s3a.assumed.role.session.duration": "1800",
            "spark.hadoop.fs.s3a.committer.magic.enabled": "false",
        }

    def clickhouse_s3(self, key_glob: str, fmt: str = "Parquet") -> str:
        """``s3(...)`` table-function call for ClickHouse (which masks its credentials in query logs)."""

        def quote(value: str) -> str:
            return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"

        args = [self.http_url(key_glob), self.aws_access_key_id or "", self.aws_secret_access_key or "", fmt]
        return f"s3({', '.join(quote(a) for a in args)})"

    # --- operations --------------------------------------------------------------------------------
    def unavailable(self, reason: object) -> ServiceUnavailableError:
        return ServiceUnavailableError(self.node, "object-store-s3", self.endpoint, reason)

    def ping(self) -> None:
        try:
            self.client().head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as exc:
            raise self.unavailable(exc) from None

    def ensure_bucket(self) -> None:
        client = self.client()
        try:
            names = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
            if self.bucket not in names:
                client.create_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as exc:
            raise self.unavailable(exc) from None

    def list_objects(self, prefix: str) -> list[dict]:
        """S3 listing entries (Key, Size, ETag, LastModified) of every object under ``prefix``.

        A bucket that does not exist yet (a fresh deployment before its first extract) holds no objects.
        """
        out: list[dict] = []
        try:
            paginator = self.client().get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                out.extend(page.get("Contents", []))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "NoSuchBucket":
                return []
            raise self.unavailable(exc) from None
        except BotoCoreError as exc:
            raise self.unavailable(exc) from None
        return out

    def list_keys(self, prefix: str) -> list[tuple[str, int]]:
        """(key, size) of every object under ``prefix``."""
        return [(o["Key"], o["Size"]) for o in self.list_objects(prefix)]

    def delete_keys(self, keys: list[str]) -> None:
        client = self.client()
        for i in range(0, len(keys), 1000):
            client.delete_objects(Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]]})

    def parquet_rows(self, prefix: str, name_prefix: str = "") -> int:
        """Rows in the Parquet objects under ``prefix`` (whose file name starts with ``name_prefix``), from footers."""
        fs = self.arrow_fs()
        keys = [
            k
            for k, _ in self.list_keys(prefix)
            if k.endswith(".parquet") and k.rsplit("/", 1)[-1].startswith(name_prefix)
        ]
        return sum(pq.ParquetFile(f"{self.bucket}/{k}", filesystem=fs).metadata.num_rows for k in keys)

    def prefix_bytes(self, prefix: str) -> int:
        return sum(size for _, size in self.list_keys(prefix))
