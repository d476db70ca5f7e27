"""Spark on vps_2: a local session (``local``) or Spark Connect (``prod``), same DataFrame code.

The session is built with dagster-pyspark's ``spark_session_from_config``; s3a settings come from the
object-store resource, so Spark and the other engines never disagree about endpoint or credentials.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import dagster as dg
from dagster_pyspark.resources import spark_session_from_config
from pydantic import PrivateAttr
from pyspark.sql import SparkSession

from resources.errors import ServiceUnavailableError
from resources.object_store import ObjectStoreResource

# Settings that hold a credential (the s3a keys), kept off a local session's JVM command line
SECRET_CONF = re.compile(r"secret|password|token|access\.key", re.IGNORECASE)

# gRPC codes of a transport failure (the server or the path to it is gone), as opposed to an error the server sent
LOST_CODES = {"UNAVAILABLE", "INTERNAL", "UNKNOWN", "CANCELLED", "DEADLINE_EXCEEDED"}


def connect_retry_policy(budget_seconds: float):
    """pyspark's own retry policy, its retries capped so that an unreachable server fails a step after about
    ``budget_seconds`` (pyspark's default tolerates at least 10 minutes: a lost node would hold the run that long).
    Waits grow 0.05, 0.2, 0.8, 3.2 s, then 10 s each, as pyspark's defaults do up to their cap."""
    from pyspark.sql.connect.client.retries import DefaultPolicy

    waits, retries = 0.0, 0
    while True:
        wait = min(0.05 * 4**retries, 10.0)
        if waits + wait > budget_seconds:
            break
        waits, retries = waits + wait, retries + 1
    return DefaultPolicy(max_retries=retries, max_backoff=10_000)


def _grpc_code(exc: BaseException) -> str | None:
    """The gRPC status of a transport failure, or None when the server answered with a Spark error."""
    try:
        import grpc
        from pyspark.errors.exceptions.connect import SparkConnectGrpcException
    except ImportError:  # pyspark without its Connect extras: no Connect session either
        return None
    if type(exc) is SparkConnectGrpcException and exc.getErrorClass() is None:  # server errors are subclasses
        return exc.getGrpcStatusCode().name
    if isinstance(exc, grpc.RpcError) and callable(getattr(exc, "code", None)):
        return exc.code().name
    return None


def lost_connection(exc: BaseException) -> bool:
    """The server, not the work, failed: a gRPC transport error, or the local session's JVM gone."""
    if _grpc_code(exc) in LOST_CODES:
        return True
    return type(exc).__name__ == "Py4JNetworkError" or isinstance(exc, ConnectionError)


def lost_reason(exc: BaseException) -> str:
    """One line for the error: gRPC's status and details, not the multi-line dump of its call object."""
    text = str(exc)
    details = re.search(r'details = "([^"]*)"', text)
    code = _grpc_code(exc)
    return f"{code}: {details.group(1) if details else text.strip().splitlines()[0]}" if code else text


def _create_connect_session(url: str):
    """pyspark marks the whole process as Connect-only when it creates a remote session; undo that mark, so a
    local session can still be built in the same process (tests and tools use both)."""
    before = os.environ.get("SPARK_CONNECT_MODE_ENABLED")
    try:
        return SparkSession.builder.remote(url).create()
    finally:
        if before is None:
            os.environ.pop("SPARK_CONNECT_MODE_ENABLED", None)


class SparkResource(dg.ConfigurableResource):
    """Lazily creates one SparkSession per process; ``remote`` (sc://host:port) selects Spark Connect."""

    object_store: ObjectStoreResource
    master: str = "local[2]"
    remote: str | None = None
    token: str | None = None
    shuffle_partitions: int = 4
    driver_memory: str = "3g"
    s3a_jars_dir: str | None = None
    local_dir: str | None = None  # scratch space of a local session (kept out of /tmp)
    node: str = "vps_2"
    connect_retry_seconds: float = 60.0  # how long a Connect client retries an unreachable server

    _session: Any = PrivateAttr(default=None)

    @property
    def endpoint(self) -> str:
        """Where Spark runs, as errors and materialization metadata show it: a Connect URL without its parameters
        (``SPARK_REMOTE`` may hold ``sc://host:port/;use_ssl=true;token=…``, the form pyspark documents)."""
        return self.remote.split(";", 1)[0].rstrip("/") if self.remote else self.master

    def spark_config(self) -> dict[str, str]:
        conf: dict[str, str] = {
            "spark.sql.shuffle.partitions": str(self.shuffle_partitions),
            "spark.sql.session.timeZone": "UTC",
            "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
            **self.object_store.spark_conf(),
        }
        if self.remote:
            # quoted: `=`, `/` and `;` separate the URL's parameters (pyspark unquotes the value)
            token = f"/;token={quote(self.token, safe='')}" if self.token else ""
            conf["spark.remote"] = f"{self.remote.rstrip('/')}{token}"
        else:
            conf.update(
                {
                    "spark.master": self.master,
                    "spark.app.name": "data-platform",
                    "spark.ui.enabled": "false",
                    "spark.driver.host": "127.0.0.1",
                    "spark.driver.bindAddress": "127.0.0.1",
                    "spark.driver.memory": self.driver_memory,
                    "spark.sql.adaptive.enabled": "true",
                }
            )
            if self.local_dir:
                Path(self.local_dir).mkdir(parents=True, exist_ok=True)
                conf["spark.local.dir"] = self.local_dir
                conf["spark.hadoop.hadoop.tmp.dir"] = self.local_dir
                conf["spark.driver.extraJavaOptions"] = f"-Djava.io.tmpdir={self.local_dir} -XX:-UsePerfData"
            if self.s3a_jars_dir:
                jars = sorted(str(p) for p in Path(self.s3a_jars_dir).glob("*.jar"))
                if not jars:
                    raise self.unavailable(f"no s3a jars in {self.s3a_jars_dir}; run `make setup`")
                conf["spark.jars"] = ",".join(jars)
        return conf

    def unavailable(self, reason: object) -> ServiceUnavailableError:
        """The one-line error of an unreachable or misconfigured Spark; never with the token in it (the line goes to
        the UI, the event log and the failure webhook)."""
        text = str(reason)
        tokens = {self.token or "", *re.findall(r";token=([^;]*)", self.remote or "")}
        forms = {f for t in tokens for f in (t, quote(t, safe=""), unquote(t))} - {""}
        for secret in sorted(forms, key=len, reverse=True):  # the longest first: a token may hold another form
            text = text.replace(secret, "***")
        return ServiceUnavailableError(self.node, "spark-connect" if self.remote else "spark", self.endpoint, text)

    @property
    def session(self):
        if self._session is None:
            session = None
            try:
                conf = self.spark_config()
                if self.remote:  # a new Connect session: getOrCreate would reuse another endpoint's session
                    session = _create_connect_session(conf.pop("spark.remote"))
                    session.client.set_retry_policies([connect_retry_policy(self.connect_retry_seconds)])
                    # Per-session Hadoop settings: the session's SQL conf is copied into the Hadoop conf of its
                    # jobs, so the server reads the object store this resource points at, with its credentials.
                    for key, value in conf.items():
                        session.conf.set(key.removeprefix("spark.hadoop."), value)
                else:
                    # pyspark passes a builder's settings to the JVM as spark-submit --conf arguments, which every
                    # user of the node reads (ps, /proc/<pid>/cmdline; a batch pod's JVM too): credentials are set on
                    # the running session instead, whose SQL conf is copied into its jobs' Hadoop conf likewise
                    secrets = {key: conf.pop(key) for key in list(conf) if SECRET_CONF.search(key)}
                    session = spark_session_from_config(conf)
                    for key, value in secrets.items():
                        session.conf.set(key.removeprefix("spark.hadoop."), value)
            except ServiceUnavailableError:
                raise
            except Exception as exc:
                raise self.unavailable(lost_reason(exc) if lost_connection(exc) else exc) from None
            self._session = session
        return self._session

    def _discard(self) -> None:
        """Forget a Connect session whose server was lost: the next attempt (a step retry) opens a new one, which a
        restarted server knows (it has never heard of the old session id). Not closed here: closing its channel
        did not help the process's exit, which after a lost server hangs in pyspark 4.3 either way (deploy/README.md,
        an open finding)."""
        if self.remote:
            self._session = None

    @contextmanager
    def unavailable_if_lost(self) -> Iterator[None]:
        """Work on the session; if the server is lost on the way, fail with the one-line error that names node,
        service and endpoint (retried by the step's policy) instead of gRPC's multi-line dump. Errors of the work
        itself (SQL, bad data) pass unchanged."""
        try:
            yield
        except ServiceUnavailableError:
            raise
        except Exception as exc:
            if lost_connection(exc):
                self._discard()
                # not chained: the CLI and the failure report show the root cause, which would be gRPC's dump
                raise self.unavailable(lost_reason(exc)) from None
            raise

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        """Release the server-side Connect session; a local session stays up for the rest of the process."""
        if self.remote and self._session is not None:
            self._session.stop()
            self._session = None

    def provenance(self) -> dict[str, str]:
        """Which Spark did the work, for a materialization's metadata: the endpoint and the application id. A Spark
        Connect server keeps one application for its life, so runs on the same warm server share the id; every
        local session (a run's own JVM, a batch pod) has one of its own."""
        with self.unavailable_if_lost():
            return {"spark_endpoint": self.endpoint, "spark_app_id": self.session.conf.get("spark.app.id")}

    def ping(self) -> str:
        try:
            return str(self.session.range(1).count())
        except ServiceUnavailableError:
            raise
        except Exception as exc:
            raise self.unavailable(exc) from None
