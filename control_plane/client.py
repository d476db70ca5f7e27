"""GraphQL over HTTP to the Dagster webserver, with the proxy's basic auth; every failure is one clear line."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import requests

URL_VAR, USER_VAR, PASSWORD_VAR = "DAGSTER_URL", "DAGSTER_USER", "DAGSTER_PASSWORD"


class ControlPlaneError(Exception):
    """A failure an operator can act on; the CLI prints its message as one line and exits non-zero."""


def default_url() -> str:
    """The local webserver (``make dev``) unless ``DAGSTER_URL`` points elsewhere (e.g. vps_1's proxy)."""
    from resources.settings import local_port

    return f"http://127.0.0.1:{local_port('dagster-webserver')}"


@dataclass
class GraphQLClient:
    url: str
    user: str | None = None
    password: str | None = None
    timeout: float = 30.0

    @classmethod
    def from_env(cls, url: str | None = None) -> GraphQLClient:
        return cls(
            url=(url or os.environ.get(URL_VAR) or default_url()).rstrip("/"),
            user=os.environ.get(USER_VAR) or None,
            password=os.environ.get(PASSWORD_VAR) or None,
        )

    @property
    def endpoint(self) -> str:
        return f"{self.url}/graphql"

    def query(self, document: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run one query or mutation and return its ``data``; transport, auth and GraphQL errors raise."""
        auth = (self.user, self.password or "") if self.user else None
        try:
            resp = requests.post(
                self.endpoint, json={"query": document, "variables": variables or {}}, auth=auth, timeout=self.timeout
            )
        except requests.ConnectionError as exc:
            raise ControlPlaneError(f"Dagster webserver unreachable at {self.url}: {_reason(exc)}") from None
        except requests.Timeout:
            msg = f"Dagster webserver at {self.url} did not answer within {self.timeout:.0f} s"
            raise ControlPlaneError(msg) from None
        if resp.status_code in (401, 403):
            who = f"user {self.user!r}" if self.user else f"no credentials (set {USER_VAR}/{PASSWORD_VAR})"
            raise ControlPlaneError(f"authentication failed at {self.url} (HTTP {resp.status_code}) with {who}")
        if resp.status_code >= 400:
            raise ControlPlaneError(f"Dagster webserver at {self.url} answered HTTP {resp.status_code}: {resp.reason}")
        try:
            body = resp.json()
        except ValueError:
            raise ControlPlaneError(f"{self.endpoint} did not answer with JSON: is this a Dagster webserver?") from None
        if body.get("errors"):
            first = body["errors"][0]
            raise ControlPlaneError(f"GraphQL error from {self.url}: {first.get('message', first)}")
        return body["data"]


def _reason(exc: requests.ConnectionError) -> str:
    """The innermost cause (e.g. "Connection refused") instead of urllib3's multi-line repr."""
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "No route to host", "timed out"):
        if marker in text:
            return marker.lower()
    return text.splitlines()[0][:200] if text else type(exc).__name__
