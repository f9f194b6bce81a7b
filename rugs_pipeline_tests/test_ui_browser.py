"""The demo as a person uses it: `make demo`, a backfill over GraphQL, the Dagster UI in headless Chromium, Ctrl-C.

Three past days are imported into the demo's store before it starts (the real recordings where
present, else a small made-up game per day); the stack's own sensor lands them. Screenshots of every
UI step go to .artifacts/screenshots/ (gitignored). Needs Debian's chromium (`make test` installs it
as root); skips where it is missing. The tests share one stack and run in file order.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import pytest
from playwright.sync_api import expect, sync_playwright

from rugs_pipeline.formats import spool
from rugs_pipeline.definitions import defs
from rugs_pipeline.defs.jobs import DERIVED
from rugs_pipeline.formats.protocol import encode_event
from rugs_pipeline.testing import DemoStack

from .conftest import REPO_ROOT, real_fixtures_dir

CHROMIUM = shutil.which("chromium")
# A closed network: no background connections (Playwright gives each launch a fresh profile).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SCREENSHOTS = REPO_ROOT / ".artifacts" / "screenshots"
REAL_RECORDINGS = ["public_2025-12-06_sandbox.jsonl", "public_2025-12-12_raw.jsonl", "cdp_2025-12-15.jsonl"]
DAYS = ["2025-12-07", "2025-12-12", "2025-12-15"]  # their UTC days
UI_DAY, UI_ASSET = "2025-12-12", "game_tick"
# Generous: about a minute each on an idle two-core machine, several times that when it is busy.
TIMEOUT_S = 240

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it as root: apt-get install chromium)")

ASSET_GRAPH = defs.resolve_asset_graph()
ASSET_KEYS = sorted(k.to_user_string() for k in ASSET_GRAPH.get_all_asset_keys())
DERIVED_KEYS = sorted(k.to_user_string() for k in DERIVED.resolve(ASSET_GRAPH))  # what a re-derivation targets


def seed_past_days(data: Path) -> None:
    """Put DAYS into the spool as a person would: `rugs-pipeline import` of recordings."""
    real = real_fixtures_dir()
    if (real / "README.md").is_file():
        subprocess.run([str(REPO_ROOT / ".venv" / "bin" / "rugs-pipeline"), "import", *(str(real / f) for f in REAL_RECORDINGS),
                        "--tz", "America/New_York"], env={**os.environ, "RUGS_DATA_DIR": str(data)},
                       check=True, capture_output=True)
    else:
        for day in DAYS:
            start_ns = int(datetime.fromisoformat(f"{day}T12:00:00+00:00").timestamp()) * 10**9
            game = f"{day.replace('-', '')}-seed"
            frames = [encode_event("gameStateUpdate", {"gameId": game, "active": True, "rugged": t == 20, "tickCount": t,
                                                       "price": 1 + t / 100 if t < 20 else 0.01, "cooldownTimer": 0})
                      for t in range(21)]
            records = [spool.SpoolRecord(i + 1, start_ns + i * 250_000_000, spool.KIND_FRAME, f) for i, f in enumerate(frames)]
            spool.write_sealed_segment(data / "spool", spool.SegmentHeader(f"seed-{day}", "public_ws"), records)
    assert sorted(p.name for p in (data / "spool").iterdir()) == DAYS


class GraphQL:
    def __init__(self, url: str) -> None:
        self.url = f"{url}/graphql"

    def __call__(self, query: str, **variables) -> dict:
        body = json.dumps({"query": query, "variables": variables}).encode()
        request = urllib.request.Request(self.url, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            out = json.load(response)
        assert not out.get("errors"), out["errors"]
        return out["data"]


def wait_for(what: str, probe, timeout: float = TIMEOUT_S, detail=lambda: ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := probe():
            return result
        time.sleep(2)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} {detail()}")


def landed_days(gql: GraphQL) -> list[str]:
    data = gql("""query($days: [String!]) { assetNodes(assetKeys: [{path: ["ws_event"]}]) {
                    latestMaterializationByPartition(partitions: $days) { partition } } }""", days=DAYS)
    return [m["partition"] for m in data["assetNodes"][0]["latestMaterializationByPartition"] if m]


def shot(page, name: str) -> None:
    page.wait_for_timeout(500)  # let the last render settle
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    demo = DemoStack(tmp_path_factory.mktemp("demo"))
    seed_past_days(demo.root / "rugs_data")
    demo.start()
    yield demo
    if demo.proc.poll() is None:  # a test failed before Ctrl-C: stop it all the same
        demo.note_processes()
        try:
            demo.ctrl_c()
        finally:
            demo.kill_leftovers()


@pytest.fixture(scope="module")
def gql(stack: DemoStack) -> GraphQL:
    return GraphQL(stack.url)


@pytest.fixture(scope="module")
def browser():
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for old in SCREENSHOTS.glob("*.png"):
        old.unlink()
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture()
def page(browser):
    context = browser.new_context(viewport={"width": 1600, "height": 1200})
    page = context.new_page()
    page.set_default_timeout(30_000)
    expect.set_options(timeout=30_000)  # assertions too: on a loaded two-core machine the UI takes seconds to settle
    yield page
    context.close()


BACKFILL = """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
  __typename ... on PartitionBackfill { status runs { runId status tags { key value } } } ... on Error { message } } }"""


@pytest.mark.timeout(4 * TIMEOUT_S)
def test_backfill_over_several_days_through_graphql(stack: DemoStack, gql: GraphQL, page) -> None:
    # Launched as soon as the days land: automation skips what a backfill has in progress, so it mostly leaves them.
    wait_for(f"the spool sensor to land {DAYS}", lambda: landed_days(gql) == DAYS)
    launched = gql("""mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
                        __typename ... on LaunchBackfillSuccess { backfillId } ... on Error { message } } }""",
                   params={"partitionNames": DAYS, "assetSelection": [{"path": [k]} for k in DERIVED_KEYS],
                           "title": "re-derive after a logic change"})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill_id = launched["backfillId"]

    def state():
        return gql(BACKFILL, id=backfill_id)["partitionBackfillOrError"]

    def finished():
        backfill = state()
        return backfill if backfill["status"] not in ("REQUESTED", "CANCELING", "FAILING") else None

    backfill = wait_for("the backfill to finish", finished, timeout=2 * TIMEOUT_S, detail=state)
    page.goto(f"{stack.url}/runs/b/{backfill_id}?tab=runs")
    for day in DAYS:
        page.get_by_text(f"partition: {day}").first.wait_for()
    shot(page, "01_backfill_runs")
    assert backfill["status"] == "COMPLETED_SUCCESS", (backfill, stack.log)
    assert all(r["status"] == "SUCCESS" for r in backfill["runs"]), backfill["runs"]
    runs = {r["runId"]: {t["key"]: t["value"] for t in r["tags"]} for r in backfill["runs"]}
    # one day per run, tagged with it (a range-tagged run records its checks without a partition);
    # a day's games also follow the next day's data, so the day before each is re-derived too
    assert set(DAYS) <= {tags.get("dagster/partition") for tags in runs.values()}, runs

    for key in DERIVED_KEYS:
        node = gql("""query($key: AssetKeyInput!, $days: [String!]) { assetNodes(assetKeys: [$key]) {
                        assetMaterializations(partitions: $days) { runId partition } } }""",
                   key={"path": [key]}, days=DAYS)["assetNodes"][0]
        by_day = {m["partition"] for m in node["assetMaterializations"] if m["runId"] in runs}
        assert by_day == set(DAYS), f"{key}: materialised by the backfill for {sorted(by_day)}"
    for check in ASSET_GRAPH.get_check_keys_for_assets({dg.AssetKey(k) for k in DERIVED_KEYS}):
        for day in DAYS:
            executions = gql("""query($key: AssetKeyInput!, $name: String!, $day: String!) {
                                  assetCheckExecutions(assetKey: $key, checkName: $name, partition: $day, limit: 25) {
                                    runId status evaluation { partition success } } }""",
                             key={"path": check.asset_key.path}, name=check.name, day=day)["assetCheckExecutions"]
            ours = [e for e in executions if e["runId"] in runs]
            assert ours and all(e["status"] == "SUCCEEDED" and e["evaluation"] == {"partition": day, "success": True}
                                for e in ours), f"{check.asset_key.to_user_string()}.{check.name} {day}: {executions}"


@pytest.mark.timeout(3 * TIMEOUT_S)
def test_materialise_a_partition_from_the_ui(stack: DemoStack, gql: GraphQL, page) -> None:
    # The lineage graph with its groups expanded: a reload fits it to the (tall) view.
    page.set_viewport_size({"width": 3200, "height": 3200})  # four groups: room for whole labels
    page.goto(f"{stack.url}/asset-groups")
    page.locator("[aria-label=unfold_more]").first.wait_for()  # the collapsed groups are drawn
    page.locator("[aria-label=settings]").last.click()
    page.get_by_role("menuitem", name=re.compile("Expand all groups")).click()
    page.reload()
    for key in ASSET_KEYS:
        expect(page.get_by_text(key, exact=True).last).to_be_in_viewport()
    expect(page.get_by_text(re.compile("^Loading"))).to_have_count(0)
    shot(page, "02_asset_graph")
    page.set_viewport_size({"width": 1600, "height": 1200})

    wait_for(f"the spool sensor to land {UI_DAY}", lambda: UI_DAY in landed_days(gql))
    page.goto(f"{stack.url}/assets/{UI_ASSET}?view=partitions")
    page.get_by_text("Partitions Selected").wait_for()
    shot(page, "03_partitioned_asset")
    page.get_by_role("button", name=re.compile("Materialize")).first.click()
    dialog = page.get_by_role("dialog")
    partition_selection = dialog.get_by_text("Partition selection")
    extra = dialog.get_by_text("Additional assets will be materialized")
    extra.or_(partition_selection).first.wait_for()
    if extra.is_visible():  # the asset is one output of a multi-asset: a person confirms the others
        shot(page, "04_additional_assets")
        dialog.get_by_role("button", name="Confirm").click()
    partition_selection.wait_for()
    show_all = dialog.get_by_text("Show all partitions")  # the dialog offers the last 90 days first
    if show_all.is_visible():
        show_all.click()
    partitions = dialog.locator("input[placeholder^='ex:']")
    partitions.fill(UI_DAY)
    partitions.press("Enter")
    launch = dialog.get_by_role("button", name="Launch 1 run")
    launch.wait_for()
    expect(dialog.get_by_text(re.compile("^Loading"))).to_have_count(0)
    shot(page, "05_launch_dialog")
    launch.click()
    run_id = page.locator("a[href^='/runs/']").filter(has_text="View").get_attribute("href").rsplit("/", 1)[1]

    page.goto(f"{stack.url}/runs/{run_id}")
    status = page.get_by_text(re.compile(r"^(Success|Failure|Canceled)$")).first
    status.wait_for(timeout=TIMEOUT_S * 1000)
    shot(page, "06_run")
    assert status.inner_text() == "Success", stack.log

    page.goto(f"{stack.url}/assets/{UI_ASSET}?view=partitions&partition={UI_DAY}")
    page.get_by_text("Materialized", exact=True).first.wait_for()
    for label in ("rows", "games", "schema_version"):
        page.get_by_text(label, exact=True).first.wait_for()
    shot(page, "07_partition_metadata")
    page.get_by_text("[Show Markdown]").first.click()  # the day's chart, a Markdown image
    chart = page.get_by_role("dialog").locator("img")
    expect(chart).to_have_count(1)
    assert chart.evaluate("img => img.decode().then(() => img.naturalWidth)") > 0, "the chart does not render"
    shot(page, "08_chart")

    page.goto(f"{stack.url}/assets/{UI_ASSET}?view=checks")
    page.get_by_text("Execution history", exact=True).click()
    row = page.get_by_role("row").filter(has_text=UI_DAY).first
    row.wait_for()
    shot(page, "09_check_results")
    assert "Passed" in row.inner_text()


@pytest.mark.timeout(2 * TIMEOUT_S)
def test_games_chart_partitions_and_asset_overview(stack: DemoStack, gql: GraphQL, page) -> None:
    # the day's games: summary numbers and the chart of rug ticks and peaks (derived by the backfill above)
    page.goto(f"{stack.url}/assets/games?view=partitions&partition={UI_DAY}")
    page.get_by_text("Materialized", exact=True).first.wait_for()
    for label in ("games_complete", "rug_tick_max", "peak_multiplier_max", "sidebets_placed"):
        page.get_by_text(label, exact=True).first.wait_for()
    shot(page, "10_games_metadata")
    page.get_by_text("[Show Markdown]").first.click()
    chart = page.get_by_role("dialog").locator("img[alt='rug ticks and peak multipliers']")
    expect(chart).to_have_count(1)
    assert chart.evaluate("img => img.decode().then(() => img.naturalWidth)") > 0, "the games chart does not render"
    shot(page, "11_games_chart")

    # the partitions view: days from RUGS_FIRST_DAY (default 2025-10-29), not 2025-01-01
    keys = gql("""{ assetNodes(assetKeys: [{path: ["ws_event"]}]) { partitionKeys } }""")["assetNodes"][0]["partitionKeys"]
    assert keys[0] == "2025-10-29" and keys[-1] == datetime.now(timezone.utc).date().isoformat(), (keys[0], keys[-1])
    page.goto(f"{stack.url}/assets/ws_event?view=partitions")
    page.get_by_text("Partitions Selected").wait_for()
    expect(page.get_by_text(re.compile(rf"\b{len(keys)} Partitions Selected")).first).to_be_visible()
    shot(page, "12_partitions")

    # the UI's counterpart of `rugs-pipeline status` (its "Asset health" overview is not enabled in this
    # release): the catalog, each asset with its partitions materialised, missing and failed
    page.goto(f"{stack.url}/assets")
    for key in ("ws_event", "games", "game_tick"):
        page.get_by_text(key, exact=True).first.wait_for()
    expect(page.get_by_text(re.compile("^Loading"))).to_have_count(0)
    expect(page.get_by_text(f"{len(keys)} partitions", exact=True).first).to_be_visible()
    shot(page, "13_asset_catalog")


def test_ctrl_c_stops_every_process(stack: DemoStack) -> None:
    running = stack.note_processes()
    for name in ("dagster dev", "rugs-pipeline simulate", "rugs-pipeline record"):
        assert any(name in cmd for cmd in running.values()), f"{name} is not running: {running}"
    stack.ctrl_c()
    deadline = time.monotonic() + 60
    while stack.alive() and time.monotonic() < deadline:
        time.sleep(1)
    assert not stack.alive(), f"still running after Ctrl-C: {stack.alive()}"
