"""vps_1's Dagster instance as Docker operators hit it: the run launcher loaded from the generated ``dagster.yaml``,
and what reaches a run container checked against what the prod resources and the compute-log manager read.

DockerRunLauncher builds a run container's environment from its ``env_vars`` list, each taken from the daemon's own
environment (the compose file's). A variable missing from either place fails the run only in production.
"""

from __future__ import annotations

import re

import dagster as dg
import yaml
from dagster._core.instance.config import dagster_instance_config
from dagster._serdes import ConfigurableClassData

from deploy import edge_stack
from deploy.object_store_identities import IDENTITIES, LOG_READER
from resources.environments import RESOURCE_SECRETS, resource_defs
from tests.deploy._helpers import DEPLOY, compose

INSTANCE = DEPLOY / "vps_1" / "dagster" / "dagster.yaml"


def _instance() -> dict:
    return yaml.safe_load(INSTANCE.read_text())


def _env_vars_read(value: object) -> set[str]:
    """Every ``dg.EnvVar`` a resource reads, nested resources included."""
    if isinstance(value, dg.EnvVar):
        return {str(value.env_var_name)}
    if isinstance(value, dg.ConfigurableResource):
        return set().union(*(_env_vars_read(v) for v in value._get_non_default_public_field_values().values()))
    return set()


def _launcher():
    section = _instance()["run_launcher"]
    data = ConfigurableClassData(section["module"], section["class"], yaml.safe_dump(section["config"]))
    return data.rehydrate(object)


def test_run_launcher_loads_from_the_generated_instance():
    launcher = _launcher()
    assert type(launcher).__name__ == "DockerRunLauncher"
    assert launcher.networks == [edge_stack.NETWORK]
    kwargs = launcher.container_kwargs
    assert kwargs["auto_remove"] is True, "finished run containers pile up on vps_1"
    assert kwargs["stop_timeout"] > 0


def test_every_variable_a_prod_run_reads_reaches_its_container(monkeypatch):
    monkeypatch.setenv("PLATFORM_ENV", "prod")
    needed = set().union(*(_env_vars_read(r) for r in resource_defs("prod").values()))
    assert {"OLTP_EXTRACT_PASSWORD", "OLTP_CAPTURE_PASSWORD", "S3_ACCESS_KEY_ID", "SPARK_CONNECT_TOKEN",
            "CLICKHOUSE_PASSWORD"} <= needed  # fmt: skip
    assert "OLTP_PASSWORD" not in needed  # the superuser migrates; a run never connects as it
    instance_vars = set(re.findall(r"env: (\w+)", INSTANCE.read_text()))  # the run's instance reads these too
    compute_logs = set(edge_stack.COMPUTE_LOG_CREDENTIALS)  # boto3's, for S3ComputeLogManager in the run
    forwarded = set(_launcher().env_vars)
    assert needed | instance_vars | compute_logs | {"PLATFORM_ENV"} <= forwarded
    daemon = compose("vps_1")["services"]["dagster-daemon"]["environment"]
    assert forwarded <= set(daemon), f"forwarded but unset in the daemon: {sorted(forwarded - set(daemon))}"


def test_compute_logs_have_credentials_wherever_they_are_written_or_read():
    """S3ComputeLogManager has no credential settings: without boto3's variables runs succeed and their logs never
    reach the UI (NoCredentialsError, seen with the first deployment's instance)."""
    section = _instance()["compute_logs"]
    assert section["class"] == "S3ComputeLogManager"
    assert not {"access_key_id", "aws_access_key_id"} & set(section["config"])
    services = compose("vps_1")["services"]
    # the runs write them with the pipeline's keys (the daemon forwards its own); the webserver reads them with a
    # key that can read nothing else (tests/deploy/test_seaweedfs_start.py asks the real server)
    readers = {
        "dagster-daemon": edge_stack.COMPUTE_LOG_CREDENTIALS,
        "dagster-webserver": dict(zip(edge_stack.COMPUTE_LOG_CREDENTIALS, LOG_READER.variables, strict=True)),
    }
    for name, credentials in readers.items():
        env = services[name]["environment"]
        for var, key in credentials.items():
            assert env.get(var, "").startswith("${" + key + ":?"), (name, var)


def test_the_whole_instance_file_is_valid_for_this_dagster():
    config, _ = dagster_instance_config(str(INSTANCE.parent))  # Dagster's own schema; connects to nothing
    assert config["run_launcher"]["class"] == "DockerRunLauncher"


def test_run_monitoring_fails_a_run_whose_container_died_or_never_started_and_retries_it():
    monitoring = _instance()["run_monitoring"]
    assert monitoring["enabled"] is True and monitoring["max_resume_run_attempts"] == 0  # fail, never resume
    assert 60 <= monitoring["start_timeout_seconds"] <= 900 and monitoring["cancel_timeout_seconds"] > 0
    assert _launcher().supports_check_run_worker_health  # what the monitor asks about each STARTED run
    # a run whose step failed is not run again: the step's policy retried what a retry can fix, bad input must not
    assert _instance()["run_retries"] == {"enabled": True, "max_retries": 2, "retry_on_asset_or_op_failure": False}


def test_the_daemon_holds_the_docker_socket_and_the_webserver_only_its_stop_proxy():
    """The daemon launches run containers; the webserver (what the internet reaches first, through the proxy's
    login) stops one when a run is terminated from the UI, through docker-api only, as a non-root user, with no
    pipeline secret: a flaw in it must not be root on vps_1 or a key to the data."""
    services = compose("vps_1")["services"]
    socket = f"{edge_stack.DOCKER_SOCKET}:{edge_stack.DOCKER_SOCKET}"
    assert socket in services["dagster-daemon"]["volumes"]
    assert socket in services[edge_stack.DOCKER_API]["volumes"]
    web = services["dagster-webserver"]
    assert not any(
        "docker.sock" in v for name in ("dagster-webserver", "dagster-code-server") for v in services[name]["volumes"]
    )
    assert web.get("user", "dagster") not in ("root", "0") and "root" not in str(web.get("user", ""))
    assert web["environment"]["DOCKER_HOST"] == f"tcp://{edge_stack.DOCKER_API}:{edge_stack.DOCKER_API_PORT}"
    secrets = set(RESOURCE_SECRETS) | {v for i in IDENTITIES if i is not LOG_READER for v in i.variables}
    leaked = {
        var
        for var, value in web["environment"].items()
        if var in secrets or any("${" + s + ":" in str(value) or "${" + s + "}" in str(value) for s in secrets)
    }
    assert not leaked, f"the webserver holds pipeline secrets: {sorted(leaked)}"
    # the Docker API proxy is on a network of its own with the webserver: run containers and the rest cannot reach it
    api_net = edge_stack.DOCKER_API_NETWORK
    assert services[edge_stack.DOCKER_API]["networks"] == [api_net]
    assert [n for n, svc in services.items() if api_net in svc.get("networks", [])] == [
        "dagster-webserver",
        edge_stack.DOCKER_API,
    ]
    assert compose("vps_1")["networks"][api_net]["internal"] is True
    assert _instance()["run_launcher"]["config"]["network"] != api_net


def test_the_code_server_and_the_webserver_have_healthchecks():
    services = compose("vps_1")["services"]
    assert "grpc-health-check" in services["dagster-code-server"]["healthcheck"]["test"]
    assert any("/server_info" in part for part in services["dagster-webserver"]["healthcheck"]["test"])
    assert services["dagster-daemon"]["healthcheck"]["test"][-1] == "liveness-check"
