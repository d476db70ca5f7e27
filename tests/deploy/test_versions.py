"""Pins agree with each other: images in Dockerfiles, Spark/Hadoop with the pyspark the lock installs."""

from __future__ import annotations

import re
from pathlib import Path

import pyspark
import pytest
import yaml

from deploy import versions
from resources.k8s_batch import BATCH_IMAGE
from tests.deploy._helpers import DEPLOY, REPO

DOCKERFILES = sorted(p for p in DEPLOY.rglob("Dockerfile") if "local" not in p.parts)


def _locked(name: str) -> str:
    m = re.search(rf"^{re.escape(name)}==([^\s\\]+)", (REPO / "requirements.lock").read_text(), re.M)
    assert m, name
    return m.group(1)


def _arg(dockerfile: Path, name: str) -> str:
    m = re.search(rf"^ARG {name}=(\S+)$", dockerfile.read_text(), re.M)
    assert m, (dockerfile, name)
    return m.group(1)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_base_image_is_pinned_to_a_versions_entry(dockerfile):
    pinned = {v for k, v in vars(versions).items() if k.isupper() and isinstance(v, str) and ":" in v}
    for line in re.findall(r"^FROM (\S+)", dockerfile.read_text(), re.M):
        if line == "${DAGSTER_IMAGE}":  # this commit's Dagster image, which Ansible builds first
            assert _built_from(dockerfile)["args"]["DAGSTER_IMAGE"] == "{{ dagster_image }}"
            continue
        image = re.sub(r"\$\{(\w+)\}", lambda m: _arg(dockerfile, m.group(1)), line)
        assert image in pinned or image == f"apache/spark:{versions.SPARK}-python3", image


def _built_from(dockerfile: Path) -> dict:
    images = yaml.safe_load((DEPLOY / "ansible" / "images.yml").read_text())["images"]
    rel = str(dockerfile.relative_to(REPO))
    return next(i for i in images if i["dockerfile"].endswith(rel))


def test_the_batch_image_carries_the_locked_spark():
    assert BATCH_IMAGE.rsplit(":", 1)[1] == _locked("pyspark") == versions.SPARK
    built = [i["tag"] for i in yaml.safe_load((DEPLOY / "ansible" / "images.yml").read_text())["images"]]
    assert built.index(BATCH_IMAGE) > built.index("{{ dagster_image }}")  # built from it


def test_spark_matches_the_locked_pyspark_and_its_hadoop():
    assert _locked("pyspark") == versions.SPARK
    jars = Path(pyspark.__file__).parent / "jars"
    shipped = {
        m.group(1)
        for p in jars.glob("hadoop-client-api-*.jar")
        if (m := re.match(r"hadoop-client-api-(.+)\.jar", p.name))
    }
    assert shipped == {versions.SPARK_HADOOP}  # hadoop-aws must be exactly this version
    spark = DEPLOY / "vps_2" / "spark" / "Dockerfile"
    assert (_arg(spark, "SPARK_VERSION"), _arg(spark, "HADOOP_VERSION")) == (versions.SPARK, versions.SPARK_HADOOP)
    assert "org.apache.hadoop:hadoop-aws:${HADOOP_VERSION}" in spark.read_text()


def test_jupyter_client_matches_the_lock():
    jupyter = DEPLOY / "vps_2" / "jupyter" / "Dockerfile"
    assert _arg(jupyter, "PYSPARK_VERSION") == _locked("pyspark")
    assert _arg(jupyter, "PANDAS_VERSION") == _locked("pandas")
    assert _arg(jupyter, "PYARROW_VERSION") == _locked("pyarrow")
    assert _arg(jupyter, "CLICKHOUSE_CONNECT_VERSION") == _locked("clickhouse-connect")  # the notebooks' warehouse
    assert _arg(jupyter, "JUPYTERLAB_VERSION") == versions.JUPYTERLAB


def test_k8s_schema_version_follows_k3s():
    assert versions.k8s_minor() == ".".join(versions.K3S.lstrip("v").split(".")[:2])
