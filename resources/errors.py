"""One error for every unreachable or misconfigured service: it names node, service and endpoint."""

from __future__ import annotations


class ServiceUnavailableError(RuntimeError):
    def __init__(self, node: str, service: str, endpoint: str, reason: object) -> None:
        self.node, self.service, self.endpoint = node, service, endpoint
        first_line = str(reason).strip().splitlines()[0] if str(reason).strip() else type(reason).__name__
        super().__init__(f"{service} on {node} is unreachable or misconfigured at {endpoint}: {first_line}")
