"""The one `dg.Definitions` of the code location.

Loading reads one setting, the schedule hour, and the schemes of the database and broker URLs (the
assets' kinds; never failing); everything else is read by the resources when a run uses them, so a
bad worker-only setting cannot stop the code location (and its failure sensor).
"""

from __future__ import annotations

import os

import dagster as dg

from killreport_assets.assets import ALL_ASSETS
from killreport_assets.checks import ALL_CHECKS
from killreport_assets.resources import DatabaseResource, EsiResource, TransportResource
from killreport_assets.schedules import build_daily_refresh_schedule, daily_refresh_job
from killreport_assets.sensors import failure_alert_sensor, freshness_alert_sensor
from killreport_assets.settings import schedule_hour


def _secret(name: str) -> dg.EnvVar | None:
    """A URL that may carry a password: resolved from the environment at run time, never stored in
    run config; unset means the resource's default."""
    return dg.EnvVar(name) if os.environ.get(name) else None


defs = dg.Definitions(
    assets=ALL_ASSETS,
    asset_checks=ALL_CHECKS,
    jobs=[daily_refresh_job],
    schedules=[build_daily_refresh_schedule(schedule_hour())],
    sensors=[failure_alert_sensor, freshness_alert_sensor],
    resources={
        "database": DatabaseResource(url=_secret("KILLREPORT_DATABASE_URL")),
        "esi": EsiResource(),
        "transport": TransportResource(rabbitmq_url=_secret("KILLREPORT_RABBITMQ_URL")),
    },
    # The steps form a chain (checks aside) and do their concurrency inside (threads or workers):
    # a process per step would only add ~4 s of imports each and rebuild the connection pools.
    executor=dg.in_process_executor,
)
