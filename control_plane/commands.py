"""The four commands: each returns a JSON-able payload (and materialize a run id) or raises ControlPlaneError."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from control_plane import queries
from control_plane.client import ControlPlaneError, GraphQLClient

IMPLICIT_ASSET_JOB = "__ASSET_JOB"
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}
RANGE_TAGS = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")
NODE_TAG = "platform/node"


def _key(path: list[str]) -> str:
    return "/".join(path)


def _iso(seconds: float | str | None, millis: bool = False) -> str | None:
    """Timestamps as ISO 8601 UTC: stable and readable, whatever unit the API field uses."""
    if seconds in (None, ""):
        return None
    value = float(seconds) / (1000 if millis else 1)
    return datetime.fromtimestamp(value, UTC).isoformat(timespec="seconds")


# --- describe ------------------------------------------------------------------------------------------
def asset_nodes(client: GraphQLClient) -> list[dict[str, Any]]:
    return client.query(queries.ASSET_NODES)["assetNodes"]


def describe(client: GraphQLClient) -> dict[str, Any]:
    """Static topology + catalog (what should exist) joined with the live asset graph (what exists, how fresh)."""
    from platform_assets.catalog import MODELS, TABLES
    from resources.topology import NODES, SERVICES

    assets = []
    for node in asset_nodes(client):
        tags = {t["key"]: t["value"] for t in node["tags"]}
        last = node["assetMaterializations"][0] if node["assetMaterializations"] else None
        checks = node["assetChecksOrError"].get("checks", [])
        assets.append(
            {
                "key": _key(node["assetKey"]["path"]),
                "group": node["groupName"],
                "node": tags.get(NODE_TAG),
                "kinds": sorted(node["kinds"]),
                "materializable": node["isMaterializable"],
                "partitioned": node["isPartitioned"],
                "deps": sorted(_key(d["path"]) for d in node["dependencyKeys"]),
                "checks": sorted(c["name"] for c in checks),
                "last_materialization": _iso(last["timestamp"], millis=True) if last else None,
                "last_run_id": last["runId"] if last else None,
            }
        )
    return {
        "webserver": client.url,
        "topology": {
            "nodes": [asdict(n) for n in NODES.values()],
            "services": [
                {
                    "name": s.name,
                    "node": s.node,
                    "port": s.port,
                    "protocol": s.protocol,
                    "public": s.public,
                    "reach": s.reach,
                    "description": s.description,
                }
                for s in SERVICES.values()
            ],
        },
        "catalog": {
            "tables": [
                {
                    "name": t.name,
                    "primary_key": list(t.primary_key),
                    "cursor_column": t.cursor_column,
                    "shard_key": t.shard_key,
                    "columns": {c.name: c.type for c in t.all_columns},
                    "description": t.description,
                }
                for t in TABLES
            ],
            "models": [
                {
                    "name": m.name,
                    "primary_key": list(m.primary_key),
                    "depends_on": list(m.depends_on),
                    "description": m.description,
                }
                for m in MODELS
            ],
        },
        "assets": sorted(assets, key=lambda a: a["key"]),
    }


# --- materialize ---------------------------------------------------------------------------------------
def resolve_selection(nodes: list[dict[str, Any]], selection: list[str]) -> list[dict[str, Any]]:
    """``raw/region``, ``group:raw`` or ``*``, comma- or space-separated; an unknown name is an error."""
    by_key = {_key(n["assetKey"]["path"]): n for n in nodes if n["isMaterializable"]}
    chosen: dict[str, dict[str, Any]] = {}
    for token in (t.strip() for item in selection for t in item.split(",")):
        if not token:
            continue
        if token in ("*", "all"):
            chosen.update(by_key)
        elif token.startswith("group:"):
            group = token.removeprefix("group:")
            members = {k: n for k, n in by_key.items() if n["groupName"] == group}
            if not members:
                raise ControlPlaneError(f"unknown asset group {group!r}: run `platform describe` for the groups")
            chosen.update(members)
        elif token in by_key:
            chosen[token] = by_key[token]
        else:
            raise ControlPlaneError(f"unknown asset {token!r}: run `platform describe` for the asset keys")
    if not chosen:
        raise ControlPlaneError("empty selection: name at least one asset key, group:NAME or '*'")
    return list(chosen.values())


def partition_tags(nodes: list[dict[str, Any]], partition: str | None, start: str | None, end: str | None) -> dict:
    """Partitions travel as Dagster's run tags (one key, or a range run); unpartitioned assets refuse them."""
    if partition is None and start is None and end is None:
        return {}
    for node in nodes:
        if not node["isPartitioned"]:
            raise ControlPlaneError(f"asset {_key(node['assetKey']['path'])} is not partitioned")
    if partition is not None:
        return {"dagster/partition": partition}
    if start is None or end is None:
        raise ControlPlaneError("--from and --to go together")
    return dict(zip(RANGE_TAGS, (start, end), strict=True))


def add_partitions(client: GraphQLClient, nodes: list[dict[str, Any]], run_tags: dict[str, str]) -> None:
    """A day asked for that is not a partition yet becomes one (dynamic partitions exist once added), as the
    sensors add the days they find; one already there stays as it is."""
    keys = [run_tags[t] for t in ("dagster/partition", *RANGE_TAGS) if t in run_tags]
    names = {
        d["dynamicPartitionsDefinitionName"]
        for n in nodes
        for d in (n.get("partitionDefinition") or {}).get("dimensionTypes", [])
        if d.get("dynamicPartitionsDefinitionName")
    }
    for name in sorted(names):
        repo = nodes[0]["repository"]
        selector = {"repositoryLocationName": repo["location"]["name"], "repositoryName": repo["name"]}
        for key in sorted(set(keys)):
            variables = {"repositorySelector": selector, "partitionsDefName": name, "partitionKey": key}
            result = client.query(queries.ADD_DYNAMIC_PARTITION, variables)["addDynamicPartition"]
            if result["__typename"] not in ("AddDynamicPartitionSuccess", "DuplicateDynamicPartitionError"):
                raise ControlPlaneError(f"partition {key!r} of {name} could not be added: {result.get('message')}")


def launch(client: GraphQLClient, selection: list[str], tags: dict[str, str] | None = None, **partitions) -> str:
    """Launch one run of the selected assets (with their checks), or of a whole job (``job:NAME``), through the
    webserver; returns the run id."""
    all_nodes = asset_nodes(client)
    whole_job = selection[0].removeprefix("job:") if len(selection) == 1 and selection[0].startswith("job:") else None
    if whole_job:
        nodes = [n for n in all_nodes if whole_job in n["jobNames"]]
        if not nodes:
            raise ControlPlaneError(f"no job {whole_job!r} in the code location")
        partitioned = [n for n in nodes if n["isPartitioned"]]  # the job's partitions are its partitioned assets'
        run_tags = partition_tags(partitioned, **partitions)
    else:
        nodes = resolve_selection(all_nodes, selection)
        run_tags = partition_tags(nodes, **partitions)
    add_partitions(client, nodes, run_tags)
    run_tags |= {"platform/launched_by": "control_plane", **(tags or {})}
    jobs = {whole_job} if whole_job else set.intersection(*(set(n["jobNames"]) for n in nodes))
    if not jobs:
        raise ControlPlaneError("the selected assets share no job; materialize them separately")
    job = IMPLICIT_ASSET_JOB if IMPLICIT_ASSET_JOB in jobs else sorted(jobs)[0]
    repo = nodes[0]["repository"]
    selector = {
        "repositoryLocationName": repo["location"]["name"],
        "repositoryName": repo["name"],
        "pipelineName": job,
    }
    if not whole_job:
        selector["assetSelection"] = [{"path": n["assetKey"]["path"]} for n in nodes]
    params = {
        "selector": selector,
        "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in run_tags.items()]},
    }
    result = client.query(queries.LAUNCH_RUN, {"params": params})["launchRun"]
    if result["__typename"] != "LaunchRunSuccess":
        detail = result.get("message") or "; ".join(e["message"] for e in result.get("errors", []))
        raise ControlPlaneError(f"launch refused ({result['__typename']}): {detail}")
    return result["run"]["runId"]


def progress_line(event: dict[str, Any]) -> str | None:
    """One line per event an operator cares about (steps, materializations, checks, run state)."""
    kind = event["__typename"]
    when = _iso(event.get("timestamp"), millis=True)
    step = event.get("stepKey") or "-"
    if kind == "MaterializationEvent":
        return f"{when} MATERIALIZED {_key(event['assetKey']['path'])}"
    if kind == "AssetCheckEvaluationEvent":
        ev = event["evaluation"]
        verdict = "PASSED" if ev["success"] else "FAILED"
        return f"{when} CHECK {verdict} {_key(ev['assetKey']['path'])}:{ev['checkName']}"
    if kind in ("ExecutionStepStartEvent", "ExecutionStepSuccessEvent", "ExecutionStepSkippedEvent"):
        return f"{when} {event['eventType']} {step}"
    if kind == "ExecutionStepFailureEvent":
        return f"{when} STEP_FAILURE {step}: {_error(event)}"
    if kind.startswith("Run") and kind.endswith("Event"):
        return f"{when} {event['eventType']}"
    return None


def _error(event: dict[str, Any]) -> str:
    err = event.get("error") or {}
    err = (err.get("causes") or [err])[-1]  # the root cause, not Dagster's "error occurred while executing" wrapper
    cls, msg = err.get("className") or "Error", (err.get("message") or event.get("message", "")).strip()
    text = msg if cls in msg.split(":", 1)[0] else f"{cls}: {msg}"
    return " ".join(text.split())  # one line


def follow(
    client: GraphQLClient, run_id: str, emit: Callable[[str], None], poll: float = 1.0, timeout: float = 3600
) -> dict[str, Any]:
    """Stream the run's events until it ends; returns {run_id, status, failure}."""
    cursor, deadline, failure = None, time.monotonic() + timeout, None
    while True:
        data = client.query(queries.RUN_LOGS, {"runId": run_id, "cursor": cursor})
        logs = data["logsForRun"]
        if logs["__typename"] != "EventConnection":
            raise ControlPlaneError(f"run {run_id}: {logs.get('message', logs['__typename'])}")
        for event in logs["events"]:
            if event["__typename"] == "ExecutionStepFailureEvent" and failure is None:
                failure = f"step {event.get('stepKey')} failed: {_error(event)}"
            elif event["__typename"] == "RunFailureEvent" and failure is None and event.get("error"):
                failure = f"run failed: {_error(event)}"
            line = progress_line(event)
            if line:
                emit(line)
        cursor = logs["cursor"]
        status = (data["runOrError"] or {}).get("status")
        if status in TERMINAL and not logs["hasMore"]:
            if status != "SUCCESS" and failure is None:
                failure = f"run ended {status}"
            return {"run_id": run_id, "status": status, "failure": failure}
        if time.monotonic() > deadline:
            raise ControlPlaneError(f"run {run_id} still {status} after {timeout:.0f} s; follow it with `status`")
        if not logs["hasMore"]:
            time.sleep(poll)


# --- status / checks -----------------------------------------------------------------------------------
def _run(run: dict[str, Any]) -> dict[str, Any]:
    return {
        "run_id": run["runId"],
        "job": run["jobName"],
        "status": run["status"],
        "created": _iso(run["creationTime"]),
        "started": _iso(run["startTime"]),
        "ended": _iso(run["endTime"]),
        "assets": sorted(_key(a["path"]) for a in run["assetSelection"] or []),
        "tags": {t["key"]: t["value"] for t in run["tags"] if not t["key"].startswith(".dagster")},
        "steps": [
            {"step": s["stepKey"], "status": s["status"], "started": _iso(s["startTime"]), "ended": _iso(s["endTime"])}
            for s in run["stepStats"]
        ],
    }


def status(client: GraphQLClient, run_id: str | None = None, limit: int = 10) -> dict[str, Any]:
    """One run in detail, or the latest ``limit`` runs."""
    if run_id:
        result = client.query(queries.RUN, {"runId": run_id})["runOrError"]
        if result["__typename"] != "Run":
            raise ControlPlaneError(f"unknown run {run_id!r}: {result.get('message', result['__typename'])}")
        return _run(result)
    result = client.query(queries.RUNS, {"limit": limit})["runsOrError"]
    if result["__typename"] != "Runs":
        raise ControlPlaneError(f"listing runs failed: {result.get('message', result['__typename'])}")
    return {"runs": [_run(r) for r in result["results"]]}


def _metadata(entry: dict[str, Any]) -> Any:
    for field in ("intValue", "floatValue", "text", "boolValue"):
        if field in entry:
            return entry[field]
    return None


def checks(client: GraphQLClient, asset: str) -> dict[str, Any]:
    """The asset's checks with the result of their latest execution (``NOT_EXECUTED`` if none yet)."""
    node = client.query(queries.ASSET_CHECKS, {"key": {"path": asset.split("/")}})["assetNodeOrError"]
    if node["__typename"] != "AssetNode":
        raise ControlPlaneError(f"unknown asset {asset!r}: run `platform describe` for the asset keys")
    result = node["assetChecksOrError"]
    if result["__typename"] != "AssetChecks":
        raise ControlPlaneError(f"checks of {asset} unavailable: {result.get('message', result['__typename'])}")
    out = []
    for check in result["checks"]:
        ex = check["executionForLatestMaterialization"]
        ev = (ex or {}).get("evaluation") or {}
        out.append(
            {
                "check": check["name"],
                "status": ex["status"] if ex else "NOT_EXECUTED",
                "passed": ev.get("success"),
                "severity": ev.get("severity"),
                "description": ev.get("description") or check["description"],
                "run_id": ex["runId"] if ex else None,
                "evaluated": _iso(ex["timestamp"]) if ex else None,
                "metadata": {m["label"]: _metadata(m) for m in ev.get("metadataEntries", [])},
            }
        )
    return {"asset": asset, "checks": sorted(out, key=lambda c: c["check"])}
