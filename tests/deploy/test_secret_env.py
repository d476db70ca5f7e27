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


def test_an_older_secrets_file_gains_the_keys_a_release_added_and_keeps_its_values(tmp_path):
    """An upgrade that adds an identity (e.g. the landing writer's S3 key) must not leave `docker compose` failing on
    a key the operator's file lacks: init again adds it, and changes no value the running nodes use."""
    path = tmp_path / "platform.env"
    secret_env.init(path, "dagster.example.org", "ops@example.org", "203.0.113.10")
    lines = path.read_text().splitlines()
    old = [line for line in lines if not line.startswith("S3_LANDING_")]
    path.write_text("\n".join(old) + "\n")
    assert secret_env.init(path, "dagster.example.org", "ops@example.org", "203.0.113.10") is None
    after = path.read_text().splitlines()
    assert after[: len(old)] == old
    added = dict(line.split("=", 1) for line in after[len(old) :])
    assert set(added) == {"S3_LANDING_ACCESS_KEY_ID", "S3_LANDING_SECRET_ACCESS_KEY"}
    assert all(len(v) >= 24 and v not in "\n".join(old) for v in added.values())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
