"""The doctor's checks of the Dagster side: one DAGSTER_HOME for webserver and daemon, the daemon's
heartbeats, the webserver, and the nightly schedule."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from killreport_assets.doctor.common import TIMEOUT_SECONDS, Check, describe

HEARTBEAT_TOLERANCE_SECONDS = 120.0

_DAGSTER_QUERY = """
{
  instance { daemonHealth { allDaemonStatuses { daemonType lastHeartbeatTime } } }
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        locationOrLoadError {
          __typename
          ... on RepositoryLocation {
            repositories {
              schedules {
                name cronSchedule executionTimezone
                scheduleState { status }
                futureTicks(limit: 1) { results { timestamp } }
              }
            }
          }
          ... on PythonError { message }
        }
      }
    }
    ... on PythonError { message }
  }
}
"""


def check_dagster(webserver_url: str, schedule: str) -> Iterator[Check]:
    """DAGSTER_HOME and its instance, the daemon writing into it, and the webserver reading the same
    instance (it sees the same daemon heartbeats) with the schedule loaded and running."""
    from dagster import DagsterInstance
    from dagster._core.instance.ref import InstanceRef

    home = os.environ.get("DAGSTER_HOME", "")
    home_fix = (
        "set DAGSTER_HOME to a folder holding deploy/dagster.yaml, the same for webserver, daemon and CLI"
    )
    if not home:
        yield Check(
            "dagster home", False, "DAGSTER_HOME is not set: Dagster uses a throw-away instance", home_fix
        )
        return
    if not Path(home).is_dir():
        yield Check("dagster home", False, f"DAGSTER_HOME={home} is not an existing directory", home_fix)
        return
    if not (Path(home) / "dagster.yaml").is_file():
        yield Check("dagster home", False, f"{home} has no dagster.yaml", "copy deploy/dagster.yaml there")
        return
    try:
        # Anything can go wrong here (invalid YAML, a missing DAGSTER_PG_* variable, the Dagster
        # database down), and every cause is reported the same way: as this check failing.
        instance = DagsterInstance.from_ref(InstanceRef.from_dir(home))
    except Exception as exc:
        yield Check(
            "dagster home",
            False,
            f"{home}/dagster.yaml does not load: {describe(exc)}",
            "correct dagster.yaml and the variables it reads (DAGSTER_PG_*); is the Dagster database up?",
        )
        return
    with instance:
        storage = type(instance.run_storage).__name__.removesuffix("RunStorage")
        if storage == "Sqlite" and _is_temporary(Path(instance.root_directory)):
            yield Check(
                "dagster home",
                False,
                f"SQLite storage in a temporary folder ({instance.root_directory}): lost on reboot",
                home_fix,
            )
            return
        yield Check("dagster home", True, f"{home}, {storage} storage")
        before = instance.get_daemon_heartbeats()
        yield _check_daemon(instance.get_required_daemon_types(), before)
        try:
            response = httpx.post(
                f"{webserver_url}/graphql", json={"query": _DAGSTER_QUERY}, timeout=TIMEOUT_SECONDS
            )
            response.raise_for_status()
            data = response.json()["data"]
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            fix = (
                "start the webserver with this DAGSTER_HOME (`docker compose up -d webserver`, locally "
                "`dagster dev -w workspace.yaml`), or pass --webserver-url / set KILLREPORT_DAGSTER_UI_URL"
            )
            yield Check("dagster webserver", False, f"{webserver_url}: {describe(exc)}", fix)
            return
        after = instance.get_daemon_heartbeats()
    yield _check_webserver(webserver_url, data, before, after)
    yield _check_schedule(data, schedule)


def _check_daemon(required: Sequence[str], heartbeats: Mapping[str, Any]) -> Check:
    fix = "run exactly one `dagster-daemon run` with this DAGSTER_HOME (`docker compose up -d daemon`)"
    now = time.time()
    silent = [
        d
        for d in required
        if d not in heartbeats or now - heartbeats[d].timestamp > HEARTBEAT_TOLERANCE_SECONDS
    ]
    if silent:
        return Check("dagster daemon", False, f"no recent heartbeat from {', '.join(silent)}", fix)
    failing = {d: h.errors[0].message.strip() for d, h in heartbeats.items() if d in required and h.errors}
    if failing:
        daemon, error = next(iter(failing.items()))
        return Check("dagster daemon", False, f"{daemon} reports: {error}", "see the daemon's log")
    return Check("dagster daemon", True, f"{len(required)} daemons heartbeating into this instance")


def _check_webserver(
    url: str, data: dict[str, Any], before: Mapping[str, Any], after: Mapping[str, Any]
) -> Check:
    """The webserver shares this instance when it reads the heartbeats read here (before or after its
    answer, as one may land in between); another instance has other timestamps, or none."""
    seen = {
        status["daemonType"]: status["lastHeartbeatTime"]
        for status in data["instance"]["daemonHealth"]["allDaemonStatuses"]
        if status["lastHeartbeatTime"] is not None
    }
    fix = "give the webserver and the daemon the same DAGSTER_HOME and dagster.yaml"
    if not seen and not before:
        return Check("dagster webserver", False, f"{url}: no daemon heartbeats to compare yet", fix)
    mine = {daemon: {before[daemon].timestamp} for daemon in before}
    for daemon, heartbeat in after.items():
        mine.setdefault(daemon, set()).add(heartbeat.timestamp)
    differing = sorted(
        d for d in set(seen) | set(mine) if not any(abs(seen.get(d, -1) - t) < 1e-3 for t in mine.get(d, ()))
    )
    if differing:
        return Check(
            "dagster webserver",
            False,
            f"{url} reads another instance (daemon heartbeats differ: {', '.join(differing)})",
            fix,
        )
    return Check("dagster webserver", True, f"{url} reads this instance")


def _check_schedule(data: dict[str, Any], name: str) -> Check:
    check_name = f"schedule {name}"
    error, schedule = _find_schedule(data, name)
    if error is not None:
        return Check(
            check_name,
            False,
            error,
            "see Deployment in the UI; `dagster definitions validate -m killreport_assets` shows the error",
        )
    if schedule is None:
        return Check(
            check_name, False, "not loaded by the webserver", "point its workspace at killreport_assets"
        )
    status = schedule["scheduleState"]["status"]
    if status != "RUNNING":
        return Check(
            check_name,
            False,
            f"is {status}",
            f"start it in the UI (Automation), or `dagster schedule start {name} -w workspace.yaml`",
        )
    ticks = schedule["futureTicks"]["results"]
    upcoming = (
        f", next {time.strftime('%Y-%m-%d %H:%M', time.gmtime(ticks[0]['timestamp']))} UTC" if ticks else ""
    )
    return Check(
        check_name, True, f"RUNNING ({schedule['cronSchedule']} {schedule['executionTimezone']}{upcoming})"
    )


def _find_schedule(data: dict[str, Any], name: str) -> tuple[str | None, dict[str, Any] | None]:
    """(why the code cannot be inspected, the schedule named `name` as the webserver loaded it)."""
    workspace = data["workspaceOrError"]
    if workspace["__typename"] != "Workspace":
        return f"the workspace does not load: {workspace.get('message', '').strip()}", None
    for entry in workspace["locationEntries"]:
        location = entry["locationOrLoadError"] or {}
        if location.get("__typename") == "PythonError":
            return f"code location {entry['name']} failed to load: {location['message'].strip()}", None
        for repository in location.get("repositories", []):
            for schedule in repository["schedules"]:
                if schedule["name"] == name:
                    return None, schedule
    return None, None


def _is_temporary(folder: Path) -> bool:
    resolved = folder.resolve()
    return resolved.is_relative_to(Path(tempfile.gettempdir()).resolve()) or any(
        part.startswith(".tmp_dagster_home_") for part in resolved.parts
    )
