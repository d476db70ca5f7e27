"""Turn the measurements into the printed table, the Dagster-overhead account, the targets and the JSON."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks.measure import Measured

GB = 1024**3
STAGES = (  # stage, our Dagster layer
    ("extract", "raw"),
    ("transform", "curated"),
    ("load", "warehouse"),
    ("marts", "marts"),
)
TARGET_VS_LIMIT = 1.5
TARGET_VS_NAIVE = 5.0
TARGET_EXTRACT_MEMORY = 1.5
NOT_MEASURED = "not measured (--skip-incremental)"


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def _f(x: float | None, fmt: str = "{:.1f}") -> str:
    return "n/a" if x is None else fmt.format(x)


def stage_rows(ours: dict[str, Measured], refs: dict[str, dict[str, Measured | None]]) -> list[dict[str, Any]]:
    rows = []
    for stage, layer in STAGES:
        m = ours[layer]
        naive, limit = refs[stage].get("naive"), refs[stage].get("limit")
        assets = m.result["assets"].values()
        ours_s = m.result["engine_s"]
        n_rows, n_bytes = sum(a["rows"] for a in assets), sum(a["bytes"] for a in assets)
        rows.append(
            {
                "stage": stage,
                "rows": n_rows,
                "bytes": n_bytes,
                "ours_s": ours_s,
                "ours_job_wall_s": m.wall_s,
                "naive_s": naive.result["seconds"] if naive else None,
                "limit_s": limit.result["seconds"] if limit else None,
                "rows_per_s": n_rows / ours_s if ours_s else None,
                "mb_per_s": n_bytes / 1e6 / ours_s if ours_s else None,
                "peak_rss_gb": m.peak_rss_bytes / GB,
                "measured_alone": not m.result.get("from_e2e", False),
                "naive_peak_rss_gb": naive.peak_rss_bytes / GB if naive else None,
                "limit_peak_rss_gb": limit.peak_rss_bytes / GB if limit else None,
            }
        )
    for r in rows:
        r["ours_over_limit"] = _ratio(r["ours_s"], r["limit_s"])
        r["naive_over_ours"] = _ratio(r["naive_s"], r["ours_s"])
    return rows


def end_to_end(e2e: Measured, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Dagster overhead = job wall - engine work (Σ asset ``seconds``) - asset checks (their own steps, and the
    checks an asset's step runs itself)."""
    r = e2e.result
    in_step = r["in_step_checks_s"]
    wall, engine, checks = e2e.wall_s, r["engine_s"], r["check_steps_s"] + in_step
    overhead = wall - engine - checks
    by_layer: dict[str, float] = {}
    for key, a in r["assets"].items():
        by_layer[key.split("/")[0]] = by_layer.get(key.split("/")[0], 0.0) + a["seconds"]
    top = sorted(r["assets"].items(), key=lambda kv: -kv[1]["seconds"])[:5]
    naive = [x["naive_s"] for x in rows]
    return {
        "wall_s": wall,
        "oltp_rows": rows[0]["rows"],
        "limit_s": sum(x["limit_s"] or 0 for x in rows),
        "naive_s": None if None in naive[:3] else sum(naive[:3]) + (rows[3]["limit_s"] or 0),
        "peak_rss_gb": e2e.peak_rss_bytes / GB,
        "engine_s": engine,
        "check_steps_s": checks,
        "in_step_checks_s": in_step,
        "dagster_overhead_s": overhead,
        "dagster_overhead_share": overhead / wall,
        "overhead_breakdown_s": {
            "process start, imports, definitions": wall - r["execute_in_process_s"],
            "run launch and between steps": r["execute_in_process_s"] - r["asset_steps_s"] - r["check_steps_s"],
            "inside asset steps, outside the engine call and its checks": r["asset_steps_s"] - engine - in_step,
        },
        "engine_s_by_layer": by_layer,
        "slowest_assets": [(k, round(a["seconds"], 2)) for k, a in top],
        "checks": f"{r['checks_passed']}/{r['checks_total']} passed",
    }


def _by_layer(assets: dict[str, dict[str, Any]], field: str = "seconds") -> dict[str, float]:
    out: dict[str, float] = {}
    for key, a in assets.items():
        layer = key.split("/")[0]
        out[layer] = out.get(layer, 0) + a[field]
    return out


def incremental(inc: Measured, e2e: Measured) -> dict[str, Any]:
    """One simulated day applied through the sensor, the incremental run and the automation, vs the full load.

    Both sides are timed without process start and imports: the day from the sensor tick to the end of the
    automation, the full load as the ``full_lineage`` run itself (``execute_in_process``)."""
    r = inc.result
    full_s = e2e.result["execute_in_process_s"]
    full_rows = sum(a["rows"] for k, a in e2e.result["assets"].items() if k.startswith("raw/"))
    tables, models = r["tables"], r["models"]

    def part(summary: dict, wall_s: float) -> dict:
        return {
            "wall_s": wall_s,
            "engine_s_by_layer": _by_layer(summary["assets"]),
            "rows_by_layer": _by_layer(summary["assets"], "rows"),
            "check_steps_s": summary["check_steps_s"] + summary["in_step_checks_s"],
            "assets": len(summary["assets"]),
            "runs": len(summary["run_ids"]),
        }

    parts = {
        "partitioned_tables": {
            **part(tables, r["sensor_s"] + r["tables_run_s"]),
            "sensor_s": r["sensor_s"],
            "run_s": r["tables_run_s"],
        },
        "models_and_marts": part(models, r["automation_s"]),
    }
    for part in parts.values():
        part["share_of_day"] = part["wall_s"] / r["wall_s"] if r["wall_s"] else None
    checks_total = tables["checks_total"] + models["checks_total"]
    return {
        "day": r["day"],
        "change_rate": r["change_rate"],
        "rows_changed": r["rows_changed"],
        "changed_by_table": r["changed"],
        "full_load_rows": full_rows,
        "changed_share": r["rows_changed"] / full_rows if full_rows else None,
        "wall_s": r["wall_s"],
        "full_load_s": full_s,
        "ratio_vs_full_load": r["wall_s"] / full_s if full_s else None,
        "process_wall_s": inc.wall_s,
        "simulate_s": r.get("simulate_s"),
        "full_load_process_wall_s": e2e.wall_s,
        "peak_rss_gb": inc.peak_rss_bytes / GB,
        "rows_per_s": r["rows_changed"] / r["wall_s"] if r["wall_s"] else None,
        "parts": parts,
        "checks": f"{tables['checks_passed'] + models['checks_passed']}/{checks_total} passed",
        "failed_checks": tables["failed_checks"] + models["failed_checks"],
    }


def _layers(d: dict[str, float], fmt: str = "{:.1f}") -> str:
    return ", ".join(f"{k} {fmt.format(v)}" for k, v in d.items()) or "none"


def incremental_lines(inc: dict[str, Any] | None) -> list[str]:
    if inc is None:
        return [f"{'incr. day':10s} {NOT_MEASURED}"]
    t, m = inc["parts"]["partitioned_tables"], inc["parts"]["models_and_marts"]
    return [
        f"{'incr. day':10s} {inc['rows_changed']:>11,} {inc['wall_s']:>8.1f} {'-':>8s} {'-':>8s} {'-':>10s} "
        f"{'-':>10s} {_f(inc['rows_per_s'], '{:,.0f}'):>11s} {'':>7s}  {inc['peak_rss_gb']:.2f}",
        f"  {inc['day']} at {inc['change_rate']:.0%} change: {inc['rows_changed']:,} OLTP rows changed "
        f"({_f(inc['changed_share'] and inc['changed_share'] * 100, '{:.2f}')}% of the full load's "
        f"{inc['full_load_rows']:,}) applied in {inc['wall_s']:.1f} s = {_f(inc['ratio_vs_full_load'], '{:.2f}x')} "
        f"the full load's run ({inc['full_load_s']:.1f} s; both without process start)",
        f"  the change run: tables, models, marts (sensor tick {t['sensor_s']:.1f} s + incremental_changes run "
        f"{t['run_s']:.1f} s, "
        f"{t['assets']} assets): {t['wall_s']:.1f} s ({_f(t['share_of_day'] and t['share_of_day'] * 100, '{:.0f}')}%); "
        f"engine s {_layers(t['engine_s_by_layer'])}; rows {_layers(t['rows_by_layer'], '{:,.0f}')}",
        f"  then the automation (what it still found: {m['runs']} run(s), {m['assets']} assets): {m['wall_s']:.1f} s "
        f"({_f(m['share_of_day'] and m['share_of_day'] * 100, '{:.0f}')}%); engine s {_layers(m['engine_s_by_layer'])}",
        f"  not part of the day: simulating it in the OLTP {_f(inc.get('simulate_s'))} s; the measuring process "
        f"{inc['process_wall_s']:.1f} s in all",
    ]


def render(
    sf: float,
    rows: list[dict[str, Any]],
    e2e: dict[str, Any],
    extras: dict[str, Any],
    inc: dict[str, Any] | None = None,
) -> str:
    head = (
        f"{'stage':10s} {'rows':>11s} {'ours s':>8s} {'naive s':>8s} {'limit s':>8s} {'ours/limit':>10s} "
        f"{'naive/ours':>10s} {'rows/s':>11s} {'MB/s':>7s}  peak RSS GB ours (naive / limit)"
    )
    out = [f"TPC-H SF={sf:g} on the local stack", head, "-" * len(head)]
    for r in rows:
        gb = "{:.2f}"
        star = "" if r["measured_alone"] else "*"
        rss = f"{r['peak_rss_gb']:.2f}{star} ({_f(r['naive_peak_rss_gb'], gb)} / {_f(r['limit_peak_rss_gb'], gb)})"
        out.append(
            f"{r['stage']:10s} {r['rows']:>11,} {r['ours_s']:>8.1f} {_f(r['naive_s']):>8s} {_f(r['limit_s']):>8s} "
            f"{_f(r['ours_over_limit'], '{:.2f}x'):>10s} {_f(r['naive_over_ours'], '{:.1f}x'):>10s} "
            f"{_f(r['rows_per_s'], '{:,.0f}'):>11s} {_f(r['mb_per_s']):>7s}  {rss}"
        )
    out.append(
        f"{'end to end':10s} {e2e['oltp_rows']:>11,} {e2e['wall_s']:>8.1f} {_f(e2e['naive_s']):>8s} "
        f"{e2e['limit_s']:>8.1f} {_f(_ratio(e2e['wall_s'], e2e['limit_s']), '{:.2f}x'):>10s} "
        f"{_f(_ratio(e2e['naive_s'], e2e['wall_s']), '{:.1f}x'):>10s} "
        f"{e2e['oltp_rows'] / e2e['wall_s']:>11,.0f} {'':>7s}  {e2e['peak_rss_gb']:.2f}"
    )
    out.extend(incremental_lines(inc))
    out.append("")
    out.append(
        f"Dagster overhead: {e2e['dagster_overhead_s']:.1f} s of {e2e['wall_s']:.1f} s end to end "
        f"({e2e['dagster_overhead_share']:.0%}) = wall - engine work {e2e['engine_s']:.1f} s (Σ asset 'seconds') "
        f"- asset checks {e2e['check_steps_s']:.1f} s (of which {e2e['in_step_checks_s']:.1f} s inside "
        "asset steps)"
    )
    out.append("  " + "; ".join(f"{k} {v:.1f} s" for k, v in e2e["overhead_breakdown_s"].items()))
    out.append(
        "Where the time goes (engine s by layer): "
        + ", ".join(f"{k} {v:.1f}" for k, v in e2e["engine_s_by_layer"].items())
        + "; slowest assets: "
        + ", ".join(f"{k} {v:.1f}" for k, v in e2e["slowest_assets"])
    )
    if extras.get("server_copy"):
        sc = extras["server_copy"]
        out.append(
            f"PostgreSQL raw speed (COPY … TO STDOUT binary, client discards): {sc['seconds']:.1f} s, "
            f"{sc['bytes'] / 1e6 / sc['seconds']:.0f} MB/s"
        )
    if extras.get("spark_fixed"):
        sp = extras["spark_fixed"]
        out.append(
            f"Spark's fixed cost (transform limit, local files): session start {sp['session_start_s']:.1f} s, then "
            f"its first table ({sp['first']}) {sp['first_s']:.1f} s; every Dagster run process pays it once"
        )
    if extras.get("marts_limit_unmerged"):
        marts = next(r for r in rows if r["stage"] == "marts")
        out.append(
            f"Marts limit with final = 1 (as the marts read): {_f(marts['limit_s'])} s; without it (unmerged parts, "
            f"the earlier reference): {extras['marts_limit_unmerged']['seconds']:.1f} s"
        )
    out.append("")
    out.append("Targets:")
    for r in rows:
        vs_limit = r["ours_over_limit"] is not None and r["ours_over_limit"] <= TARGET_VS_LIMIT
        vs_naive = r["naive_over_ours"] is not None and r["naive_over_ours"] >= TARGET_VS_NAIVE
        out.append(
            f"  {r['stage']:10s} within {TARGET_VS_LIMIT}x of limit: {'MET' if vs_limit else 'NOT MET'} "
            f"({_f(r['ours_over_limit'], '{:.2f}x')}); >= {TARGET_VS_NAIVE:.0f}x faster than naive: "
            f"{'MET' if vs_naive else ('n/a' if r['naive_s'] is None else 'NOT MET')} "
            f"({_f(r['naive_over_ours'], '{:.1f}x')})"
        )
    mem = extras.get("extract_memory")
    out.append(
        "  extract memory bounded (peak RSS at 10x the scale <= 1.5x): "
        + (
            f"{'MET' if mem['ratio'] <= TARGET_EXTRACT_MEMORY else 'NOT MET'} ({mem['ratio']:.2f}x: "
            f"{mem['this_gb']:.2f} GB at SF={sf:g} vs {mem['base_gb']:.2f} GB at SF={mem['base_sf']:g}, {mem['file']})"
            if mem
            else f"not compared (no earlier run at SF={sf / 10:g} in the bench folder)"
        )
    )
    out.append(
        "  incremental day at 1% change (reported, no target): "
        + (
            f"{inc['wall_s']:.1f} s = {_f(inc['ratio_vs_full_load'], '{:.2f}x')} the full load, checks {inc['checks']}"
            if inc
            else NOT_MEASURED
        )
    )
    out.append("")
    out.append(
        "ours s = Σ of the assets' own 'seconds' metadata in a Dagster run of that layer alone (engine work, incl. "
        "Spark session start); naive/limit s = the same work timed inside its own process; peak RSS = the measuring "
        "process and its children (Spark JVM included, database servers excluded). MB/s = bytes written / ours s."
    )
    if not all(r["measured_alone"] for r in rows):
        out.append("* stage not re-run alone (--alone): its times come from the end-to-end run, its RSS is that run's.")
    return "\n".join(out)


def spark_fixed(limit: Measured | None) -> dict[str, Any] | None:
    """Session start and the first (tiny) table of the transform limit: what Spark costs before any data."""
    r = limit.result if limit else {}
    if "session_start_s" not in r or not r.get("seconds_by_name"):
        return None
    first, first_s = next(iter(r["seconds_by_name"].items()))
    return {"session_start_s": r["session_start_s"], "first": first, "first_s": first_s}


def extract_memory(bench: Path, sf: float, this_gb: float) -> dict[str, Any] | None:
    """Compare the extract's peak RSS with the latest run at a tenth of the scale factor."""
    base_sf = sf / 10
    files = sorted(bench.glob(f"bench-sf{base_sf:g}-*.json"))
    if not files:
        return None
    base = json.loads(files[-1].read_text())
    base_gb = next(r["peak_rss_gb"] for r in base["stages"] if r["stage"] == "extract")
    ratio = this_gb / base_gb
    return {"base_sf": base_sf, "base_gb": base_gb, "this_gb": this_gb, "ratio": ratio, "file": files[-1].name}


def to_json(path: Path, payload: dict[str, Any]) -> None:
    def default(o: Any) -> Any:
        return asdict(o) if isinstance(o, Measured) else str(o)

    path.write_text(json.dumps(payload, indent=2, default=default))
