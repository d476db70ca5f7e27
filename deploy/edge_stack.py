"""vps_1, the edge: Dagster, both PostgreSQL databases, SeaweedFS, OpenVPN, the TLS proxy and the backups.

Rendered to ``deploy/vps_1/`` (compose.yaml, dagster/dagster.yaml, dagster/workspace.yaml,
openvpn/server.conf). Dagster's processes reach the data services at their topology addresses, exactly as
the prod resources do; runs are containers started by the daemon (DockerRunLauncher) on the same network.
"""

from __future__ import annotations

from ipaddress import IPv4Network
from typing import Any

from deploy import versions
from deploy.compose_common import LOGGING, PLATFORM_ROOT, bind_volume, healthcheck, optional, publish, require
from deploy.object_store_identities import BACKUP_BUCKET, BACKUP_WRITER, COMPUTE_LOGS_PREFIX, IDENTITIES, LOG_READER
from platform_assets import CODE_LOCATION, CODE_MODULE
from resources.dagster_metadata import instance_storage
from resources.environments import LAKE_BUCKET, OLTP_DEFAULTS, OLTP_ROLES, RESOURCE_SECRETS, S3_REGION
from resources.topology import PRIVATE_NETWORK, service

NODE = "vps_1"
NETWORK = "platform"  # DockerRunLauncher starts run containers on this network
NETWORK_SUBNET = IPv4Network("172.30.1.0/24")
VPN_SUBNET = IPv4Network("10.8.0.0/24")  # addresses of VPN clients; NATed into the VPC by the gateway
DAGSTER_IMAGE_VAR = "DAGSTER_IMAGE"  # set by Ansible to platform/dagster:<git commit>
SPARK_CA_IN_CONTAINER = "/run/platform/spark-connect-ca.pem"
SPARK_CA_ON_HOST = f"{PLATFORM_ROOT}/secrets/spark-connect-ca.pem"
# Every key the node's .env must hold (Ansible writes exactly these from the operator's secrets file).
SECRET_KEYS = [
    *RESOURCE_SECRETS,
    *(v for identity in IDENTITIES[1:] for v in identity.variables),  # the pipeline's keys are resource secrets
    "OLTP_PASSWORD",  # the OLTP superuser's: its container and migrations only, never the pipeline's
    "OLTP_BACKUP_PASSWORD",  # pg_dump's role (platform_backup)
    "DAGSTER_PG_PASSWORD",
    "DAGSTER_UI_DOMAIN",
    "DAGSTER_UI_USER",
    "DAGSTER_UI_PASSWORD_HASH",
    "ACME_EMAIL",
    "VPN_PUBLIC_HOST",
]

# Settings the operator may add to the secrets file; Ansible writes each to .env only when it has a value.
OPTIONAL_KEYS = {
    "FAILURE_WEBHOOK_URL": "the failure sensor POSTs each failed run here as JSON (chat or incident tool)",
}

# the webserver's share of the Dagster environment: its instance, no pipeline secret
WEBSERVER_ENV = ("PLATFORM_ENV", "DAGSTER_HOME", "DAGSTER_PG_USER", "DAGSTER_PG_DB", "DAGSTER_PG_PASSWORD")
# boto3's variables for the compute-log manager, from the object store's keys
COMPUTE_LOG_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "S3_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY": "S3_SECRET_ACCESS_KEY"}
DOCKER_SOCKET = "/var/run/docker.sock"
DOCKER_API = "docker-api"  # the webserver's Docker API: stopping a run's container and nothing else
DOCKER_API_NETWORK = "docker-api"
DOCKER_API_PORT = 2375
DOCKER_API_CONF = "/etc/nginx/docker-api.conf"
# what the webserver needs to terminate a run (dagster-docker's DockerRunLauncher.terminate through docker-py)
DOCKER_API_ALLOWED = (
    ("GET", r"/_ping"),  # docker-py's client set-up
    ("GET", r"/version"),  # its API version negotiation
    ("GET", r"/containers/[A-Za-z0-9][A-Za-z0-9_.-]*/json"),  # containers.get(the run's container id)
    ("POST", r"/containers/[A-Za-z0-9][A-Za-z0-9_.-]*/stop"),  # container.stop(timeout=stop_timeout)
)

# What the OLTP migration (seed, `platform_assets.cli migrate`) needs beyond the code server's environment: a one-off
# container of its service with these passed by name from the node's .env (`docker compose run -e NAME`).
MIGRATION_SECRETS = ("OLTP_PASSWORD", "OLTP_BACKUP_PASSWORD")
DAGSTER_PG = {"user": "dagster", "db": "dagster"}
OLTP = OLTP_DEFAULTS


def _dagster_env() -> dict[str, str]:
    env = {
        "PLATFORM_ENV": "prod",
        "DAGSTER_HOME": "/opt/dagster/home",
        "DAGSTER_CURRENT_IMAGE": "${" + DAGSTER_IMAGE_VAR + "}",
        "DAGSTER_PG_USER": DAGSTER_PG["user"],
        "DAGSTER_PG_DB": DAGSTER_PG["db"],
        "DAGSTER_PG_PASSWORD": require("DAGSTER_PG_PASSWORD"),
        "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": SPARK_CA_IN_CONTAINER,  # trusts Spark Connect's TLS certificate
    }
    # S3ComputeLogManager has no credential settings: boto3 reads these (runs write the logs, the webserver reads)
    env |= {var: require(key) for var, key in COMPUTE_LOG_CREDENTIALS.items()}
    env.update({k: require(k) for k in RESOURCE_SECRETS})
    # the failure sensor runs in the code server (the daemon asks it to evaluate the sensor)
    env.update({k: optional(k) for k in OPTIONAL_KEYS})
    return env


def _dagster_service(command: list[str], test: list[str], depends: dict[str, str]) -> dict[str, Any]:
    spec = {
        "image": "${" + DAGSTER_IMAGE_VAR + ":?set by Ansible}",
        "restart": "unless-stopped",
        "command": command,
        "environment": _dagster_env(),
        "volumes": [
            "./dagster/dagster.yaml:/opt/dagster/home/dagster.yaml:ro",
            "./dagster/workspace.yaml:/opt/dagster/home/workspace.yaml:ro",
            f"{SPARK_CA_ON_HOST}:{SPARK_CA_IN_CONTAINER}:ro",
        ],
        "healthcheck": healthcheck(test, start_period="60s"),
        "depends_on": {name: {"condition": cond} for name, cond in depends.items()},
        "logging": LOGGING,
        "networks": [NETWORK],
    }
    return spec


def _postgres(name: str, user: str, db: str, password_var: str, volume_name: str) -> dict[str, Any]:
    spec = {
        "image": versions.POSTGRES,
        "restart": "unless-stopped",
        "environment": {"POSTGRES_USER": user, "POSTGRES_DB": db, "POSTGRES_PASSWORD": require(password_var)},
        "command": ["postgres", "-c", "shared_buffers=512MB", "-c", "max_wal_size=4GB"],
        "shm_size": "256m",
        "volumes": [f"{volume_name}:/var/lib/postgresql/data"],
        "healthcheck": healthcheck(["CMD", "pg_isready", "-U", user, "-d", db]),
        "logging": LOGGING,
        "networks": [NETWORK],
    }
    if service(name).reach != "node":
        spec["ports"] = [publish(name, 5432)]
    return spec


# the roles the OLTP's first start creates (their grants and rotations are the migration's): those whose holders
# connect before any migration has run — postgres-backup's first round at the stack's first start
INITIAL_ROLES = ("extract", "capture", "backup")
OLTP_INIT_SCRIPT = "/docker-entrypoint-initdb.d/10-platform-roles.sh"


def _oltp_postgres() -> dict[str, Any]:
    spec = _postgres("oltp-postgres", OLTP["user"], OLTP["db"], "OLTP_PASSWORD", "oltp-postgres-data")
    spec["environment"] |= {OLTP_ROLES[r][1]: require(OLTP_ROLES[r][1]) for r in INITIAL_ROLES}
    spec["volumes"].append(f"./oltp-postgres/roles.sh:{OLTP_INIT_SCRIPT}:ro")
    return spec


def oltp_roles_script() -> str:
    """The OLTP's first-start script (the postgres image runs ``/docker-entrypoint-initdb.d`` once, on an empty data
    folder): the login roles, passwords read by psql from the environment (never on a command line), and
    ``pg_read_all_data`` for the backups, so a backup can run before the first migration."""
    lines = [
        "#!/bin/sh",
        "# Generated by `python -m deploy.render` from resources/environments.py (OLTP_ROLES) — do not edit by hand.",
        "# Run once by the postgres image on an empty data folder: the login roles of those who connect before any",
        "# migration (postgres-backup's first round). Their grants on the tables, and rotated passwords, are the",
        "# migration's (platform_assets/oltp/roles.py, `python -m platform_assets.cli migrate`).",
        "set -eu",
        *(f': "${{{OLTP_ROLES[r][1]}:?}}"' for r in INITIAL_ROLES),
        'psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<\'SQL\'',
    ]
    for r in INITIAL_ROLES:
        name, var = OLTP_ROLES[r]
        lines += [f"\\getenv password {var}", f"CREATE ROLE {name} LOGIN PASSWORD :'password';"]
    lines += [f"GRANT pg_read_all_data TO {OLTP_ROLES['backup'][0]};", "SQL", ""]
    return "\n".join(lines)


def _seaweedfs() -> dict[str, Any]:
    """vps_1's object store: SeaweedFS, only its S3 API published (it checks credentials)."""
    s3 = service("object-store-s3")
    return {
        "image": versions.SEAWEEDFS,
        "restart": "unless-stopped",
        "entrypoint": ["/bin/sh", "/etc/seaweedfs/start.sh"],
        "environment": {v: require(v) for identity in IDENTITIES for v in identity.variables},
        # only the S3 API, which checks credentials; master, volume and filer stay on the container network
        "ports": [publish("object-store-s3")],
        "volumes": ["./seaweedfs/start.sh:/etc/seaweedfs/start.sh:ro", "seaweedfs-data:/data"],
        # healthy once start.sh has made the buckets (no identity may) and the S3 API answers
        "healthcheck": healthcheck(
            ["CMD-SHELL", f"test -e /tmp/buckets-ready && wget -q -O /dev/null http://127.0.0.1:{s3.port}/healthz"]
        ),
        "logging": LOGGING,
        "networks": [NETWORK],
    }


def _code_server() -> dict[str, Any]:
    """Dagster's code server: the definitions, loaded once and served over gRPC."""
    code = service("dagster-code-server")
    return _dagster_service(
        [
            "dagster",
            "code-server",
            "start",
            "-h",
            "0.0.0.0",
            "-p",
            str(code.port),
            "-m",
            CODE_MODULE,
            "--location-name",
            CODE_LOCATION,
        ],
        ["CMD", "dagster", "api", "grpc-health-check", "-p", str(code.port)],
        {"dagster-postgres": "service_healthy"},
    )


def _webserver() -> dict[str, Any]:
    """Dagster's UI and GraphQL, reached only through the proxy's login: what the internet can reach first, so it
    holds no pipeline secret (it runs no pipeline code: definitions come from the code server over gRPC, runs are
    launched by the daemon), reads only the compute logs, and reaches Docker only through ``docker-api``."""
    web = service("dagster-webserver")
    spec = _dagster_service(
        ["dagster-webserver", "-h", "0.0.0.0", "-p", str(web.port), "-w", "/opt/dagster/home/workspace.yaml"],
        [
            "CMD",
            "python",
            "-c",
            f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{web.port}/server_info')",
        ],
        {"dagster-postgres": "service_healthy", "dagster-code-server": "service_healthy"},
    )
    spec["environment"] = {k: v for k, v in _dagster_env().items() if k in WEBSERVER_ENV} | {
        "AWS_ACCESS_KEY_ID": require(LOG_READER.key_var),
        "AWS_SECRET_ACCESS_KEY": require(LOG_READER.secret_var),
        "DOCKER_HOST": f"tcp://{DOCKER_API}:{DOCKER_API_PORT}",
    }
    spec["volumes"] = [v for v in spec["volumes"] if SPARK_CA_ON_HOST not in v]
    spec["networks"] = [NETWORK, DOCKER_API_NETWORK]
    spec["depends_on"][DOCKER_API] = {"condition": "service_healthy"}
    return spec


def _docker_api() -> dict[str, Any]:
    """nginx in front of the Docker socket, for the webserver: GET a container, POST its stop; everything else 403.

    Runs as root (the socket is root:docker, its group id differs per host) with every capability dropped but
    SETGID, which nginx's worker needs to set its groups, on a read-only root and an internal network."""
    return {
        "image": versions.NGINX,
        "restart": "unless-stopped",
        "command": ["nginx", "-c", DOCKER_API_CONF],
        "user": "root",
        "cap_drop": ["ALL"],
        "cap_add": ["SETGID"],
        "security_opt": ["no-new-privileges:true"],
        "read_only": True,
        "tmpfs": ["/tmp"],
        "volumes": [f"./docker-api/nginx.conf:{DOCKER_API_CONF}:ro", f"{DOCKER_SOCKET}:{DOCKER_SOCKET}"],
        "healthcheck": healthcheck(
            ["CMD", "wget", "-q", "-O", "/dev/null", f"http://127.0.0.1:{DOCKER_API_PORT}/_ping"]
        ),
        "logging": LOGGING,
        "networks": [DOCKER_API_NETWORK],
    }


def docker_api_conf() -> str:
    """The docker-api proxy's nginx.conf, from ``DOCKER_API_ALLOWED``."""
    # the decoded, normalized path that matched (never the client's raw one, which Docker would decode again)
    upstream = f"http://unix:{DOCKER_SOCKET}:$uri$is_args$args"
    locations = []
    for method, path in DOCKER_API_ALLOWED:
        locations += [
            f"    location ~ ^(/v[0-9]+\\.[0-9]+)?{path}$ {{",
            f"      limit_except {method} {{ deny all; }}",
            f"      proxy_pass {upstream};",
            "    }",
        ]
    return "\n".join(
        [
            "# Generated by `python -m deploy.render` from deploy/edge_stack.py — do not edit by hand.",
            "# The Docker API as the webserver may use it: look up a run's container, stop it; anything else is 403.",
            "user root;",
            "worker_processes 1;",
            "daemon off;",
            "pid /tmp/nginx.pid;",
            "error_log stderr notice;",
            "events { worker_connections 64; }",
            "http {",
            "  access_log /dev/stdout;",
            "  client_body_temp_path /tmp/client-body;",
            "  proxy_temp_path /tmp/proxy;",
            "  fastcgi_temp_path /tmp/fastcgi;",
            "  uwsgi_temp_path /tmp/uwsgi;",
            "  scgi_temp_path /tmp/scgi;",
            "  proxy_http_version 1.1;",
            "  proxy_read_timeout 300s;  # a stop waits for the run's stop_timeout",
            "  server {",
            f"    listen {DOCKER_API_PORT};",
            *locations,
            "    location / { return 403; }",
            "  }",
            "}",
            "",
        ]
    )


def _daemon() -> dict[str, Any]:
    """Dagster's daemon: sensors, schedules, the run queue and run monitoring."""
    return _dagster_service(
        ["dagster-daemon", "run", "-w", "/opt/dagster/home/workspace.yaml"],
        ["CMD", "dagster-daemon", "liveness-check"],
        {"dagster-postgres": "service_healthy", "dagster-code-server": "service_healthy"},
    )


def _proxy() -> dict[str, Any]:
    """Caddy: the only HTTPS entry, with its login, in front of the webserver."""
    web = service("dagster-webserver")
    return {
        "image": versions.CADDY,
        "restart": "unless-stopped",
        "environment": {k: require(k) for k in ("DAGSTER_UI_DOMAIN", "ACME_EMAIL", "DAGSTER_UI_USER")}
        | {
            "DAGSTER_UI_PASSWORD_HASH": require("DAGSTER_UI_PASSWORD_HASH"),
            "DAGSTER_UPSTREAM": f"dagster-webserver:{web.port}",
        },
        "ports": [publish("https")],
        "volumes": ["./caddy/Caddyfile:/etc/caddy/Caddyfile:ro", "proxy-data:/data", "proxy-config:/config"],
        "healthcheck": healthcheck(["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:2019/config/"]),
        "depends_on": {"dagster-webserver": {"condition": "service_healthy"}},
        "logging": LOGGING,
        "networks": [NETWORK],
    }


def _openvpn() -> dict[str, Any]:
    """The VPN gateway: clients get an address in VPN_SUBNET, NATed into the VPC."""
    return {
        "build": {"context": "./openvpn"},
        "image": "platform/openvpn:" + versions.DEBIAN_SLIM.split(":")[1],
        "restart": "unless-stopped",
        "cap_add": ["NET_ADMIN"],
        "devices": ["/dev/net/tun:/dev/net/tun"],
        "sysctls": {"net.ipv4.ip_forward": "1"},
        "environment": {
            "VPN_PUBLIC_HOST": require("VPN_PUBLIC_HOST"),
            "VPN_SUBNET": str(VPN_SUBNET),
            "VPC_CIDR": str(PRIVATE_NETWORK),
        },
        "ports": [publish("vpn")],
        "volumes": ["./openvpn/server.conf:/etc/openvpn/server.conf:ro", "openvpn-pki:/etc/openvpn/pki"],
        "healthcheck": healthcheck(["CMD", "pgrep", "-x", "openvpn"]),
        "logging": LOGGING,
        "networks": [NETWORK],
    }


def _postgres_backup() -> dict[str, Any]:
    """Daily dumps of both PostgreSQL databases into the object store, 14 kept."""
    s3 = service("object-store-s3")
    return {
        "build": {"context": "./backup", "args": {"POSTGRES_IMAGE": versions.POSTGRES}},
        "image": "platform/postgres-backup:" + versions.POSTGRES.split(":")[1],
        "restart": "unless-stopped",
        "environment": {
            "BACKUP_INTERVAL_SECONDS": "86400",
            "BACKUP_KEEP": "14",
            "BACKUP_BUCKET": BACKUP_BUCKET,
            "S3_ENDPOINT_URL": f"http://seaweedfs:{s3.port}",
            # its own identities: the backups bucket, nothing of the lake; pg_read_all_data, no write
            "S3_ACCESS_KEY_ID": require(BACKUP_WRITER.key_var),
            "S3_SECRET_ACCESS_KEY": require(BACKUP_WRITER.secret_var),
            "OLTP_URL": f"postgresql://{OLTP_ROLES['backup'][0]}@oltp-postgres:5432/{OLTP['db']}",
            "OLTP_BACKUP_PASSWORD": require("OLTP_BACKUP_PASSWORD"),
            "DAGSTER_PG_URL": f"postgresql://{DAGSTER_PG['user']}@dagster-postgres:5432/{DAGSTER_PG['db']}",
            "DAGSTER_PG_PASSWORD": require("DAGSTER_PG_PASSWORD"),
        },
        # the check reads a stamp file: cheap. Docker runs a container's first check one interval after its start,
        # and `docker compose up --wait` (the deploy) waits for it: at 5 m every deploy that recreated this
        # container waited 5 minutes (found by bringing the stack up under Docker Engine)
        "healthcheck": healthcheck(["CMD", "/usr/local/bin/backup-healthy"], interval="30s", start_period="30m"),
        "depends_on": {
            "oltp-postgres": {"condition": "service_healthy"},
            "dagster-postgres": {"condition": "service_healthy"},
            "seaweedfs": {"condition": "service_healthy"},
        },
        "logging": LOGGING,
        "networks": [NETWORK],
    }


def compose() -> dict[str, Any]:
    """vps_1's compose.yaml: every service of the edge node, its network and volumes."""
    services: dict[str, Any] = {
        "oltp-postgres": _oltp_postgres(),
        "dagster-postgres": _postgres(
            "dagster-postgres", DAGSTER_PG["user"], DAGSTER_PG["db"], "DAGSTER_PG_PASSWORD", "dagster-postgres-data"
        ),
        "seaweedfs": _seaweedfs(),
        "dagster-code-server": _code_server(),
        "dagster-webserver": _webserver(),
        "dagster-daemon": _daemon(),
        "proxy": _proxy(),
        "openvpn": _openvpn(),
        "postgres-backup": _postgres_backup(),
    }
    # The run launcher starts run containers through the host's Docker socket (root:docker, GID unknown here): the
    # daemon, on the container network only, holds it. The webserver, behind the internet-facing proxy, holds no
    # socket and runs as the image's user: terminating a run from the UI stops its container through `docker-api`,
    # a proxy that lets through only what that needs.
    services["dagster-daemon"]["volumes"].append(f"{DOCKER_SOCKET}:{DOCKER_SOCKET}")
    services["dagster-daemon"]["user"] = "root"
    services[DOCKER_API] = _docker_api()
    return {
        "name": "platform-edge",
        "services": services,
        "networks": {
            NETWORK: {"name": NETWORK, "ipam": {"config": [{"subnet": str(NETWORK_SUBNET)}]}},
            # the webserver and docker-api only; no route out, nothing else can reach the Docker API
            DOCKER_API_NETWORK: {"name": DOCKER_API_NETWORK, "internal": True},
        },
        "volumes": {
            "oltp-postgres-data": bind_volume("oltp-postgres", "data"),
            "dagster-postgres-data": bind_volume("dagster-postgres", "data"),
            "seaweedfs-data": bind_volume("seaweedfs", "data"),
            "openvpn-pki": bind_volume("edge-state", "openvpn-pki"),
            "proxy-data": bind_volume("edge-state", "proxy-data"),
            "proxy-config": bind_volume("edge-state", "proxy-config"),
        },
    }


def dagster_instance() -> dict[str, Any]:
    """dagster.yaml: PostgreSQL storage, queued runs with tag limits, runs as containers, logs in the object store."""
    s3 = service("object-store-s3")
    return {
        # dagster-postgres's storage, each keeping a connection open (resources/dagster_metadata.py says why)
        "storage": instance_storage(
            {
                "hostname": "dagster-postgres",
                "port": 5432,
                "username": {"env": "DAGSTER_PG_USER"},
                "password": {"env": "DAGSTER_PG_PASSWORD"},
                "db_name": {"env": "DAGSTER_PG_DB"},
                # SQLAlchemy 2.1 maps postgresql:// to psycopg 3; dagster-postgres ships psycopg2
                "scheme": "postgresql+psycopg2",
            }
        ),
        "run_coordinator": {
            "module": "dagster.core.run_coordinator",
            "class": "QueuedRunCoordinator",
            "config": {
                "max_concurrent_runs": 4,
                "dequeue_interval_seconds": 1,  # a sensor's run starts within a second, not five (the default)
                # a backfill cannot take every slot; runs of one Spark Connect server are capped
                "tag_concurrency_limits": [
                    {"key": "dagster/backfill", "limit": 2},
                    {"key": "platform/node", "value": "vps_2", "limit": 2},
                ],
            },
        },
        "run_launcher": {
            "module": "dagster_docker",
            "class": "DockerRunLauncher",
            "config": {
                "network": NETWORK,
                "env_vars": [
                    "PLATFORM_ENV",
                    "DAGSTER_PG_USER",
                    "DAGSTER_PG_DB",
                    "DAGSTER_PG_PASSWORD",
                    "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",
                    *COMPUTE_LOG_CREDENTIALS,
                    *RESOURCE_SECRETS,
                ],
                "container_kwargs": {
                    "volumes": [f"{SPARK_CA_ON_HOST}:{SPARK_CA_IN_CONTAINER}:ro"],
                    # a finished run's container goes (its logs are in the object store): run monitoring reports a
                    # run whose container vanished before it finished as failed, as it does a dead one
                    "auto_remove": True,
                    "stop_timeout": 60,  # seconds a terminated run gets to stop its steps before SIGKILL
                },
            },
        },
        "scheduler": {"module": "dagster.core.scheduler", "class": "DagsterDaemonScheduler"},
        # a run container that dies or never starts (image missing, OOM at import) is marked failed, which the failure
        # sensor reports and run_retries relaunches; a terminated run that does not stop is marked canceled
        "run_monitoring": {
            "enabled": True,
            "start_timeout_seconds": 300,  # a fresh container imports pyspark, chDB and the definitions
            "cancel_timeout_seconds": 180,
            "max_resume_run_attempts": 0,
            "poll_interval_seconds": 60,
        },
        # a run whose container died (marked failed by run monitoring) is launched again for its unfinished steps;
        # each step replaces its partition whole, so the retry gives the result an uninterrupted run would have.
        # Not a run whose step failed: the step's own policy already retried what a retry can fix, and bad input
        # (`permanent`) must not run again.
        "run_retries": {"enabled": True, "max_retries": 2, "retry_on_asset_or_op_failure": False},
        "compute_logs": {
            "module": "dagster_aws.s3.compute_log_manager",
            "class": "S3ComputeLogManager",
            "config": {
                "bucket": LAKE_BUCKET,
                "prefix": COMPUTE_LOGS_PREFIX,
                "endpoint_url": f"http://{s3.endpoint}",
                "region": S3_REGION,
            },
        },
        "telemetry": {"enabled": False},
        "nux": {"enabled": False},
    }


def workspace() -> dict[str, Any]:
    code = service("dagster-code-server")
    return {
        "load_from": [
            {"grpc_server": {"host": "dagster-code-server", "port": code.port, "location_name": CODE_LOCATION}}
        ]
    }


def openvpn_server_conf() -> str:
    """Split tunnel: clients get a route to the VPC only, never a default route."""
    vpn = service("vpn")
    return "\n".join(
        [
            "# Generated by `python -m deploy.render` from resources/topology.py — do not edit by hand.",
            f"port {vpn.port}",
            f"proto {vpn.protocol}",
            "dev tun",
            "topology subnet",
            f"server {VPN_SUBNET.network_address} {VPN_SUBNET.netmask}",
            f'push "route {PRIVATE_NETWORK.network_address} {PRIVATE_NETWORK.netmask}"',
            "ca /etc/openvpn/pki/ca.crt",
            "cert /etc/openvpn/pki/issued/server.crt",
            "key /etc/openvpn/pki/private/server.key",
            "dh none",
            "tls-crypt /etc/openvpn/pki/tls-crypt.key",
            "crl-verify /etc/openvpn/crl.pem",
            "tls-version-min 1.2",
            "data-ciphers AES-256-GCM:CHACHA20-POLY1305",
            "keepalive 10 60",
            "user nobody",
            "group nogroup",
            "persist-key",
            "persist-tun",
            "verb 3",
            "",
        ]
    )
