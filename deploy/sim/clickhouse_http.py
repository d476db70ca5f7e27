"""vps_3's ClickHouse HTTP interface in the simulation, for what queries the warehouse from another node (the
notebooks in Jupyter on vps_2).

No ClickHouse server installs here (``deploy/README.md``): the warehouse is the in-process engine's folder (chDB)
that vps_1's runs write, which one process at a time may open. This server listens where shard 1's HTTP port is
published (``10.104.0.4:8123``), in vps_3's namespace behind vps_3's firewall, and answers ClickHouse's HTTP
protocol as far as clickhouse-connect's HTTP client uses it, with vps_3's own configuration:

- the users of the generated ``users.d/platform.xml`` in vps_3's stack folder, each password from the environment
  its compose file gives the servers (interpolated from the ``.env`` Ansible wrote), each user's networks and the
  settings of its profile (the analysts' ``readonly``), applied after the request's so a request cannot lift them;
- each request opens the engine on the folder in a child process (waiting while a run holds it), runs the query in
  the format it names, and closes it, so runs are never kept out for longer than a query.

Not served (refused with an error): query parameters (``param_*``), multipart bodies (external tables), sessions.
Answers are never compressed. Files the engine creates in the folder are given back to the folder's owner (the
runs' uid): this process runs as root, whose interpreter the runs' uid cannot execute.

    python -m deploy.sim.clickhouse_http --stack STACK --folder CHDB_FOLDER --listen 10.104.0.4:8123
"""

from __future__ import annotations

import argparse
import base64
import hmac
import ipaddress
import json
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit
from xml.etree import ElementTree as ET

import yaml

from deploy.clickhouse_config import SHARDS
from deploy.sim.netns import Namespace, wait_for
from deploy.sim.operator import secret_values
from resources.topology import service

# parameters of ClickHouse's HTTP handler that are not settings (clickhouse-connect's chDB backend drops the same)
HANDLER_PARAMS = {"query", "database", "default_format", "user", "password", "query_id", "session_id",
                  "session_timeout", "session_check", "quota_key", "compress", "decompress", "buffer_size",
                  "wait_end_of_query", "client_protocol_version", "enable_http_compression",
                  "http_zlib_compression_level", "send_progress_in_http_headers",
                  "http_headers_progress_interval_ms"}  # fmt: skip
BUSY = 75  # the worker's exit status while a run holds the folder
WORKER = r"""
import json, os, sys
from urllib.parse import urlencode
import chdb
folder, options, settings, fmt, database = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]), *sys.argv[4:]
try:
    conn = chdb.connect(folder + ("?" + urlencode(options) if options else ""))
except Exception as e:
    print(e, file=sys.stderr)
    sys.exit(75 if "Cannot lock file" in str(e) or "EmbeddedServer" in str(e) else 1)
try:
    quote = lambda v: "'" + str(v).replace("\\", "\\\\").replace("'", "\\'") + "'"
    for name, value in settings:
        conn.query(f"SET {name} = {quote(value)}")
    if database:
        conn.query("USE `" + database.replace("`", "") + "`")
    sys.stdout.buffer.write(conn.query(sys.stdin.read(), fmt).bytes())
except Exception as e:
    print(e, file=sys.stderr)
    sys.exit(1)
finally:
    conn.close()
"""
_FORMAT = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*$", re.I)
_SETTING = re.compile(r"^\w+$")


@dataclass(frozen=True)
class User:
    name: str
    password: str
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    settings: tuple[tuple[str, str], ...]  # its profile's

    def admits(self, password: str, client: str) -> bool:
        address = ipaddress.ip_address(client)
        return hmac.compare_digest(password, self.password) and any(address in net for net in self.networks)


def server_environment(stack: Path) -> dict[str, str]:
    """Shard 1's container environment as compose gives it: ``${VAR:?…}`` from the stack's ``.env``."""
    dotenv = secret_values(stack / ".env")
    spec = yaml.safe_load((stack / "compose.yaml").read_text())["services"][SHARDS[0].host]["environment"]

    def interpolate(value: str) -> str:
        return re.sub(r"\$\{(\w+)(:\?[^}]*)?\}", lambda m: dotenv[m.group(1)], str(value))

    return {name: interpolate(value) for name, value in spec.items()}


def users(stack: Path) -> dict[str, User]:
    """The users of vps_3's ``users.d/platform.xml``, passwords resolved as the servers resolve ``from_env``."""
    env = server_environment(stack)
    root = ET.parse(stack / "clickhouse" / "users.d" / "platform.xml").getroot()
    profiles = {p.tag: tuple((s.tag, s.text or "") for s in p) for p in root.find("profiles") or []}
    out = {}
    for user in root.find("users"):
        password = user.find("password")
        secret = env[password.get("from_env")] if password.get("from_env") else (password.text or "")
        networks = tuple(ipaddress.ip_network(ip.text) for ip in user.find("networks"))
        out[user.tag] = User(user.tag, secret, networks, profiles.get(user.findtext("profile"), ()))
    return out


@dataclass
class Warehouse:
    folder: Path  # the engine's data folder
    options: dict[str, str]  # chDB's options: the emulated cluster's config file
    busy_timeout: float = 600
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, query: str, fmt: str, settings: list[tuple[str, str]], database: str) -> tuple[bool, bytes]:
        """(ok, the answer or the engine's error), one query at a time, waiting while a run holds the folder."""
        argv = [sys.executable, "-c", WORKER, str(self.folder), json.dumps(self.options), json.dumps(settings), fmt,
                database]  # fmt: skip
        deadline = time.monotonic() + self.busy_timeout
        with self.lock:
            while True:
                out = subprocess.run(argv, input=query.encode(), capture_output=True, timeout=600)
                self._give_back()
                if out.returncode != BUSY or time.monotonic() > deadline:
                    return out.returncode == 0, out.stdout if out.returncode == 0 else out.stderr
                time.sleep(1)

    def _give_back(self) -> None:
        """What the engine made as root goes to the owner of the mount holding the folder (the runs' uid), also
        the folder itself when a query came before the first run."""
        owner = self.folder.parent.stat()
        for path in [self.folder, *self.folder.rglob("*")] if self.folder.exists() else []:
            if path.lstat().st_uid == 0 != owner.st_uid:
                os.lchown(path, owner.st_uid, owner.st_gid)


def handler(warehouse: Warehouse, known: dict[str, User]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            sys.stdout.write(f"{self.client_address[0]} {format % args}\n")
            sys.stdout.flush()

        def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: int, code: int, message: str) -> None:
            body = f"Code: {code}. DB::Exception: {message}\n".encode()
            self._answer(status, body, {"X-ClickHouse-Exception-Code": str(code), "Content-Type": "text/plain"})

        def _user(self, params: dict[str, str]) -> User | None:
            name, password = params.get("user", "default"), params.get("password", "")
            if "X-ClickHouse-User" in self.headers:
                name, password = self.headers["X-ClickHouse-User"], self.headers.get("X-ClickHouse-Key", "")
            auth = self.headers.get("Authorization", "")
            if auth.startswith("Basic "):
                basic = base64.b64decode(auth.removeprefix("Basic ")).decode()
                name, _, password = basic.partition(":")
            user = known.get(name)
            return user if user and user.admits(password, self.client_address[0]) else None

        def do_GET(self) -> None:
            if urlsplit(self.path).path == "/ping":
                self._answer(200, b"Ok.\n")
            else:
                self.do_POST()

        def do_POST(self) -> None:
            params = dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            user = self._user(params)
            if user is None:
                denied = "password is incorrect, or there is no such user, or it may not log in from this address"
                self._error(401, 516, f"Authentication failed: {denied}. (AUTHENTICATION_FAILED)")
                return
            if any(k.startswith("param_") for k in params) or "multipart" in self.headers.get("Content-Type", ""):
                self._error(400, 48, "query parameters and external tables are not served by the simulation's "
                                     "stand-in (deploy/sim/clickhouse_http.py). (NOT_IMPLEMENTED)")  # fmt: skip
                return
            query = "\n".join(q for q in (params.get("query", ""), body) if q)
            named = _FORMAT.search(query)
            fmt = named.group(1) if named else params.get("default_format", "TabSeparated")
            requested = [(k, v) for k, v in params.items() if k not in HANDLER_PARAMS and _SETTING.match(k)]
            ok, out = warehouse.run(query, fmt, [*requested, *user.settings], params.get("database", ""))
            if ok:
                self._answer(200, out, {"X-ClickHouse-Format": fmt, "Content-Type": "application/octet-stream"})
                return
            message = out.decode(errors="replace").strip()
            code = re.search(r"Code: (\d+)\. DB::Exception: (.*)", message, re.S)
            self._error(500, int(code.group(1)) if code else 1001, code.group(2) if code else message)

    return Handler


def cluster_options(folder: Path, config_dir: Path) -> dict[str, str]:
    """The engine's options as the runs open it (resources.environments.clickhouse_resource with this folder), the
    cluster's config file written to ``config_dir``, not beside the folder (the runs' uid owns that one)."""
    from resources.environments import clickhouse_resource

    os.environ["CLICKHOUSE_DSN"] = f"chdb://{folder}"
    for name in ("CLICKHOUSE_CLUSTER", "CLICKHOUSE_SHARDS"):  # unset in the run containers: the defaults
        os.environ.pop(name, None)
    emulated = clickhouse_resource("prod").emulated_cluster()
    return {} if emulated is None else {"config-file": str(emulated.write(config_dir, folder.name))}


def start(ns: Namespace, stack: Path, folder: Path, log: Path, timeout: float = 60) -> subprocess.Popen[bytes]:
    """The server in ``ns`` (vps_3's namespace); returns once it listens. The namespace's lab ends it.

    Entered with ``nsenter --net``, not ``ip netns exec``: that one mounts a fresh /sys without the cgroup
    filesystem, and the engine then fails queries now and then with "Cannot find cgroups v1 or v2 current memory
    file" (seen here on a refused CREATE)."""
    argv = ["nsenter", f"--net=/run/netns/{ns.name}", sys.executable, "-m", "deploy.sim.clickhouse_http",
            "--stack", str(stack), "--folder", str(folder)]  # fmt: skip
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=Path(__file__).resolve().parents[2])  # fmt: skip
    ns.lab.processes.append(proc)  # ended with the lab, as ns.popen's

    def serving() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"the ClickHouse stand-in exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        return log.exists() and "serving " in log.read_text()

    wait_for(serving, timeout, "the ClickHouse stand-in listening", interval=0.5)
    return proc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.sim.clickhouse_http", description=__doc__)
    parser.add_argument("--stack", type=Path, required=True, help="vps_3's stack folder, with the .env Ansible wrote")
    parser.add_argument("--folder", type=Path, required=True, help="the warehouse's chDB folder")
    parser.add_argument("--listen", default=service("clickhouse-shard1-http").endpoint, help="ADDRESS:PORT")
    args = parser.parse_args(argv)
    config_dir = args.stack / "chdb-standin"
    config_dir.mkdir(exist_ok=True)
    warehouse = Warehouse(args.folder, cluster_options(args.folder, config_dir))
    host, port = args.listen.rsplit(":", 1)
    server = ThreadingHTTPServer((host, int(port)), handler(warehouse, users(args.stack)))
    print(f"serving {args.folder} on {args.listen}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
