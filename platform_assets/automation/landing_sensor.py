"""Sensor on the object store: files dropped under ``landing/<table>/<day>/`` are ingested once.

Each new object (key + ETag, so a re-upload under the same key counts as new) is requested once, in a run of the
same raw → curated → warehouse assets for its table and day; the raw asset ingests the files named by the run tag.
Keys that do not follow the layout, and files of a day that cannot be a change day (before the seed day, or after
today: a stamp in year 2099), are reported once in the log and skipped: one bad file never fails a tick, so
the cursor moves on and every other file is still ingested. A skipped file counts again when uploaded again.

The cursor holds the keys (and ETags) landing/ holds at the last tick, no more: a file deleted from landing/ leaves
it, so it stays as small as the listing. A file still there is never requested again; one deleted and uploaded again
is new (ingesting it again replaces its raw object: nothing is duplicated).
"""

import hashlib
import json
from collections import defaultdict

import dagster as dg

from platform_assets.jobs import incremental_job, per_day_checks, table_keys, with_downstream
from platform_assets.partitions import CHANGE_DAYS, FIRST_DAY, last_day
from platform_assets.paths import landing_prefix
from platform_assets.raw.landing import parse_landing_key
from resources.object_store import ObjectStoreResource

SENSOR = "landing_files"


def landed_objects(store: ObjectStoreResource) -> dict[str, str]:
    """key -> ETag of every object under ``landing/`` (folder markers aside)."""
    found = {o["Key"]: o.get("ETag", "").strip('"') for o in store.list_objects(landing_prefix())}
    return {k: etag for k, etag in sorted(found.items()) if not k.endswith("/")}


def new_objects(found: dict[str, str], seen: dict[str, str]) -> dict[str, str]:
    """Those of ``found`` not seen with that ETag before."""
    return {k: etag for k, etag in found.items() if seen.get(k) != etag}


def run_requests(new: dict[str, str], log=None, checks=None, downstream=None) -> list[dg.RunRequest]:
    """One run per (table, day) with its new files (``checks``: which checks each run executes; ``downstream``:
    the models and marts it carries the day to)."""
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for key in new:
        try:
            f = parse_landing_key(key)
            if not FIRST_DAY <= f.day <= last_day():
                raise ValueError(
                    f"{key}: table {f.table.name}, day {f.day} is not a change day ({FIRST_DAY}..{last_day()})"
                )
        except ValueError as exc:
            if log is not None:
                log.warning(f"landing: skipped {exc}")
            continue
        groups[(f.table.name, f.day.isoformat())].append(key)
    requests = []
    for (table, day), keys in sorted(groups.items()):
        digest = hashlib.sha1(json.dumps({k: new[k] for k in keys}, sort_keys=True).encode()).hexdigest()[:12]
        assets = table_keys(table)
        assets = downstream(assets) if downstream else assets
        requests.append(
            dg.RunRequest(
                run_key=f"{SENSOR}:{table}:{day}:{digest}",
                partition_key=day,
                asset_selection=assets,
                asset_check_keys=checks(assets) if checks else None,
                run_config={"ops": {f"raw__{table}": {"config": {"landed_files": keys}}}},
                tags={"platform/trigger": SENSOR},
            )
        )
    return requests


@dg.sensor(
    name=SENSOR,
    job=incremental_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Ingests Parquet/CSV files dropped under landing/<table>/<YYYY-MM-DD>/ once each, through raw → "
    "curated → warehouse.",
)
def landing_sensor(context: dg.SensorEvaluationContext, object_store: ObjectStoreResource):
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    found = landed_objects(object_store)
    new = new_objects(found, seen)
    # the cursor is what landing/ holds now: every file in it has been requested (or reported), and a file removed
    # from landing/ leaves the cursor with it, so the cursor never outgrows the listing
    cursor = json.dumps(found, sort_keys=True)
    if not new:
        skip = dg.SkipReason("no new files under landing/")
        return skip if found == seen else dg.SensorResult(skip_reason=skip, cursor=cursor)
    requests = run_requests(new, context.log, per_day_checks(context), with_downstream(context))
    context.log.info(f"landing: {len(new)} new file(s), {len(requests)} run(s)")
    days = sorted({r.partition_key for r in requests if r.partition_key})
    have = set(context.instance.get_dynamic_partitions(CHANGE_DAYS.name)) if context.instance else set()
    added = [k for k in days if k not in have]
    adds = [CHANGE_DAYS.build_add_request(added)] if added else []
    return dg.SensorResult(run_requests=requests, cursor=cursor, dynamic_partitions_requests=adds)
