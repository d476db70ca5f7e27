"""vps_1's ``docker-api`` proxy (the webserver's only way to Docker) under the real nginx, as rendered.

The Docker socket is replaced by a recording stand-in on a Unix socket (no engine runs in this test; the end-to-end
test terminates a run through the proxy on a real engine). docker-py, the client dagster-docker's run launcher uses,
must be able to do what ``DockerRunLauncher.terminate`` does — look up a container, stop it — and nothing else may
reach the socket: not creating, starting, exec-ing into, killing or removing a container, not images, not a path
that only normalizes to an allowed one.
"""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import socketserver
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import urlsplit

import docker
import pytest

from deploy import edge_stack

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
CONTAINER = "0123456789ab" * 5 + "cdef"


class _Engine(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    seen: list[tuple[str, str]]


class _Handler(BaseHTTPRequestHandler):
    """Answers like the Docker Engine for the calls a stop needs; records every request that reached it."""

    protocol_version = "HTTP/1.1"

    def address_string(self) -> str:  # a Unix socket has no client address
        return "engine"

    def log_message(self, *args) -> None:
        pass

    def _answer(self) -> None:
        self.server.seen.append((self.command, self.path))
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        path = self.path.split("?")[0]
        if path.endswith("/version"):
            body = {"ApiVersion": "1.41", "MinAPIVersion": "1.12", "Version": "20.10.24"}
        elif path.endswith("/json"):
            body = {"Id": CONTAINER, "Name": "/run", "State": {"Running": True}, "Config": {"Labels": {}}}
        else:
            body = None
        data = b"OK" if path.endswith("/_ping") else json.dumps(body).encode() if body else b""
        self.send_response(204 if not data else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Api-Version", "1.41")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = do_HEAD = do_PUT = _answer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def proxy(tmp_path: Path):
    """(the proxy's URL, the requests that reached the engine)."""
    short = Path(tempfile.mkdtemp(prefix="docker-api-", dir="/tmp"))  # a socket path holds 107 bytes: tmp_path may not
    sock = short / "docker.sock"
    engine = _Engine(str(sock), _Handler)
    engine.seen = []
    threading.Thread(target=engine.serve_forever, daemon=True).start()
    port = _free_port()
    conf = edge_stack.docker_api_conf()
    assert f"unix:{edge_stack.DOCKER_SOCKET}:" in conf
    conf = conf.replace("/tmp/", f"{tmp_path}/")  # nginx's pid and temp files; before the socket goes in
    conf = conf.replace(f"unix:{edge_stack.DOCKER_SOCKET}:", f"unix:{sock}:")
    conf = conf.replace(f"listen {edge_stack.DOCKER_API_PORT};", f"listen 127.0.0.1:{port};")
    (tmp_path / "nginx.conf").write_text(conf)
    proc = subprocess.Popen([NGINX, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}", engine.seen
    finally:
        proc.terminate()
        proc.wait(10)
        engine.shutdown()
        engine.server_close()
        shutil.rmtree(short, ignore_errors=True)


def test_the_webserver_can_stop_a_run_container_through_it(proxy):
    url, seen = proxy
    client = docker.DockerClient(base_url=url.replace("http", "tcp"), version="auto")
    container = client.containers.get(CONTAINER)  # what DockerRunLauncher.terminate does
    container.stop(timeout=60)
    assert [(m, p.split("?")[0].split("/", 2)[-1]) for m, p in seen] == [
        ("GET", "version"),
        ("GET", f"containers/{CONTAINER}/json"),
        ("POST", f"containers/{CONTAINER}/stop"),
    ]


FORBIDDEN = [
    ("POST", "/v1.41/containers/create"),
    ("POST", f"/v1.41/containers/{CONTAINER}/start"),
    ("POST", f"/v1.41/containers/{CONTAINER}/exec"),
    ("POST", f"/v1.41/containers/{CONTAINER}/kill"),
    ("DELETE", f"/v1.41/containers/{CONTAINER}"),
    ("GET", "/v1.41/containers/json"),  # the list: every container's env, secrets included
    ("GET", f"/v1.41/containers/{CONTAINER}/archive?path=/"),
    ("POST", "/v1.41/images/create?fromImage=x"),
    ("POST", "/v1.41/build"),
    ("GET", "/v1.41/info"),
    ("POST", f"/v1.41/containers/{CONTAINER}/json"),  # an allowed path, another method
    ("GET", f"/v1.41/containers/{CONTAINER}/stop"),
    ("POST", "/v1.41/containers/create/../x/stop"),  # normalizes to an allowed path: passed on as /x/stop only
    ("POST", "/v1.41/containers/a%2F..%2F..%2Fbuild/stop"),
    ("POST", "/v1.41/swarm/init"),
]


@pytest.mark.parametrize(("method", "path"), FORBIDDEN, ids=[f"{m} {p}" for m, p in FORBIDDEN])
def test_nothing_else_reaches_the_engine(proxy, method, path):
    url, seen = proxy
    conn = http.client.HTTPConnection(urlsplit(url).netloc, timeout=10)  # sends the path as written, dots and all
    conn.request(method, path, body=b"{}" if method == "POST" else None)
    resp = conn.getresponse()
    passed = [p for _, p in seen]
    if path.endswith("/x/stop"):  # nginx resolved the dots; what reaches Docker is the allowed, normalized path
        assert passed == ["/v1.41/containers/x/stop"], passed
        return
    assert resp.status == 403, (resp.status, resp.read()[:200])
    assert passed == [], passed
