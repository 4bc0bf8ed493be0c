"""Alerts through one Slack- and Discord-compatible webhook: one post per failed run, and one per
asset that went stale (not materialized within its freshness policy's fail window).

The daemon evaluates it for every failed run of this code location (the schedule's, the UI's and
the CLI's alike, when they share the instance). Delivery is best effort: a webhook that times out,
answers an error or refuses the connection is logged and skipped, so the sensor loop and the next
alert are never held up. The webhook URL is a credential (whoever has it can post to the channel),
so it is only ever logged as scheme://host/…
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import dagster as dg
import httpx

from killreport_assets.assets import ALL_ASSETS
from killreport_assets.assets.catalog import FRESHNESS
from killreport_assets.settings import AlertSettings

if TYPE_CHECKING:
    from dagster._utils.error import SerializableErrorInfo

WEBHOOK_TIMEOUT_SECONDS = 5.0
# Discord rejects a message over 2,000 characters; Slack takes far more, so Discord sets the size.
MESSAGE_LIMIT = 2000
# Dagster names the jobs it makes up for ad-hoc asset runs ("Materialize all", `materialize`) "__…".
IMPLICIT_JOB_PREFIX = "__"
ASSET_KEYS = [asset.key for asset in ALL_ASSETS]


@dataclass(frozen=True)
class FailureAlert:
    run_id: str
    job: str
    steps: Sequence[str]
    error: str
    run_url: str
    schedule: str | None = None

    def text(self) -> str:
        origin = f", launched by schedule {self.schedule}" if self.schedule else ""
        head = [f"killreport: {self.job} run {self.run_id[:8]} failed{origin}"]
        if self.steps:
            head.append(f"Failed step{'s' if len(self.steps) > 1 else ''}: {', '.join(self.steps)}")
        tail = f"Run: {self.run_url}"
        room = MESSAGE_LIMIT - sum(len(line) + 1 for line in head) - len(tail) - len("Error: \n")
        error = self.error if len(self.error) <= room else self.error[: max(0, room - 1)] + "…"
        return "\n".join([*head, f"Error: {error}", tail])

    def payload(self) -> dict[str, str]:
        """Slack reads `text`, Discord `content`; each ignores the other's field."""
        text = self.text()
        return {"text": text, "content": text, "username": "killreport"}


def failure_alert(context: dg.RunFailureSensorContext, ui_url: str) -> FailureAlert:
    run = context.dagster_run
    steps = context.get_step_failure_events()
    if steps:
        error = _step_error(steps[0])
    else:  # the run failed outside any step: worker crash, max runtime, launch failure
        data = context.failure_event.event_specific_data
        cause: SerializableErrorInfo | None = getattr(data, "error", None)
        error = _innermost(cause) if cause is not None else (context.failure_event.message or "")
    job = "asset materialization" if run.job_name.startswith(IMPLICIT_JOB_PREFIX) else run.job_name
    return FailureAlert(
        run_id=run.run_id,
        job=job,
        steps=[event.step_key for event in steps if event.step_key],
        error=" ".join(error.split()),
        run_url=f"{ui_url.rstrip('/')}/runs/{run.run_id}",
        schedule=run.tags.get("dagster/schedule_name"),
    )


def post_alert(
    url: str, payload: Mapping[str, str], log: logging.Logger, *, timeout: float, what: str = "failure alert"
) -> bool:
    """POST `payload` to the webhook; True when it was accepted. Never raises for delivery problems."""
    where = redact_webhook(url)
    try:
        response = httpx.post(url, json=payload, timeout=timeout)
    except httpx.HTTPError as exc:
        # httpx messages can quote the URL, whose path is the secret.
        reason = str(exc).replace(url, where) or type(exc).__name__
        log.warning("%s not delivered to %s: %s (%s)", what, where, type(exc).__name__, reason)
        return False
    if not response.is_success:
        answer = response.text[:200].replace(url, where)
        log.warning("%s not delivered to %s: HTTP %d %s", what, where, response.status_code, answer)
        return False
    log.info("%s delivered to %s", what, where)
    return True


def redact_webhook(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}/…"


@dg.run_failure_sensor(
    name="failure_alert",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Posts every failed run to KILLREPORT_ALERT_WEBHOOK_URL (Slack or Discord); off when unset.",
)
def failure_alert_sensor(context: dg.RunFailureSensorContext) -> None:
    settings = AlertSettings.from_env()
    if settings.webhook_url is None:
        return
    alert = failure_alert(context, settings.dagster_ui_url)
    post_alert(settings.webhook_url, alert.payload(), context.log, timeout=WEBHOOK_TIMEOUT_SECONDS)


def _step_error(event: dg.DagsterEvent) -> str:
    data = event.step_failure_data
    if data.user_failure_data is not None and data.user_failure_data.description:
        return data.user_failure_data.description  # a dg.Failure: its description is the message
    if data.error is not None:
        return _innermost(data.error)
    return event.message or ""


def _innermost(error: SerializableErrorInfo) -> str:
    """The user's exception rather than Dagster's wrappers around it."""
    while error.cause is not None:
        error = error.cause
    return error.message.strip()


@dataclass(frozen=True)
class Stale:
    asset: str
    last: float | None  # epoch seconds of its latest materialization; None: never materialized

    def describe(self, now: float) -> str:
        return (
            f"{self.asset} (never materialized)"
            if self.last is None
            else (f"{self.asset} (last {(now - self.last) / 3600:.0f} h ago)")
        )


def stale_assets(
    instance: dg.DagsterInstance, keys: Sequence[dg.AssetKey], window: dt.timedelta, now: float, since: float
) -> list[Stale]:
    """Assets whose latest materialization (or `since`, when there was none) is older than `window`."""
    found = []
    for key in keys:
        event = instance.get_latest_materialization_event(key)
        last = None if event is None else event.timestamp
        if now - (since if last is None else last) > window.total_seconds():
            found.append(Stale(key.to_user_string(), last))
    return found


def freshness_alert(stale: Sequence[Stale], now: float, ui_url: str) -> dict[str, str]:
    hours = FRESHNESS.fail_window.to_timedelta().total_seconds() / 3600
    text = "\n".join(
        [
            f"killreport: {len(stale)} asset{'s are' if len(stale) > 1 else ' is'} stale "
            f"(not materialized within {hours:.0f} h): " + ", ".join(s.describe(now) for s in stale),
            "Check that the Dagster daemon runs (`killreport doctor`), that daily_refresh_schedule is "
            "RUNNING, and that the code location loads.",
            f"Assets: {ui_url.rstrip('/')}/assets",
        ]
    )
    return {"text": text, "content": text[:MESSAGE_LIMIT], "username": "killreport"}


@dg.sensor(
    name="freshness_alert",
    minimum_interval_seconds=600,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Posts to KILLREPORT_ALERT_WEBHOOK_URL once per asset that goes stale (its freshness policy's "
        "fail window passed without a materialization): a stopped schedule or a failing code location "
        "is noticed the next morning."
    ),
)
def freshness_alert_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    state = json.loads(context.cursor) if context.cursor else {}
    now = time.time()
    since = state.get("since", now)  # a new deployment is not stale before one window has passed
    stale = stale_assets(context.instance, ASSET_KEYS, FRESHNESS.fail_window.to_timedelta(), now, since)
    alerted: dict[str, float | None] = {
        asset: last for asset, last in state.get("alerted", {}).items() if asset in {s.asset for s in stale}
    }
    news = [s for s in stale if s.asset not in alerted or alerted[s.asset] != s.last]
    settings = AlertSettings.from_env()
    if news and settings.webhook_url is not None:
        payload = freshness_alert(news, now, settings.dagster_ui_url)
        if post_alert(
            settings.webhook_url,
            payload,
            context.log,
            timeout=WEBHOOK_TIMEOUT_SECONDS,
            what="freshness alert",
        ):
            alerted.update({s.asset: s.last for s in news})
    context.update_cursor(json.dumps({"since": since, "alerted": alerted}))
    return dg.SkipReason(
        "stale: " + ", ".join(s.asset for s in stale)
        if stale
        else "every asset is within its freshness policy"
    )
