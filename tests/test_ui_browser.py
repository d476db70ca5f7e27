"""The Dagster UI used as a person uses it: headless Chromium (Debian's ``chromium``, driven by Playwright with
``executable_path``; Playwright's own browser download does not work here) on a real ``dagster-webserver`` and
``dagster-daemon`` over the test stack.

Open the lineage; materialize ``warehouse/dim_customer`` and then its mart ``marts/customer_features`` with the
asset pages' Materialize button; see the runs succeed, the materialization metadata (rows, table, column schema)
and the asset checks in the pages; turn the ``landing_files`` sensor on with its toggle and see it tick.
Screenshots of every page go to ``.data/test-artifacts/screenshots/`` (kept after the run).

The webserver has its own instance (launching runs itself) and its own chDB engine folder: chDB opens one folder
per process and this test process holds the lineage fixture's, so the UI's runs get a copy of it (the same
warehouse tables) and read the same lake. All sensors and schedules are RUNNING by default; they are stopped
through GraphQL before the daemon starts, so the daemon launches nothing on its own during the test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from playwright.sync_api import Page, sync_playwright

from control_plane import commands
from control_plane.client import GraphQLClient
from platform_assets.column_lineage import sql_column_lineage
from platform_assets.definitions import defs
from platform_assets.marts.queries import MARTS
from platform_assets.partitions import FIRST_DAY
from platform_assets.warehouse.table_diff import MATCHES_OLTP
from tests.conftest import PORT_BASE, REPO, TEST_DATA
from tests.ui.dagster_ui import DagsterUI, copy_engine_folder, dagster_ui, free_port, log_tail

README_PICTURE = REPO / "docs" / "ui-lineage.png"  # the README's first screen shows it
README_COLUMN_LINEAGE = REPO / "docs" / "ui-column-lineage.png"  # and the column lineage of a mart
SCREENSHOTS = REPO / ".data" / "test-artifacts" / "screenshots"  # kept after the run (the stack folder is not)
WINDOW = (1600, 1000)
PAGE_TIMEOUT_S = 45  # a page (GraphQL + render) on two busy cores
RUN_DEADLINE_S = 240  # one UI-launched run: run worker start + definitions load (~40 s) + the step and its checks
TICK_DEADLINE_S = 150  # the daemon's first evaluation of a sensor just turned on
DAEMON_DEADLINE_S = 180

DIM, MART = "warehouse/dim_customer", "marts/customer_features"
LOADED = "warehouse/customer"  # a table the full lineage loaded: its card in the README's picture
SEED_DAY = FIRST_DAY.isoformat()  # the pristine TPC-H's one change day
SENSOR = "landing_files"
DEFAULT_RUNNING = {"oltp_changes", "landing_files", "automation", "report_failed_runs", "daily_changes",
                   "freshness_checks_hourly"}  # fmt: skip


@pytest.fixture(scope="module")
def chromium() -> Iterator[str]:
    path = shutil.which("chromium")
    if path is None:
        if os.geteuid() != 0:
            pytest.fail("chromium is not installed and installing it needs root: apt-get install chromium")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"],
                       check=True, env=env, timeout=900)  # fmt: skip
        path = shutil.which("chromium")
        assert path, "apt-get installed chromium but it is not on PATH"
    yield path


@pytest.fixture(scope="module")
def ui(lineage, resources) -> Iterator[DagsterUI]:
    """Webserver on workspace.yaml, every sensor and schedule stopped through GraphQL, then the daemon; the full
    lineage run on this instance, as ``platform materialize job:full_lineage`` launches it, so the UI shows a
    loaded platform (its cards summarise what this instance has seen)."""
    assert lineage.success, "the lineage fixture's full_lineage run failed: the UI test needs its warehouse"
    engine = TEST_DATA / "clickhouse-ui"
    copy_engine_folder(Path(resources["clickhouse"].dsn.removeprefix("chdb://")), engine)
    env = {**os.environ, "CLICKHOUSE_DSN": f"chdb://{engine}"}
    home = TEST_DATA / "dagster-ui"
    with dagster_ui(home, env, REPO / "workspace.yaml", free_port(PORT_BASE + 800)) as (dagster, start_daemon):
        stopped = dagster.stop_all_automation()
        assert set(stopped) == DEFAULT_RUNNING, f"expected every default-RUNNING instigator stopped, got {stopped}"
        start_daemon()
        client = GraphQLClient(dagster.url)
        run_id = commands.launch(client, ["job:full_lineage"], partition=None, start=SEED_DAY, end=SEED_DAY)
        wait_for_run(dagster, run_id, "the full lineage over the seed day")
        yield dagster


@pytest.fixture(scope="module")
def page(chromium) -> Iterator[Page]:
    for stale in SCREENSHOTS.glob("failed-*.png"):
        stale.unlink()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        try:
            context = browser.new_context(viewport={"width": WINDOW[0], "height": WINDOW[1]})
            pg = context.new_page()
            pg.set_default_timeout(PAGE_TIMEOUT_S * 1000)
            yield pg
        finally:
            browser.close()


# --- helpers ---------------------------------------------------------------------------------------------------
def excerpt(text: str, limit: int = 1500) -> str:
    return re.sub(r"\s+", " ", text).strip()[:limit]


def shoot(page: Page, name: str) -> Path:
    """A viewport screenshot; a blank or half-rendered page would be a small PNG."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    path.unlink(missing_ok=True)
    page.screenshot(path=str(path))
    png = path.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) == WINDOW, path
    assert len(png) > 20_000, f"{path} is {len(png)} bytes: a blank page?"
    return path


def fail(page: Page, what: str, text: str | None = None) -> None:
    text = page.inner_text("body") if text is None else text
    shot = SCREENSHOTS / f"failed-{re.sub(r'[^a-z0-9]+', '-', what.lower())[:60]}.png"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot))
    pytest.fail(f"{what} — page {page.url}, screenshot {shot}; page text: {excerpt(text)}")


def expect_text(page: Page, what: str, *needles: str | re.Pattern, timeout_s: float = PAGE_TIMEOUT_S) -> str:
    """Wait until the page shows every needle (text or regex); fail with what is missing and what it shows."""
    deadline = time.monotonic() + timeout_s
    while True:
        text = page.inner_text("body")
        missing = [n for n in needles if not (n.search(text) if isinstance(n, re.Pattern) else n in text)]
        if not missing:
            return text
        if time.monotonic() > deadline:
            shown = [n.pattern if isinstance(n, re.Pattern) else n for n in missing]
            fail(page, f"{what}: {shown} not shown within {timeout_s:.0f} s", text)
        time.sleep(0.5)


def runs_launched(page: Page, ui: DagsterUI, before: set[str], confirm, what: str) -> list[dict]:
    """The runs a click launched (those not in ``before``), clicking the dialog's ``confirm`` if the UI asks."""
    deadline = time.monotonic() + PAGE_TIMEOUT_S
    while not (launched := [r for r in ui.runs() if r["runId"] not in before]):
        if confirm.count() and confirm.first.is_visible():
            confirm.first.click()
        if time.monotonic() > deadline:
            fail(page, f"{what} launched no run within {PAGE_TIMEOUT_S} s")
        time.sleep(0.5)
    return launched


def materialize_from_asset_page(page: Page, ui: DagsterUI, key: str) -> str:
    """Click the asset page's Materialize button (confirming the dialog), return the run id it launched."""
    before = {r["runId"] for r in ui.runs()}
    page.goto(f"{ui.url}/assets/{key}")
    expect_text(page, f"asset page of {key}", "Latest materialization", key.split("/")[-1])
    page.locator("button").filter(has_text=re.compile(r"^Materialize$")).click()
    # This instance never saw the upstream assets materialized (the lineage ran on the test process's own
    # instance), so the UI asks to confirm.
    confirm = page.locator("[role=dialog] button, .bp5-dialog button").filter(has_text=re.compile(r"^Confirm$"))
    (run,) = runs_launched(page, ui, before, confirm, f"clicking Materialize on {key}")
    assert run["assets"] == [key], f"the Materialize button of {key} launched a run of {run['assets']}"
    return run["runId"]


def wait_for_run(ui: DagsterUI, run_id: str, what: str) -> None:
    deadline = time.monotonic() + RUN_DEADLINE_S
    while True:
        status = next(r["status"] for r in ui.runs() if r["runId"] == run_id)
        if status == "SUCCESS":
            return
        if status in ("FAILURE", "CANCELED"):
            pytest.fail(f"run {run_id} ({what}) ended {status}: {ui.failure(run_id)}")
        if time.monotonic() > deadline:
            pytest.fail(
                f"run {run_id} ({what}) still {status} after {RUN_DEADLINE_S} s; "
                f"webserver log: {log_tail(ui.home / 'webserver.log', 1500)}"
            )
        time.sleep(2)


def execute_check_from_its_pane(page: Page, ui: DagsterUI, key: str, check: str) -> None:
    """Click the Execute button of the check's pane (confirming if asked) and wait for the run it launched."""
    before = {r["runId"] for r in ui.runs()}
    page.goto(f"{ui.url}/assets/{key}?view=checks&checkDetail={check}")
    expect_text(page, f"the pane of {key}:{check}", check, "Execute")
    page.locator("button").filter(has_text=re.compile(r"^Execute$")).first.click()
    dialog_buttons = page.locator("[role=dialog] button, .bp5-dialog button")
    confirm = dialog_buttons.filter(has_text=re.compile(r"^(Confirm|Execute)"))
    launched = runs_launched(page, ui, before, confirm, f"clicking Execute on {key}:{check}")
    wait_for_run(ui, launched[0]["runId"], f"Execute {key}:{check} from the UI")


def check_passed(page: Page, ui: DagsterUI, key: str, check: str, *metadata: str) -> None:
    """The check's pane (selected in the checks tab) shows its latest evaluation as Passed, with its metadata."""
    page.goto(f"{ui.url}/assets/{key}?view=checks&checkDetail={check}")
    passed = re.compile(rf"{check}\s+Execute\b[\s\S]*Evaluation result\s+Passed")
    expect_text(page, f"check {key}:{check} shown as Passed", passed, *metadata)


def materialized_and_shown(page: Page, ui: DagsterUI, key: str, rows: int, columns: list[str]) -> str:
    """Materialize from the asset page, wait for the run, and find its metadata on the overview and events tabs."""
    run_id = materialize_from_asset_page(page, ui, key)
    wait_for_run(ui, run_id, f"Materialize {key} from the UI")
    slug = key.replace("/", "-")
    table = key.replace("/", ".")  # the ClickHouse table: database = layer
    page.goto(f"{ui.url}/assets/{key}")
    text = expect_text(page, f"overview of {key} after run {run_id}", "Row count", "Columns", *columns)
    if not re.search(rf"Row count\s+{rows:,}\b", text):
        fail(page, f"{key}: the overview does not show the row count {rows:,}", text)
    shoot(page, f"{slug}-overview")
    page.goto(f"{ui.url}/assets/{key}?view=events")
    expect_text(page, f"materialization event of {key}", f"Materialized in run {run_id[:8]}",
                "dagster/row_count", "dagster/table_name", table, "dagster/column_schema")  # fmt: skip
    shoot(page, f"{slug}-events")
    return run_id


# --- tests -----------------------------------------------------------------------------------------------------
def test_lineage_page_shows_every_group(ui, page):
    nodes = ui.q("{ assetNodes { groupName isMaterializable } }")["assetNodes"]
    groups = {n["groupName"] for n in nodes}
    materializable = sum(n["isMaterializable"] for n in nodes)
    assert groups == {"oltp", "raw", "curated", "warehouse", "marts"}
    page.goto(f"{ui.url}/asset-groups")
    expect_text(page, "the global lineage", "Global asset lineage", *sorted(groups),
                re.compile(rf"Materialize all \({materializable}\)"))  # fmt: skip
    # the graph itself: one (collapsed) node per group
    graph_groups = page.locator("[class*=CollapsedGroupNode_collapsedGroupNodeBox]")
    graph_groups.first.wait_for()
    shown = sorted(graph_groups.all_inner_texts())
    assert [g.strip() for g in shown] == sorted(groups), f"groups drawn in the lineage graph: {shown}"
    shoot(page, "asset-groups")


def test_materialize_warehouse_model_and_its_mart_from_the_ui(ui, page, seeded):
    customers = seeded["customer"]  # one row per customer in the model and in the mart
    materialized_and_shown(page, ui, DIM, customers, ["c_custkey", "c_name", "n_name", "r_name"])
    check_passed(page, ui, DIM, "primary_key_unique_not_null", "distinct_keys", "null_keys")
    shoot(page, "warehouse-dim_customer-checks")
    check_passed(page, ui, DIM, "matches_full_rebuild", "rows", "rebuild_rows")

    materialized_and_shown(page, ui, MART, customers, ["c_custkey", "order_count", "revenue", "days_since_last_order"])
    check_passed(page, ui, MART, "up_to_date_with_warehouse", "stale_inputs")
    shoot(page, "marts-customer_features-checks")

    # the whole-table check of an input runs on its own cadence (03:00): executed here from its pane, as a user would
    execute_check_from_its_pane(page, ui, LOADED, MATCHES_OLTP)
    check_passed(page, ui, LOADED, MATCHES_OLTP, "differing_buckets", "oltp_rows")

    page.goto(f"{ui.url}/assets/{DIM}?view=lineage")  # the model between its input and its mart
    expect_text(page, f"lineage of {DIM}", "customer_features", "dim_customer", "ClickHouse")
    deadline = time.monotonic() + PAGE_TIMEOUT_S
    while re.search(r"Loading(\.\.\.|…)", page.inner_text("body")):  # the nodes' status rows
        if time.monotonic() > deadline:
            fail(page, f"the lineage of {DIM} still shows 'Loading…' after {PAGE_TIMEOUT_S} s")
        time.sleep(0.5)
    shot = shoot(page, "warehouse-dim_customer-lineage")
    # the card of a loaded input says so: every change day filled, its latest event, its checks passed
    text = page.inner_text("body")
    card = re.search(r"customer\s+Latest event\s+(?P<event>.+?)\s+Asset checks\s+(?P<passed>\d+) / (?P<checks>\d+) "
                     r"Passed\s+Partitions\s+(?P<filled>\d+)% filled[\s\S]*?(?P<partitions>[\d,]+) partitions?\b",
                     text)  # fmt: skip
    if card is None:
        fail(page, f"no card of {LOADED} in the lineage of {DIM}", text)
    assert card["event"].endswith("ago") and card["filled"] == "100" and card["partitions"] == "1", card.groupdict()
    checks = defs().resolve_asset_graph().get_check_keys_for_assets({dg.AssetKey(LOADED.split("/"))})
    assert card["passed"] == card["checks"] == str(len(checks)), card.groupdict()
    if os.environ.get("UPDATE_DOCS_SCREENSHOT") == "1":  # the README's picture, taken of the UI as it is now
        shutil.copyfile(shot, README_PICTURE)


# The JSON dialog's text: the block under its title that holds the pretty-printed JSON
SHOWN_TEXT = """d => [...d.querySelectorAll('div, pre, code')]
  .map(e => e.textContent.trim()).find(t => t.startsWith('['))"""


def test_the_marts_column_lineage_is_on_its_materialization(ui, page):
    """Dagster's OSS UI has no column-lineage view (that is Dagster+); the materialization's
    ``dagster/column_lineage`` entry is shown on the run's page as JSON. It is the lineage derived from the mart's
    SQL, column by column."""
    (mart,) = [m for m in MARTS if m.name == MART.split("/")[1]]
    derived = {
        column: sorted((dep.asset_key.to_user_string(), dep.column_name) for dep in deps)
        for column, deps in sql_column_lineage(mart.sql).deps_by_column.items()
    }
    # a run of the mart alone (the other UI test's, or one launched here), so its page holds one lineage entry
    runs = [r["runId"] for r in ui.runs() if r["assets"] == [MART] and r["status"] == "SUCCESS"]
    if not runs:
        runs.append(commands.launch(GraphQLClient(ui.url), [MART], partition=None, start=None, end=None))
        wait_for_run(ui, runs[0], f"{MART} launched through GraphQL")
    page.goto(f"{ui.url}/runs/{runs[0]}")
    expect_text(page, f"the run of {MART}", "dagster/column_lineage")
    row = page.locator("tr, [role=row], div").filter(has_text=re.compile(r"^dagster/column_lineage")).last
    row.get_by_text("[Show JSON]").first.click()
    dialog = page.locator("[role=dialog], .bp5-dialog").filter(has_text="dagster/column_lineage")
    dialog.wait_for()
    page.wait_for_timeout(1000)  # the dialog fades in: the picture shows it whole
    shot = shoot(page, "marts-customer_features-column-lineage")
    shown = json.loads(dialog.evaluate(SHOWN_TEXT))
    got = {c["columnName"]: sorted(("/".join(d["assetKey"]["path"]), d["columnName"]) for d in c["columnDeps"])
           for c in shown}  # fmt: skip
    assert got == derived and got["revenue"], f"{shot}: the UI shows {got}, the SQL gives {derived}"
    if os.environ.get("UPDATE_DOCS_SCREENSHOT") == "1":
        shutil.copyfile(shot, README_COLUMN_LINEAGE)


def test_turn_a_sensor_on_from_the_ui_and_see_it_tick(ui, page, object_store):
    from platform_assets.paths import landing_prefix

    landed = [k for k, _ in object_store.list_keys(landing_prefix())]
    assert not landed, f"expected an empty landing/ (the sensor would launch runs): {landed[:5]}"
    deadline = time.monotonic() + DAEMON_DEADLINE_S
    while not ui.daemons_healthy({"SENSOR"}):
        if time.monotonic() > deadline:
            pytest.fail(f"the sensor daemon is not healthy: {log_tail(ui.home / 'daemon.log')}")
        time.sleep(2)

    _, sensors, _ = ui.instigators()
    assert sensors[SENSOR]["ticks"] == [], f"{SENSOR} ticked before it was turned on: {sensors[SENSOR]}"
    page.goto(f"{ui.url}/automation")
    row = page.locator("[data-index]").filter(has=page.locator(f"a[href$='/sensors/{SENSOR}']"))
    toggle = row.locator("label[class*=formatSwitch]")
    toggle.wait_for()
    switch = toggle.locator("input[type=checkbox]")
    assert not switch.is_checked(), f"{SENSOR} shows as running before it was turned on"
    toggle.click()
    deadline = time.monotonic() + PAGE_TIMEOUT_S
    while not (switch.is_checked() and ui.instigators()[1][SENSOR]["status"] == "RUNNING"):
        if time.monotonic() > deadline:
            state = ui.instigators()[1][SENSOR]["status"]
            fail(page, f"the {SENSOR} toggle did not start the sensor (checked: {switch.is_checked()}, state {state})")
        time.sleep(0.5)
    shoot(page, "automation-landing_files-on")

    page.goto(f"{ui.url}/locations/data_platform/sensors/{SENSOR}")
    expect_text(page, f"the {SENSOR} sensor page", "Latest tick", "Running")
    # A skipped tick (nothing landed) is listed as "0 runs requested"; its dialog gives the skip reason.
    done = (
        page.locator("table tr")
        .filter(has_not_text="Evaluating")
        .filter(has=page.locator("button").filter(has_text=re.compile(r"^0 runs requested$")))
    )
    deadline = time.monotonic() + TICK_DEADLINE_S
    while not done.count():
        if time.monotonic() > deadline:
            fail(page, f"no completed tick of {SENSOR} within {TICK_DEADLINE_S} s (daemon log: "
                 f"{excerpt(log_tail(ui.home / 'daemon.log', 800))})")  # fmt: skip
        time.sleep(1)
    shoot(page, "sensor-landing_files-ticks")
    result = done.first.locator("button").filter(has_text=re.compile(r"^0 runs requested$"))
    result.first.click()
    dialog = page.locator("[role=dialog], .bp5-dialog").filter(has_text=f"Tick for {SENSOR}")
    dialog.wait_for()
    deadline = time.monotonic() + PAGE_TIMEOUT_S
    while "Skip reason: no new files under landing/" not in (text := dialog.inner_text()):
        if time.monotonic() > deadline:  # "Loading tick details…" first
            fail(page, f"the {SENSOR} tick does not show its skip reason within {PAGE_TIMEOUT_S} s", text)
        time.sleep(0.5)
    shoot(page, "sensor-landing_files-tick")
    (tick,) = ui.instigators()[1][SENSOR]["ticks"]
    assert tick == {"status": "SKIPPED", "skipReason": "no new files under landing/"}, tick
