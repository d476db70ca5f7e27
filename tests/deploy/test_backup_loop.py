"""The backup loop of vps_1 (``deploy/vps_1/backup/backup.sh``) run by bash against the test stack's PostgreSQL and
SeaweedFS: a round succeeds only when every dump reached the object store, a failed dump is reported as a failure,
leaves no object and keeps the good dumps, and what is stored restores.

The image's ``aws`` CLI (Debian's awscli) is not installed here; a small stand-in on ``PATH`` turns the four
``aws s3`` commands the script uses into boto3 calls against the same SeaweedFS, so the objects are real.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from resources.environments import OLTP_ROLES
from tests.conftest import REPO

SCRIPT = REPO / "deploy" / "vps_1" / "backup" / "backup.sh"
HEALTHY = REPO / "deploy" / "vps_1" / "backup" / "backup-healthy"
BUCKET = "test-backups"
AWS = f"""#!{sys.executable}
# aws --endpoint-url URL s3 ls|mb|cp|rm ...: the subset backup.sh uses, through boto3
import os, sys, boto3
args = sys.argv[1:]
url, (cmd, *rest) = args[1], args[3:]
s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1")
def split(uri):
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key
if cmd == "mb":
    s3.create_bucket(Bucket=split(rest[0])[0])
elif cmd == "ls":
    bucket, prefix = split(rest[0])
    if not prefix:
        s3.head_bucket(Bucket=bucket)
    for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
        print("2026-12-01 00:00:00", o["Size"], o["Key"][len(prefix):])
elif cmd == "cp":
    bucket, key = split(rest[1])
    s3.put_object(Bucket=bucket, Key=key, Body=sys.stdin.buffer.read())
elif cmd == "rm":
    bucket, key = split(rest[0])
    s3.delete_object(Bucket=bucket, Key=key)
"""


@pytest.fixture
def backup_env(seeded, oltp, object_store, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "aws").write_text(AWS)
    (bin_dir / "aws").chmod(0o755)
    client = object_store.client()
    if BUCKET in {b["Name"] for b in client.list_buckets()["Buckets"]}:
        for o in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
            client.delete_object(Bucket=BUCKET, Key=o["Key"])
    url = f"postgresql://{oltp.user}@{oltp.host}:{oltp.port}/{oltp.database}"
    backup_user, password_var = OLTP_ROLES["backup"]  # the OLTP is dumped by its backup role, as on vps_1
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:/usr/lib/postgresql/15/bin:{os.environ['PATH']}",
        "S3_ENDPOINT_URL": object_store.endpoint_url,
        "S3_ACCESS_KEY_ID": object_store.aws_access_key_id,
        "S3_SECRET_ACCESS_KEY": object_store.aws_secret_access_key,
        "BACKUP_BUCKET": BUCKET,
        "BACKUP_KEEP": "2",
        "BACKUP_INTERVAL_SECONDS": "3600",
        "BACKUP_STAMP_FILE": str(tmp_path / "last-success"),
        "BACKUP_ONCE": "1",
        "OLTP_URL": f"postgresql://{backup_user}@{oltp.host}:{oltp.port}/{oltp.database}",
        "OLTP_BACKUP_PASSWORD": os.environ[password_var],
        "DAGSTER_PG_URL": url,  # the test stack has one PostgreSQL: both dumps read it
        "DAGSTER_PG_PASSWORD": oltp.password,
    }
    return env, client, tmp_path


def _round(env: dict, **override: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT)], env={**env, **override}, capture_output=True, text=True, timeout=300)


def _dumps(client, name: str) -> list[str]:
    return sorted(
        o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix=f"postgres/{name}/").get("Contents", [])
    )


def _healthy(env: dict) -> bool:
    return subprocess.run(["bash", str(HEALTHY)], env=env, timeout=30).returncode == 0


def test_a_failed_dump_is_a_failure_and_keeps_the_good_dumps(backup_env, oltp):
    env, client, tmp = backup_env
    for _ in range(3):  # three good rounds (one per second: the key is a timestamp), two kept
        ok = _round(env)
        assert ok.returncode == 0, ok.stderr
        subprocess.run(["sleep", "1.1"], check=True)
    good = _dumps(client, "oltp")
    assert len(good) == 2 and _healthy(env)

    (tmp / "last-success").unlink()
    refused = f"postgresql://{oltp.user}@127.0.0.1:1/{oltp.database}"  # nothing listens on port 1
    failed = _round(env, OLTP_URL=refused)
    assert failed.returncode != 0 and "oltp: dump or upload FAILED" in failed.stderr
    assert _dumps(client, "oltp") == good  # no empty object, nothing pruned
    assert not (tmp / "last-success").exists() and not _healthy(env)


def test_what_the_loop_stores_restores(backup_env, oltp):
    env, client, tmp = backup_env
    assert _round(env).returncode == 0
    (key,) = _dumps(client, "oltp")[-1:]
    dump = tmp / "oltp.dump"
    dump.write_bytes(client.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    with oltp.connect(autocommit=True) as conn:  # restore drill into an empty database
        conn.execute("DROP DATABASE IF EXISTS restore_drill")
        conn.execute("CREATE DATABASE restore_drill")
    target = f"postgresql://{oltp.user}@{oltp.host}:{oltp.port}/restore_drill"
    restore = subprocess.run(
        [str(Path("/usr/lib/postgresql/15/bin/pg_restore")), "--no-owner", "-d", target, str(dump)],
        env={**env, "PGPASSWORD": oltp.password}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert restore.returncode == 0, restore.stderr
    restored = oltp.model_copy(update={"database": "restore_drill"})
    query = "SELECT count(*), sum(o_totalprice), md5(string_agg(o_comment, '' ORDER BY o_orderkey)) FROM orders"
    with oltp.connect() as a, restored.connect() as b:
        assert a.execute(query).fetchone() == b.execute(query).fetchone()
    with oltp.connect(autocommit=True) as conn:
        conn.execute("DROP DATABASE restore_drill")


def test_healthy_while_the_first_round_runs_then_as_its_outcome(backup_env, oltp):
    """``docker compose up --wait`` waits for every healthcheck: a first dump of a large database must not fail the
    deployment, and a first round that fails must turn the container unhealthy at once."""
    env, _client, tmp = backup_env
    slow = tmp / "bin" / "pg_dump"  # the first dump takes a while, as on a large database
    slow.write_text('#!/bin/bash\nsleep 3\nexec /usr/lib/postgresql/15/bin/pg_dump "$@"\n')
    slow.chmod(0o755)
    assert not _healthy(env)  # a container that has not started its loop
    running = subprocess.Popen(["bash", str(SCRIPT)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        subprocess.run(["sleep", "1"], check=True)
        assert running.poll() is None and _healthy(env), "unhealthy while the first dump runs"
        assert running.wait(timeout=120) == 0, running.stderr.read()
    finally:
        running.kill()
    assert _healthy(env) and not (tmp / "last-success.first-round").exists()

    (tmp / "last-success").unlink()  # a fresh container whose first round fails
    refused = f"postgresql://{oltp.user}@127.0.0.1:1/{oltp.database}"
    assert _round(env, OLTP_URL=refused).returncode != 0
    assert not _healthy(env)
