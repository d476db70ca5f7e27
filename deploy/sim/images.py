"""The images of the simulated topology, built by a real Docker Engine: stand-ins for the upstream images that no
registry can give here, then the project's own images from their Dockerfiles, unchanged.

Stand-ins (``deploy/sim/standins``, one folder per upstream image, each labelled as such) carry the upstream tag the
project's Dockerfiles and compose files name, so those files build and run as in production. The Debian base is
``debootstrap --variant=minbase bookworm`` from the mirror this machine's apt uses; it also carries this machine's
apt settings and CA bundle, so that builds reach the package registries the way this machine does. Those settings
are read from the machine at build time and never written to the repository.

``python -m deploy.sim.images [vps_1 …]`` (``make images``) builds what is missing; layers stay cached in each
node's data root under ``.data/docker``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from deploy import versions
from deploy.sim.docker_engine import DockerEngine
from resources.settings import REPO_ROOT

STANDINS = Path(__file__).resolve().parent / "standins"
SUITE = "bookworm"


def docker_root() -> Path:
    """The engines' data roots and the Debian base's tarball: kept between runs (the layer cache), outside the
    test stack's folder, which every test session wipes."""
    return Path(os.environ.get("PLATFORM_DOCKER_ROOT") or REPO_ROOT / ".data" / "docker")


@dataclass(frozen=True)
class Image:
    tag: str
    dockerfile: Path
    context: Path
    build_args: dict[str, str] = field(default_factory=dict)


def dagster_image_tag() -> str:
    """The tag Ansible gives the Dagster image: the commit it was built from (``sim`` outside a git checkout)."""
    out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True)
    return f"platform/dagster:{out.stdout.strip() or 'sim'}"


def standins() -> list[Image]:
    """Upstream images rebuilt here under their own tags (the Debian base is imported, not built)."""

    def standin(tag: str, folder: str) -> Image:
        return Image(tag, STANDINS / folder / "Dockerfile", STANDINS / folder)

    return [standin(versions.PYTHON_SLIM, "python"), standin(versions.POSTGRES, "postgres"),
            standin(versions.SEAWEEDFS, "seaweedfs"), standin(versions.CADDY, "caddy"),
            standin(versions.NGINX, "nginx")]  # fmt: skip


def _rendered(dagster_tag: str) -> tuple[list[Image], dict[str, list[str]]]:
    """``ansible/images.yml`` for this working tree: every image Ansible builds, and the deployments of each image
    k3s imports."""
    from deploy.render import images as rendered

    spec = rendered()

    def here(value: str) -> str:
        return value.replace("{{ src_dir }}", str(REPO_ROOT)).replace("{{ dagster_image }}", dagster_tag)

    built = [
        Image(here(e["tag"]), Path(here(e["dockerfile"])), Path(here(e["context"])),
              {k: here(v) for k, v in e.get("args", {}).items()})
        for e in spec["images"]
    ]  # fmt: skip
    return built, {e["tag"]: e["deployments"] for e in spec["k3s_images"]}


def project_images(dagster_tag: str) -> list[Image]:
    """The images Ansible builds on vps_1 (``deploy/ansible/images.yml``, same order and arguments), from this
    working tree, but for those a vps_2 Deployment runs: vps_2's engine builds those (in place of k3s importing
    them). The Spark-batch image is built here as Ansible builds it (from the Dagster image) and not run: its pods
    need k3s."""
    built, k3s = _rendered(dagster_tag)
    return [img for img in built if not k3s.get(img.tag)]


def compute_images() -> list[Image]:
    """vps_2's Deployments: stand-ins for Spark's and nginx's upstream images; the Spark Connect image under the
    tag k3s runs, built from its simulation replacement (its own Dockerfile's Ivy step needs Maven Central,
    unreachable here: ``deploy/sim/standins/spark-connect``); Jupyter's from its Dockerfile, unchanged."""
    built, k3s = _rendered("unused")
    (spark_connect,) = [tag for tag, deployments in k3s.items() if "spark-connect" in deployments]
    (jupyter,) = [img for img in built if "jupyter" in k3s.get(img.tag, [])]
    spark = f"apache/spark:{versions.SPARK}-python3"
    return [
        Image(versions.PYTHON_SLIM, STANDINS / "python" / "Dockerfile", STANDINS / "python"),
        Image(spark, STANDINS / "spark" / "Dockerfile", STANDINS / "spark", {"SPARK_VERSION": versions.SPARK}),
        Image(versions.NGINX, STANDINS / "nginx" / "Dockerfile", STANDINS / "nginx"),
        Image(spark_connect, STANDINS / "spark-connect" / "Dockerfile", REPO_ROOT, {"SPARK_VERSION": versions.SPARK}),
        jupyter,
    ]


def images(node: str, dagster_tag: str) -> list[Image]:
    """What ``node``'s engine needs, in build order (the stand-ins before the images built on them)."""
    if node == "vps_1":
        return [*standins(), *project_images(dagster_tag)]
    if node == "vps_2":
        return compute_images()
    raise ValueError(f"no images for {node}")


def _apt_settings(rootfs: Path) -> None:
    """This machine's apt sources and settings, and its CA bundle, into the base (not into the repository)."""
    for folder in ("sources.list.d", "apt.conf.d"):
        shutil.copytree(Path("/etc/apt") / folder, rootfs / "etc/apt" / folder, dirs_exist_ok=True)
    if any(Path("/etc/apt/sources.list.d").glob("*.sources")) and (rootfs / "etc/apt/sources.list").exists():
        (rootfs / "etc/apt/sources.list").unlink()  # debootstrap's one-line copy of the same mirror
    bundle = Path(os.environ.get("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt"))
    if bundle.is_file():
        target = rootfs / "usr/local/share/ca-certificates/machine-bundle.crt"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(bundle, target)


def _mirror() -> str:
    """The Debian mirror this machine's apt uses (deb822 ``URIs:`` of the main suite, or a sources.list line)."""
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        lines = path.read_text().splitlines()
        uris = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("URIs:")]
        if uris and not uris[0].rstrip("/").endswith("-security"):
            return uris[0].split()[0]
    legacy = Path("/etc/apt/sources.list")
    for line in legacy.read_text().splitlines() if legacy.exists() else []:
        parts = line.split()
        if parts[:1] == ["deb"] and "security" not in parts[1]:
            return parts[1]
    raise RuntimeError("no Debian mirror found in this machine's apt sources")


def debian_rootfs(cache: Path) -> Path:
    """A tarball of ``debootstrap --variant=minbase bookworm`` with this machine's apt settings (cached)."""
    tarball = cache / f"debian-{SUITE}-minbase.tar"
    if tarball.exists():
        return tarball
    rootfs = cache / f"debian-{SUITE}-rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run(["debootstrap", "--variant=minbase", SUITE, str(rootfs), _mirror()], check=True,
                   capture_output=True, timeout=1200)  # fmt: skip
    _apt_settings(rootfs)
    shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
    partial = tarball.with_suffix(".partial")
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(partial), "."], check=True, timeout=600)
    partial.rename(tarball)
    shutil.rmtree(rootfs, ignore_errors=True)
    return tarball


def build(engine: DockerEngine, image: Image, log=print) -> None:
    """Build ``image`` with the host's network (the registries); unchanged layers come from the cache."""
    started = time.monotonic()
    args = [f"--build-arg={k}={v}" for k, v in image.build_args.items()]
    engine.docker("build", "--network", "host", "-q", "-f", str(image.dockerfile), "-t", image.tag, *args,
                  str(image.context), timeout=3600)  # fmt: skip
    log(f"[images] {image.tag}: {time.monotonic() - started:.0f} s")


def build_node(node: str, dagster_tag: str | None = None, log=print) -> list[str]:
    """Every image ``node`` runs, built by an engine in the host namespace on the node's data root."""
    wanted = images(node, dagster_tag or dagster_image_tag())
    root = docker_root()
    engine = DockerEngine(f"build-{node}", root / node)
    with engine:
        if not engine.image_exists(versions.DEBIAN_SLIM):
            tarball = debian_rootfs(root)
            with tarball.open("rb") as f:
                engine.docker("import", "-", versions.DEBIAN_SLIM, stdin=f, timeout=600)
        for img in wanted:
            build(engine, img, log)
    return [img.tag for img in wanted]


def build_nodes(nodes: list[str], dagster_tag: str | None = None, log=print) -> None:
    """``build_node`` for each node at once, one build engine per node's data root (the builds mostly wait on the
    registries); the Debian base first, which they share."""
    debian_rootfs(docker_root())
    tag = dagster_tag or dagster_image_tag()
    with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
        for done in [pool.submit(build_node, node, tag, log) for node in nodes]:
            done.result()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.sim.images", description=__doc__)
    parser.add_argument("nodes", nargs="*", default=["vps_1", "vps_2"])
    build_nodes(parser.parse_args(argv).nodes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
