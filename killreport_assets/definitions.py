"""The one `dg.Definitions` of the code location."""

from __future__ import annotations

import dagster as dg

from killreport_assets.assets import ALL_ASSETS
from killreport_assets.checks import ALL_CHECKS
from killreport_assets.resources import KillreportResource
from killreport_assets.schedules import build_daily_refresh_schedule, daily_refresh_job
from killreport_assets.sensors import failure_alert_sensor
from killreport_assets.settings import Settings

defs = dg.Definitions(
    assets=ALL_ASSETS,
    asset_checks=ALL_CHECKS,
    jobs=[daily_refresh_job],
    schedules=[build_daily_refresh_schedule(Settings.from_env())],
    sensors=[failure_alert_sensor],
    resources={"killreport": KillreportResource()},
    # The steps form a chain (checks aside) and do their concurrency inside (threads or workers):
    # a process per step would only add ~4 s of imports each and rebuild the connection pools.
    executor=dg.in_process_executor,
)
