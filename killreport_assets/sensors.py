"""The run-failure alert: one Slack- and Discord-compatible webhook post per failed run.

The daemon evaluates it for every failed run of this code location (the schedule's, the UI's and
the CLI's alike, when they share the instance). Delivery is best effort: a webhook that times out,
answers an error or refuses the connection is logged and skipped, so the sensor loop and the next
alert are never held up. The webhook URL is a credential (whoever has it can post to the channel),
so it is only ever logged as scheme://host/…
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import dagster as dg
import httpx

from killreport_assets.settings import AlertSettings

if TYPE_CHECKING:
    from dagster._utils.error import SerializableErrorInfo

WEBHOOK_TIMEOUT_SECONDS = 5.0
# Discord rejects a message over 2,000 characters; Slack takes far more, so Discord sets the size.
MESSAGE_LIMIT = 2000
# Dagster names the jobs it makes up for ad-hoc asset runs ("Materialize all", `materialize`) "__…".
IMPLICIT_JOB_PREFIX = "__"


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


def post_alert(url: str, payload: Mapping[str, str], log: logging.Logger, *, timeout: float) -> bool:
    """POST `payload` to the webhook; True when it was accepted. Never raises for delivery problems."""
    where = redact_webhook(url)
    try:
        response = httpx.post(url, json=payload, timeout=timeout)
    except httpx.HTTPError as exc:
        # httpx messages can quote the URL, whose path is the secret.
        reason = str(exc).replace(url, where) or type(exc).__name__
        log.warning("failure alert not delivered to %s: %s (%s)", where, type(exc).__name__, reason)
        return False
    if not response.is_success:
        answer = response.text[:200].replace(url, where)
        log.warning("failure alert not delivered to %s: HTTP %d %s", where, response.status_code, answer)
        return False
    log.info("failure alert delivered to %s", where)
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
