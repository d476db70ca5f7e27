"""No credential-looking string anywhere in the git-tracked repository."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.deploy._helpers import REPO

# Values that are references or placeholders, not credentials.
PLACEHOLDER = re.compile(
    r"^(\$\{|\$\(|\$[A-Z_]|\{\{|\{\$|<|change-me|dg\.EnvVar|os\.environ|require|secrets\.|None|\"?\)?$)"
)
PATTERNS = {
    "private key": re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----"),
    "AWS access key": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "DigitalOcean token": re.compile(r"\bdo[op]_v1_[a-f0-9]{64}\b"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    "bcrypt hash": re.compile(r"\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}"),
    "password literal": re.compile(
        r"(?i)\b[a-z_]*(?:password|passwd|secret|token)[a-z_]*\b\s*[:=]\s*['\"]?(?P<value>[^\s'\",;#)]{6,})"
    ),
}


def scan(path: str, text: str) -> list[str]:
    hits = []
    for lineno, line in enumerate(text.splitlines(), 1):
        for kind, pattern in PATTERNS.items():
            for m in pattern.finditer(line):
                value = m.groupdict().get("value")
                if value is not None and (PLACEHOLDER.match(value) or not re.search(r"[0-9]", value)):
                    continue  # a reference, a placeholder or a plain word (e.g. `token=token`)
                hits.append(f"{path}:{lineno}: {kind}")
    return hits


def tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    return [p for p in out.decode().split("\0") if p]


def test_repository_has_no_credentials():
    files = tracked_files()
    assert "deploy/render.py" in files  # we do scan the repository, not an empty list
    hits = []
    for rel in files:
        path = REPO / rel
        if not path.is_file() or rel == "requirements.lock":  # the lock holds only sha256 hashes
            continue
        data = path.read_bytes()
        if b"\0" in data[:4096]:
            continue
        hits += scan(rel, data.decode("utf-8", "replace"))
    assert hits == []


@pytest.mark.parametrize(
    "sample",
    [
        "-----BEGIN " + "OPENSSH PRIVATE KEY-----",
        "aws_access_key_id = AKIA" + "Z7Q2XK4M9VWP3LTB",
        "CLICKHOUSE_PASSWORD=" + "s3cr3tValue9",
        'password: "' + 'hunter22x"',
        "$2b$12$" + "a" * 53,
    ],
)
def test_scanner_catches_planted_credentials(sample):
    assert scan("sample", sample)


@pytest.mark.parametrize(
    "sample", ["OLTP_PASSWORD=change-me", "password=dg.EnvVar('X')", "POSTGRES_PASSWORD: ${OLTP_PASSWORD:?set}"]
)
def test_scanner_ignores_references(sample):
    assert scan("sample", sample) == []
