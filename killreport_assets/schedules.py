"""The nightly refresh job and its schedule."""

from __future__ import annotations

import dagster as dg

from killreport_assets.assets import ALL_ASSETS

REFRESH_TAG = "killreport/refresh"
MAX_RUNTIME_SECONDS = 4 * 60 * 60  # the three step timeouts (3 h) plus the snapshots, with margin

daily_refresh_job = dg.define_asset_job(
    name="daily_refresh_job",
    selection=dg.AssetSelection.assets(*ALL_ASSETS),
    description="Alliances, memberships, corporations and today's snapshots, in dependency order.",
    # The tag is what the instance's run concurrency limit keys on: refresh runs never overlap.
    tags={REFRESH_TAG: "daily", "dagster/max_runtime": MAX_RUNTIME_SECONDS},
)


def build_daily_refresh_schedule(hour: int) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name="daily_refresh_schedule",
        job=daily_refresh_job,
        cron_schedule=f"0 {hour} * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Runs the full refresh every day (KILLREPORT_SCHEDULE_HOUR, default 02:00 UTC).",
    )
