"""vps_2's Spark Connect pod as containers: the Deployment in ``deploy/vps_2/manifests/spark-connect.yaml`` run by a
Docker Engine in vps_2's namespace, since no Kubernetes runs here.

A pod is containers sharing one network namespace that outlives them: a ``pause`` container holds it and publishes
the Service's port on the node's private address (the Service's ``externalIPs``); the ``spark-connect`` container
(image, command, environment, user, capabilities, mounts as the Deployment gives them) and the ``tls-proxy``
sidecar (its uid and gid, capabilities, a tmpfs for its emptyDir) join it. Killing Spark leaves the sidecar
answering ``UNAVAILABLE``, as on k3s, until ``start_spark``.

Replaced, and only this (``deploy/README.md``): the Spark Connect image is built from
``deploy/sim/standins/spark-connect`` (its own Dockerfile's Ivy step needs Maven Central); the sidecar's nginx is
Debian's 1.22, so the ConfigMap's ``http2 on;`` is folded into its ``listen`` line; Spark is not restarted by a
kubelet (restart policy ``no``: a test decides when it comes back).

    pod = start(engine, folder, token)   # engine: vps_2's, not started yet
    pod.url, pod.ca                      # what Dagster's SPARK_REMOTE and CA mount hold
    pod.stop_spark(signal.SIGKILL); pod.start_spark()
    pod.access_log()                     # the file of the sidecar's access log (its stdout)
    pod.stop()                           # containers, network, engine
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

from deploy.sim import compute
from deploy.sim.compute import container_spec, deployment
from deploy.sim.docker_engine import DockerEngine, EngineError
from deploy.sim.netns import wait_for
from resources.topology import NODES, service

NETWORK = "spark-connect-pod"
PAUSE, SPARK, SIDECAR = "spark-connect-pause", "spark-connect", "spark-connect-tls-proxy"
TOKEN_ENV = "SPARK_CONNECT_AUTHENTICATE_TOKEN"  # the Deployment takes it from the spark-connect secret


def _env_args(spec: dict, secrets: dict[tuple[str, str], str]) -> tuple[list[str], dict[str, str]]:
    """``-e`` arguments for a container's env; a value from a Secret (``secrets[(name, key)]``) is passed as
    ``-e NAME`` with the value in the client's environment, off every command line."""
    args, values = [], {}
    for var in spec["env"]:
        if "value" in var:
            args += ["-e", f"{var['name']}={var['value']}"]
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            args += ["-e", var["name"]]
            values[var["name"]] = secrets[(ref["name"], ref["key"])]
    return args, values


def _security_args(spec: dict) -> list[str]:
    """The container's uid (and gid, if it sets one), no new privileges, dropped capabilities; Docker's default
    seccomp profile is the pod's ``RuntimeDefault``."""
    security = spec["securityContext"]
    group = f":{security['runAsGroup']}" if "runAsGroup" in security else ""
    args = ["--user", f"{security['runAsUser']}{group}"]
    if security.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    return args + [f"--cap-drop={cap}" for cap in security["capabilities"]["drop"]]


_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


def _scratch_args(deployment_name: str, spec: dict) -> list[str]:
    """The container's emptyDir mounts as tmpfs of their ``sizeLimit``: empty at start, writable by any uid (mode
    1777, as the kubelet makes an emptyDir world-writable), gone with the container."""
    volumes = {v["name"]: v["emptyDir"] for v in deployment(deployment_name)["spec"]["template"]["spec"]["volumes"]
               if "emptyDir" in v}  # fmt: skip
    args = []
    for mount in spec["volumeMounts"]:
        if mount["name"] in volumes:
            limit = volumes[mount["name"]].get("sizeLimit")
            size = f",size={int(limit[:-2]) * _BINARY[limit[-2:]]}" if limit else ""
            args += ["--tmpfs", f"{mount['mountPath']}:rw,mode=1777{size}"]
    return args


def _spark_spec() -> dict:
    return container_spec("spark-connect", "spark-connect")


@dataclass
class ContainerPod(compute.Reachable):
    engine: DockerEngine
    folder: Path
    address: str
    port: int
    token: str
    ca: Path

    def _probe(self) -> bool:
        """The Deployment's startup and liveness probe, run in the container as the kubelet runs it."""
        probe = _spark_spec()["startupProbe"]["exec"]["command"]
        return self.engine.docker("exec", SPARK, *probe, check=False, timeout=30).returncode == 0

    def start_spark(self, timeout: float = compute.SPARK_START_TIMEOUT) -> None:
        """Start (or restart) the Spark container and wait for its probe; the sidecar is left alone."""
        self.engine.docker("start", SPARK)

        def up() -> bool:
            state = self.engine.inspect("container", SPARK)["State"]
            if not state["Running"]:
                logs = self.engine.docker("logs", "--tail", "40", SPARK, check=False)
                raise EngineError(f"Spark Connect exited with {state['ExitCode']}:\n{logs.stdout}{logs.stderr}")
            return self._probe()

        wait_for(up, timeout, "Spark Connect's startup probe", interval=1)

    def stop_spark(self, sig: int = signal.SIGTERM) -> None:
        """SIGKILL: a crashed Spark (``docker kill``); otherwise a stop with the pod's grace period."""
        if sig == signal.SIGKILL:
            self.engine.docker("kill", SPARK, check=False)
        else:
            self.engine.docker("stop", "-t", "30", SPARK, timeout=90)

    def access_log(self) -> Path:
        """The sidecar's access log (its stdout, as the official image links it) in the engine's log file: grows
        with each call to Spark, readable without a docker command."""
        return Path(self.engine.inspect("container", SIDECAR)["LogPath"])

    def stop(self) -> None:
        self.engine.stop()


def _spark_args(folder: Path, token: str) -> tuple[list[str], dict[str, str]]:
    """``docker create`` arguments for the Deployment's spark-connect container, and the secrets' values."""
    spec = _spark_spec()
    env, values = _env_args(spec, {("spark-connect", "token"): token})
    if TOKEN_ENV not in values:
        raise RuntimeError(f"the Deployment no longer takes {TOKEN_ENV} from its secret")
    mounts = {m["name"]: m["mountPath"] for m in spec["volumeMounts"]}  # conf's subPath: the one file
    args = ["--name", SPARK, "--network", f"container:{PAUSE}", *_security_args(spec), "--restart", "no", *env,
            "-v", f"{folder / 'conf' / 'spark-defaults.conf'}:{mounts['conf']}:ro",
            "-v", f"{folder / 'spark-local'}:{mounts['spark-local']}"]  # fmt: skip
    return [*args, "--entrypoint", spec["command"][0], spec["image"], *spec["command"][1:]], values


def start(engine: DockerEngine, folder: Path, token: str, timeout: float = compute.SPARK_START_TIMEOUT) -> ContainerPod:
    """Start vps_2's engine and the pod on it; returns once Spark's probe passes and the sidecar listens. On failure
    the engine is stopped (nothing left)."""
    from deploy.sim.topology import admit_container_bridges

    if engine.namespace is None:
        raise ValueError("the pod runs in vps_2's namespace")
    address, port = NODES["vps_2"].private_ip, service("spark-connect").port
    data = compute.config_map()
    for sub in ("conf", "spark-local", "nginx"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    (folder / "conf" / "spark-defaults.conf").write_text(data["spark-defaults.conf"])  # unchanged
    (folder / "nginx" / "nginx.conf").write_text(compute.fold_http2(data["nginx.conf"]))
    uid = _spark_spec()["securityContext"]["runAsUser"]  # the image's `spark`
    os.chown(folder / "spark-local", uid, uid)
    ca = compute.issue_certificate(folder / "tls", address)
    for path in (folder / "tls").iterdir():  # root's, readable by the sidecar's uid: the Secret's defaultMode 0644
        path.chmod(0o644)
    admit_container_bridges(engine.namespace)
    engine.start()
    pod = ContainerPod(engine, folder, address, port, token, ca)
    try:
        spark = _spark_spec()
        engine.docker("network", "create", NETWORK)
        engine.docker("run", "-d", "--name", PAUSE, "--network", NETWORK, "-p", f"{address}:{port}:{port}",
                      "--entrypoint", "sleep", spark["image"], "infinity")  # fmt: skip
        args, secrets = _spark_args(folder, token)
        engine.docker("create", *args, extra_env=secrets)
        sidecar = container_spec("spark-connect", "tls-proxy")
        engine.docker("run", "-d", "--name", SIDECAR, "--network", f"container:{PAUSE}", "--restart", "no",
                      *_security_args(sidecar), *_scratch_args("spark-connect", sidecar),
                      "-v", f"{folder / 'nginx' / 'nginx.conf'}:/etc/nginx/nginx.conf:ro",
                      "-v", f"{folder / 'tls'}:/tls:ro", sidecar["image"])  # fmt: skip
        pod.start_spark(timeout)
        wait_for(lambda: _listening(engine, port), 30, "the TLS sidecar listening")
    except BaseException:
        engine.stop()
        raise
    return pod


def _listening(engine: DockerEngine, port: int) -> bool:
    pid = engine.inspect("container", SIDECAR)["State"]["Pid"]
    return bool(pid) and compute.listening(pid, "0.0.0.0", port)


JUPYTER = "jupyter"


def jupyter_secrets(node_env: dict[str, str]) -> dict[tuple[str, str], str]:
    """The Secrets the Jupyter Deployment reads, ``(secret, key) -> value``, made from vps_2's ``.env`` as Ansible
    makes them (site.yml: ``spark-connect`` and ``jupyter``, keys as ``compute_manifests`` declares them)."""
    from deploy.compute_manifests import JUPYTER_SECRET, JUPYTER_SECRET_KEYS, SPARK_SECRET

    secrets = {(SPARK_SECRET, "token"): node_env["SPARK_CONNECT_TOKEN"]}
    return secrets | {(JUPYTER_SECRET, key): node_env[var] for key, var in JUPYTER_SECRET_KEYS.items()}


def start_jupyter(pod: ContainerPod, node_env: dict[str, str], timeout: float = 120) -> str:
    """The Jupyter Deployment beside the pod, as its manifest declares it (image and args, environment with its
    Secrets' values from vps_2's ``.env``, user 1000 with ``fsGroup``, capabilities, the work volume, the CA from
    ``spark-connect-tls``), its Service's port published on vps_2's private address; the Spark Connect Service's
    cluster name resolves to the Spark pod (what cluster DNS does). Returns once the readiness probe (``GET /api``)
    passes, from the node."""
    from deploy.compute_manifests import SPARK_DNS

    spec = container_spec("jupyter", "jupyter")
    env, values = _env_args(spec, jupyter_secrets(node_env))
    mounts = {m["name"]: m["mountPath"] for m in spec["volumeMounts"]}
    pod_spec = deployment("jupyter")["spec"]["template"]["spec"]
    work = pod.folder / "jupyter-work"
    work.mkdir(parents=True, exist_ok=True)
    group = pod_spec["securityContext"]["fsGroup"]
    os.chown(work, 0, group)
    work.chmod(0o2775)  # what fsGroup makes of a volume: group-owned, group-writable, setgid
    port = spec["ports"][0]["containerPort"]
    spark_ip = pod.engine.inspect("container", PAUSE)["NetworkSettings"]["Networks"][NETWORK]["IPAddress"]
    pod.engine.docker(
        "run", "-d", "--name", JUPYTER, "--network", NETWORK, "-p", f"{pod.address}:{port}:{port}",
        *_security_args(spec), "--group-add", str(group), "--restart", "no", *env,
        "--add-host", f"{SPARK_DNS}:{spark_ip}",
        "-v", f"{work}:{mounts['work']}", "-v", f"{pod.ca}:{mounts['tls']}/tls.crt:ro",
        spec["image"], *spec["args"], extra_env=values,
    )  # fmt: skip
    probe = spec["readinessProbe"]["httpGet"]
    url = f"http://{pod.address}:{probe['port']}{probe['path']}"
    check = ["python3", "-c", "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)", url]

    def ready() -> bool:
        if not pod.engine.inspect("container", JUPYTER)["State"]["Running"]:
            logs = pod.engine.docker("logs", "--tail", "40", JUPYTER, check=False)
            raise EngineError(f"Jupyter exited:\n{logs.stdout}{logs.stderr}")
        return pod.engine.namespace.run(*check, check=False, timeout=30).returncode == 0

    wait_for(ready, timeout, "Jupyter's readiness probe", interval=1)
    return JUPYTER
