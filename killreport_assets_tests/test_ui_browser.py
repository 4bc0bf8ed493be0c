"""The Dagster UI in a real browser: Debian's Chromium, driven by Playwright, clicks "Materialize all"
on the asset graph of a `dagster dev` serving this project against the ESI simulator, sees the five
assets materialized, then opens alliance_snapshot's page and finds its column schema, freshness
policy and chart. Screenshots go to test-output/ui/ (git-ignored): the materialized graph, the
column schema, the freshness state and the chart, or what the browser showed when the test failed.

`dagster dev` runs on the production instance config (deploy/dagster.yaml on a throw-away
PostgreSQL database), so the run goes through the same run queue, daemon and code server as in
production.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect, sync_playwright

from killreport_assets.assets import ALL_ASSETS
from killreport_assets.simulator import SimulatorConfig, SimulatorProcess
from killreport_assets_tests.dagster_support import REPO, DagsterDev, production_home
from killreport_assets_tests.databases import postgres_database

CHROMIUM = "/usr/bin/chromium"
# Headless as root on a closed network: no sandbox, no GPU, and none of the background requests to
# Google's services that this network refuses (machines/python-svc.md).
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OUTPUT = REPO / "test-output" / "ui"
ASSETS = [asset.key.to_user_string() for asset in ALL_ASSETS]
UNIVERSE = SimulatorConfig(seed=31, alliances=60, corporations=300)
UI_TIMEOUT_MS = 60_000


@pytest.fixture
def dagster_ui(tmp_path: Path) -> Iterator[DagsterDev]:
    with (
        SimulatorProcess(UNIVERSE) as simulator,
        postgres_database() as app_database,
        production_home(tmp_path / "dagster_home") as dagster_env,
    ):
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("KILLREPORT_", "DAGSTER_"))},
            **dagster_env,
            "KILLREPORT_DATABASE_URL": app_database,
            "KILLREPORT_ESI_BASE_URL": simulator.url,
            "KILLREPORT_ESI_MAX_RPS": "400",
            "KILLREPORT_ESI_CONTACT": "ops@example.com",
        }
        with DagsterDev(env, tmp_path / "dagster-dev.log") as dev:
            yield dev


@pytest.fixture
def page() -> Iterator[Page]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(UI_TIMEOUT_MS)
        expect.set_options(timeout=UI_TIMEOUT_MS)
        try:
            yield page
        finally:
            browser.close()


def test_materialize_all_from_the_asset_graph(dagster_ui: DagsterDev, page: Page) -> None:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    try:
        run_id = materialize_all(dagster_ui, page)
    except BaseException:
        page.screenshot(path=OUTPUT / "failure.png", full_page=True)  # what the browser showed
        raise
    page.screenshot(path=OUTPUT / "asset-graph-materialized.png", full_page=True)

    latest = dagster_ui.graphql(
        "{ assetNodes { assetKey { path } assetMaterializations(limit: 1) { runId } } }"
    )
    assert {
        "/".join(a["assetKey"]["path"]): a["assetMaterializations"][0]["runId"] for a in latest["assetNodes"]
    } == {name: run_id for name in ASSETS}

    try:
        look_at_the_snapshot_page(dagster_ui, page)
    except BaseException:
        page.screenshot(path=OUTPUT / "failure.png", full_page=True)
        raise


def look_at_the_snapshot_page(dagster_ui: DagsterDev, page: Page) -> None:
    """The alliance_snapshot page: its column schema, its freshness policy, and the chart of the
    largest alliances drawn from the snapshots; a screenshot of each."""
    page.goto(f"{dagster_ui.url}/assets/alliance_snapshot")
    columns = page.get_by_text("corporation_count", exact=True).first
    expect(columns).to_be_visible()
    columns.scroll_into_view_if_needed()
    page.screenshot(path=OUTPUT / "column-schema.png", full_page=True)

    freshness = page.get_by_text(re.compile(r"fresh", re.IGNORECASE)).first
    expect(freshness).to_be_visible()
    freshness.scroll_into_view_if_needed()
    page.screenshot(path=OUTPUT / "freshness.png", full_page=True)

    entry = page.get_by_text("largest_alliances_chart", exact=True).first
    entry.scroll_into_view_if_needed()
    row = page.locator("tr", has=page.get_by_text("largest_alliances_chart", exact=True)).first
    (OUTPUT / "metadata-row.html").write_text(row.inner_html())  # what the UI made of the entry
    chart = row.locator("img")
    if not chart.count():  # Markdown metadata may open in a dialog
        row.locator("button, a, [role=button]").first.click()
        chart = page.locator('[role="dialog"] img')
    expect(chart.first).to_be_visible()
    assert chart.first.evaluate("img => img.naturalWidth") > 100, "the PNG decoded"
    chart.first.screenshot(path=OUTPUT / "largest-alliances-chart.png")


def materialize_all(dagster_ui: DagsterDev, page: Page) -> str:
    """Click "Materialize all", wait for the run to succeed, and see every asset materialized by it."""
    page.goto(f"{dagster_ui.url}/asset-groups")
    for name in ASSETS:
        expect(asset_node(page, name).get_by_text("Never materialized")).to_be_visible()

    button = page.get_by_role("button", name=re.compile(r"Materialize all$"))
    expect(button).to_be_enabled()
    button.click()
    toast = page.get_by_text(re.compile(r"^Launched run [0-9a-f]{8}$"))
    expect(toast).to_be_visible()
    run = dagster_ui.wait_for_run(toast.inner_text().removeprefix("Launched run "), timeout=300)
    assert run["status"] == "SUCCESS", dagster_ui.log_tail()

    page.reload()
    for name in ASSETS:
        node = asset_node(page, name)
        expect(node.get_by_text("Materialized", exact=True)).to_be_visible()
        expect(node.locator(f'a[href^="/runs/{run["runId"]}"]').first).to_be_attached()
    return run["runId"]


def asset_node(page: Page, name: str) -> Locator:
    """An asset's box in the graph (an SVG foreignObject holding its name and status rows)."""
    return page.locator("foreignObject").filter(has=page.locator(f'[data-tooltip="{name}"]'))
