"""vps_2's Spark Connect pod as containers: the Deployment in ``deploy/vps_2/manifests/spark-connect.yaml`` run by a
Docker Engine in vps_2's namespace, since no Kubernetes runs here.

A pod is containers sharing one network namespace that outlives them: a ``pause`` container holds it and publishes
the Service's port on the node's private address (the Service's ``externalIPs``); the ``spark-connect`` container
(image, command, environment, user, capabilities, mounts as the Deployment gives them) and the ``tls-proxy``
sidecar join it. Killing Spark leaves the sidecar answering ``UNAVAILABLE``, as on k3s, until ``start_spark``.

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

import yaml

from deploy.sim import compute
from deploy.sim.docker_engine import DockerEngine, EngineError
from deploy.sim.netns import wait_for
from resources.topology import NODES, service

NETWORK = "spark-connect-pod"
PAUSE, SPARK, SIDECAR = "spark-connect-pause", "spark-connect", "spark-connect-tls-proxy"
TOKEN_ENV = "SPARK_CONNECT_AUTHENTICATE_TOKEN"  # the Deployment takes it from the spark-connect secret
SPARK_UID = 185  # the Deployment's runAsUser, the image's `spark`


def deployment() -> dict:
    docs = [d for d in yaml.safe_load_all(compute.MANIFEST.read_text()) if d]
    return next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "spark-connect")


@dataclass
class ContainerPod:
    engine: DockerEngine
    folder: Path
    address: str
    port: int
    token: str
    ca: Path

    @property
    def endpoint(self) -> str:
        return f"{self.address}:{self.port}"

    @property
    def url(self) -> str:
        return f"sc://{self.endpoint}/;use_ssl=true;token={self.token}"

    def _probe(self) -> bool:
        """The Deployment's startup and liveness probe, run in the container as the kubelet runs it."""
        probe = self._spark()["startupProbe"]["exec"]["command"]
        return self.engine.docker("exec", SPARK, *probe, check=False, timeout=30).returncode == 0

    @staticmethod
    def _spark() -> dict:
        return next(c for c in deployment()["spec"]["template"]["spec"]["containers"] if c["name"] == "spark-connect")

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


def _spark_args(folder: Path, token_env: str) -> list[str]:
    """``docker create`` arguments for the Deployment's spark-connect container."""
    spec = ContainerPod._spark()
    env = []
    for var in spec["env"]:
        if "value" in var:
            env += ["-e", f"{var['name']}={var['value']}"]
        else:  # from the secret: the value stays off every command line
            env += ["-e", var["name"]]
    if f"-e {token_env}" not in " ".join(env):
        raise RuntimeError(f"the Deployment no longer takes {token_env} from its secret")
    mounts = {m["name"]: m["mountPath"] for m in spec["volumeMounts"]}  # conf's subPath: the one file
    security = spec["securityContext"]
    args = ["--name", SPARK, "--network", f"container:{PAUSE}", "--user", str(security["runAsUser"]),
            "--restart", "no", *env,
            "-v", f"{folder / 'conf' / 'spark-defaults.conf'}:{mounts['conf']}:ro",
            "-v", f"{folder / 'spark-local'}:{mounts['spark-local']}"]  # fmt: skip
    if security.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    args += [f"--cap-drop={cap}" for cap in security["capabilities"]["drop"]]
    return [*args, "--entrypoint", spec["command"][0], spec["image"], *spec["command"][1:]]


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
    os.chown(folder / "spark-local", SPARK_UID, SPARK_UID)
    ca = compute.issue_certificate(folder / "tls", address)
    admit_container_bridges(engine.namespace)
    engine.start()
    pod = ContainerPod(engine, folder, address, port, token, ca)
    try:
        spark = ContainerPod._spark()
        engine.docker("network", "create", NETWORK)
        engine.docker("run", "-d", "--name", PAUSE, "--network", NETWORK, "-p", f"{address}:{port}:{port}",
                      "--entrypoint", "sleep", spark["image"], "infinity")  # fmt: skip
        engine.docker("create", *_spark_args(folder, TOKEN_ENV), extra_env={TOKEN_ENV: token})
        sidecar = next(c for c in deployment()["spec"]["template"]["spec"]["containers"] if c["name"] == "tls-proxy")
        engine.docker("run", "-d", "--name", SIDECAR, "--network", f"container:{PAUSE}", "--restart", "no",
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
