"""The operator's secrets file: every key any node needs, random values, a bcrypt UI hash, private mode."""

from __future__ import annotations

import stat

import bcrypt

from deploy import inventory, secret_env


def test_init_fills_every_key_once(tmp_path):
    path = tmp_path / "secrets" / "platform.env"
    password = secret_env.init(path, "dagster.example.org", "ops@example.org", "203.0.113.10")
    assert password and stat.S_IMODE(path.stat().st_mode) == 0o600
    values = dict(line.split("=", 1) for line in path.read_text().splitlines())
    needed = {k for keys in inventory.SECRET_KEYS.values() for k in keys}
    assert set(values) == needed == set(secret_env.keys())
    assert "change-me" not in values.values()
    assert bcrypt.checkpw(password.encode(), values["DAGSTER_UI_PASSWORD_HASH"].strip("'").encode())
    assert len({values["OLTP_PASSWORD"], values["S3_SECRET_ACCESS_KEY"], values["CLICKHOUSE_PASSWORD"]}) == 3
    before = path.read_text()
    assert secret_env.init(path, "x", "y", "z") is None and path.read_text() == before  # never overwritten
