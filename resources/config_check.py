"""Validate an environment without running anything: reach every service, report each failure by node/endpoint.

python -m resources.config_check [local|prod]
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass

from resources.environments import resource_defs
from resources.errors import ServiceUnavailableError
from resources.settings import Environment, platform_env

_MISSING_ENV = re.compile(r'environment variable "?(\w+)"? which is not set')


@dataclass
class ServiceCheck:
    resource: str
    node: str
    endpoint: str
    ok: bool
    detail: str


def check_environment(env: Environment) -> list[ServiceCheck]:
    results = []
    for key, res in resource_defs(env).items():
        if not hasattr(res, "ping"):  # e.g. the k8s batch launcher: nothing to reach until a pod is started
            continue
        node = getattr(res, "node", "?")
        endpoint = str(getattr(res, "endpoint", "?"))
        try:
            with res.process_config_and_initialize_cm() as live:
                endpoint = str(live.endpoint)
                detail = str(live.ping() or "reachable")
            results.append(ServiceCheck(key, node, endpoint, True, detail.splitlines()[0][:80]))
        except ServiceUnavailableError as exc:
            results.append(ServiceCheck(key, exc.node, exc.endpoint, False, str(exc)))
        except Exception as exc:  # misconfiguration, e.g. a secret that is not set
            missing = _MISSING_ENV.search(str(exc))
            why = f"environment variable {missing[1]} is not set" if missing else str(exc).strip().splitlines()[0]
            results.append(ServiceCheck(key, node, endpoint, False, f"{key} on {node} is misconfigured: {why}"))
    return results


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    env = args[0] if args else platform_env()
    failed = 0
    for c in check_environment(env):  # type: ignore[arg-type]
        failed += not c.ok
        print(f"{'ok  ' if c.ok else 'FAIL'} {c.resource:13s} {c.node:6s} {c.endpoint:45s} {c.detail}")
    print(f"{env}: {'all services reachable' if not failed else f'{failed} service(s) failing'}")
    return 1 if failed else 0


if __name__ == "__main__":
    from dotenv import load_dotenv

    from resources.settings import REPO_ROOT

    load_dotenv(REPO_ROOT / ".env", override=False)
    sys.exit(main())
