"""An optional JSON webhook (chat, incident tool) that failure reports are posted to.

Standard library only (``urllib.request``): one POST per failed run does not justify an HTTP dependency.
The URL often carries a token in its path or query, so errors and logs name only its host.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import dagster as dg

ENV_VAR = "FAILURE_WEBHOOK_URL"


class WebhookDeliveryError(RuntimeError):
    """The webhook could not be reached or did not accept the payload (names the host, never the full URL)."""


class WebhookResource(dg.ConfigurableResource):
    """POSTs JSON payloads to ``url``; without a URL it is a no-op, so the sensor still logs every failure."""

    url: str | None = None
    timeout_seconds: float = 10

    @property
    def host(self) -> str:
        """``host[:port]`` of the URL: safe to show, unlike the path/query/credentials that may hold a token."""
        parts = urlsplit(self.url or "")
        host = parts.hostname or "<no host>"
        return f"{host}:{parts.port}" if parts.port else host

    def post(self, payload: dict) -> bool:
        """POST ``payload`` as JSON; False when no URL is configured, True when the webhook answered 2xx.

        Raises ``WebhookDeliveryError`` (one line, naming the host) on a bad URL, HTTP error or connection failure.
        """
        if not self.url:
            return False
        if urlsplit(self.url).scheme not in ("http", "https"):
            raise WebhookDeliveryError(f"failure webhook at {self.host}: URL must be http(s)")
        request = urllib.request.Request(
            self.url,
            data=json.dumps(payload, default=str).encode(),
            headers={"Content-Type": "application/json", "User-Agent": "data-platform-failure-sensor"},
            method="POST",
        )
        # `from None`: urllib's exceptions can embed the full URL (and its token) in chained tracebacks.
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
                status = response.status
        except urllib.error.HTTPError as e:
            raise WebhookDeliveryError(
                f"failure webhook at {self.host} rejected the report: HTTP {e.code} {e.reason}"
            ) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            detail = (str(reason).strip().splitlines() or [""])[0]
            raise WebhookDeliveryError(
                f"failure webhook at {self.host} is unreachable: {type(reason).__name__}: {detail}"
            ) from None
        if not 200 <= status < 300:
            raise WebhookDeliveryError(f"failure webhook at {self.host} rejected the report: HTTP {status}")
        return True


def webhook_resource() -> WebhookResource:
    """The project's ``failure_webhook``: reads ``FAILURE_WEBHOOK_URL`` at run time (kept out of the UI) if set."""
    if os.environ.get(ENV_VAR, "").strip():
        return WebhookResource(url=dg.EnvVar(ENV_VAR))
    return WebhookResource()
