"""The operator's secrets file, ``deploy/secrets/platform.env`` (git-ignored): created once with random values.

    python -m deploy.secret_env init --domain dagster.example.org --email ops@example.org --vpn-host 203.0.113.10

Every key of ``deploy/secrets.env.example`` gets a value: random tokens for passwords and keys, a bcrypt hash
for the UI password (printed once, never stored in clear), the names given on the command line for the rest.
Ansible then writes to each node only the keys that node needs.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from pathlib import Path

import bcrypt

DEPLOY_DIR = Path(__file__).resolve().parent
EXAMPLE = DEPLOY_DIR / "secrets.env.example"
DEFAULT_PATH = DEPLOY_DIR / "secrets" / "platform.env"
UI_USER = "admin"


def keys(example: Path = EXAMPLE) -> list[str]:
    return [
        line.split("=", 1)[0]
        for line in example.read_text().splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    ]


def values(domain: str, email: str, vpn_host: str, ui_password: str) -> dict[str, str]:
    """A value for every key; anything not named here is a random URL-safe token."""
    named = {
        "DAGSTER_UI_DOMAIN": domain,
        "ACME_EMAIL": email,
        "VPN_PUBLIC_HOST": vpn_host,
        "DAGSTER_UI_USER": UI_USER,
        # single quotes: Compose must not expand the $ signs of the bcrypt hash
        "DAGSTER_UI_PASSWORD_HASH": "'" + bcrypt.hashpw(ui_password.encode(), bcrypt.gensalt()).decode() + "'",
    }
    return {key: named.get(key) or secrets.token_urlsafe(24) for key in keys()}


def init(path: Path, domain: str, email: str, vpn_host: str) -> str | None:
    """Write the file unless it exists; return the UI password when one was generated. An existing file keeps every
    value and gains a random one for each key a newer release added (e.g. a new object-store identity)."""
    if path.exists():
        have = {line.split("=", 1)[0] for line in path.read_text().splitlines() if "=" in line}
        missing = [k for k in keys() if k not in have]
        if missing:
            fresh = values(domain, email, vpn_host, secrets.token_urlsafe(18))
            with path.open("a") as out:
                out.writelines(f"{k}={fresh[k]}\n" for k in missing)
            print(f"{path}: added {', '.join(missing)}", file=sys.stderr)
        return None
    ui_password = secrets.token_urlsafe(18)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    text = "".join(f"{k}={v}\n" for k, v in values(domain, email, vpn_host, ui_password).items())
    path.touch(mode=0o600)
    path.write_text(text)
    return ui_password


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.secret_env", description=__doc__)
    parser.add_argument("command", choices=["init"])
    parser.add_argument("--domain", required=True, help="DNS name of the Dagster UI (A record -> vps_1's reserved IP)")
    parser.add_argument("--email", required=True, help="ACME account e-mail for the TLS certificate")
    parser.add_argument("--vpn-host", required=True, help="what VPN profiles connect to: the reserved IP or a name")
    parser.add_argument("--path", type=Path, default=DEFAULT_PATH)
    args = parser.parse_args(argv)
    password = init(args.path, args.domain, args.email, args.vpn_host)
    if password is None:
        print(f"{args.path} exists, kept", file=sys.stderr)
        return 0
    print(f"wrote {args.path} (mode 0600)", file=sys.stderr)
    print(f"Dagster UI login: {UI_USER} / {password}  (shown once; only its bcrypt hash is stored)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
