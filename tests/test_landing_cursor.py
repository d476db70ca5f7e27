"""The landing sensor's cursor stays as small as landing/ (no stack: the object store's listing is given)."""

from __future__ import annotations

import json

import dagster as dg

from platform_assets.automation.landing_sensor import SENSOR
from platform_assets.definitions import defs
from resources.object_store import ObjectStoreResource


class ListedStore(ObjectStoreResource):
    """An object store whose ``landing/`` holds ``objects`` (key -> ETag)."""

    def list_objects(self, prefix: str) -> list[dict]:
        return [{"Key": k, "ETag": f'"{e}"'} for k, e in LISTED.items() if k.startswith(prefix)]


LISTED: dict[str, str] = {}


def tick(cursor: str) -> tuple[list[str], dict[str, str]]:
    """(landed files the tick requests, the cursor after it)."""
    definitions = defs()
    store = ListedStore(endpoint_url="http://127.0.0.1:9", bucket="lake", aws_access_key_id="k",
                        aws_secret_access_key="s")  # fmt: skip
    with (
        dg.instance_for_test() as instance,
        dg.build_sensor_context(
            instance=instance, instance_ref=instance.get_ref(), cursor=cursor, definitions=definitions,
            sensor_name=SENSOR,
            resources={**definitions.resources, "object_store": store},
        ) as context,
    ):  # fmt: skip
        data = definitions.resolve_sensor_def(SENSOR).evaluate_tick(context)
    files = [
        f for r in data.run_requests or [] for f in next(iter(r.run_config["ops"].values()))["config"]["landed_files"]
    ]
    return files, json.loads(data.cursor if data.cursor is not None else cursor)


def test_the_cursor_forgets_files_gone_from_landing_and_never_requests_a_file_twice():
    """The cursor once kept every key ever seen: a landing/ cleaned after each delivery left it growing for good."""
    LISTED.clear()
    cursor: dict[str, str] = {}
    for day in range(5, 10):  # a supplier's daily delivery, ingested, then removed from landing/
        LISTED.clear()
        LISTED[f"landing/orders/1998-08-0{day}/batch.parquet"] = f"e{day}"
        files, after = tick(json.dumps(cursor))
        assert files == [f"landing/orders/1998-08-0{day}/batch.parquet"]  # each new file is requested once
        cursor = after
    assert cursor == {"landing/orders/1998-08-09/batch.parquet": "e9"}  # bounded by what landing/ holds

    LISTED["landing/orders/1998-08-09/late.parquet"] = "f1"
    files, cursor = tick(json.dumps(cursor))
    assert files == ["landing/orders/1998-08-09/late.parquet"]  # a new file beside a seen one
    assert tick(json.dumps(cursor)) == ([], cursor)  # nothing new, nothing gone

    LISTED.pop("landing/orders/1998-08-09/batch.parquet")
    files, after = tick(json.dumps(cursor))  # nothing new, one gone: the skipped tick still drops it
    assert files == [] and after == {"landing/orders/1998-08-09/late.parquet": "f1"}
    LISTED["landing/orders/1998-08-09/late.parquet"] = "f2"  # uploaded again: new content, requested again
    assert tick(json.dumps(after))[0] == ["landing/orders/1998-08-09/late.parquet"]
    LISTED.clear()
