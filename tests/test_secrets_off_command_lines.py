"""No credential is on a command line: every local user reads those (``ps``, ``/proc/<pid>/cmdline``), and Spark's
daemon copies its launch command into its log. Checked on the real processes of the test stack, and on the JVM of a
local Spark session (notebooks, one-off scripts and the batch pods on vps_2 run one)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from resources.settings import data_dir, s3a_jars_dir
from resources.spark import SparkResource

SECRETS = ("SPARK_CONNECT_TOKEN", "S3_SECRET_ACCESS_KEY", "OLTP_PASSWORD")


def _children() -> dict[int, list[int]]:
    """Every process's children, from ``/proc/<pid>/stat`` (its 4th field is the parent)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # exited while we looked
        children.setdefault(parent, []).append(int(stat.parent.name))
    return children


def _tree(roots: list[int]) -> list[int]:
    children, found, todo = _children(), [], list(roots)
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def _command_lines(pids: list[int]) -> dict[int, str]:
    lines = {}
    for pid in pids:
        try:
            lines[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
    return lines


def _leaks(texts: dict[object, str]) -> list[str]:
    """Where a secret of the suite's environment appears (by the secret's name, never its value)."""
    return [f"{name} in {where}" for where, text in texts.items() for name in SECRETS if os.environ[name] in text]


def _stack_roots() -> dict[str, int]:
    """The processes the stack started, from the pid files it and the services wrote."""
    root = data_dir()
    files = {
        "postgres": root / "postgres" / "data" / "postmaster.pid",
        "seaweedfs": root / "seaweedfs" / "weed.pid",
        **{f"spark-connect ({p.name})": p for p in (root / "spark-connect" / "pids").glob("*.pid")},
    }
    return {name: int(path.read_text().split()[0]) for name, path in files.items() if path.exists()}


def test_no_secret_on_the_command_line_of_the_stack_or_in_spark_s_launch_log(stack):
    roots = _stack_roots()
    assert {"postgres", "seaweedfs"} < set(roots) and any(n.startswith("spark-connect") for n in roots), roots
    lines = _command_lines(_tree(list(roots.values())))
    assert any("SparkConnectServer" in line for line in lines.values()), "the Spark Connect JVM was not found"
    assert any("weed" in line for line in lines.values()) and any("postgres" in line for line in lines.values())
    leaks = _leaks({f"the command line of pid {pid}": line for pid, line in lines.items()})
    assert not leaks  # the secrets' names only: a failure must not print the command lines
    logs = {p: p.read_text(errors="replace") for p in (data_dir() / "spark-connect" / "logs").iterdir() if p.is_file()}
    assert any("Spark Command:" in text for text in logs.values()), "Spark's launch log has moved"
    leaks = _leaks(logs)
    assert not leaks


def test_a_local_spark_session_reads_the_lake_with_no_credential_on_its_jvm_s_command_line(object_store, resources):
    local = SparkResource(object_store=resources["object_store"], master="local[2]", s3a_jars_dir=str(s3a_jars_dir()),
                          local_dir=str(data_dir() / "spark-local"))  # fmt: skip
    prefix = f"tmp/secrets-off/{uuid.uuid4().hex}"
    with local.process_config_and_initialize_cm() as spark:
        spark.session.range(7).write.parquet(object_store.s3a_uri(prefix))
        assert spark.session.read.parquet(object_store.s3a_uri(prefix)).count() == 7  # the credentials work
    object_store.delete_keys([key for key, _ in object_store.list_keys(prefix)])
    lines = _command_lines(_tree([os.getpid()]))
    assert any("org.apache.spark.deploy.SparkSubmit" in line for line in lines.values()), "no local JVM was found"
    leaks = _leaks({f"the command line of pid {pid}": line for pid, line in lines.items()})
    assert not leaks
