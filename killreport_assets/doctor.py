"""`killreport doctor`: the deploy checklist as a command.

Run it with the environment the refresh runs with (in Docker: `docker compose exec user-code
killreport doctor --webserver-url http://webserver:3000`), so that a pass means the refresh can
reach everything it needs. Each check prints one line, `ok` or `FAILED` with how to fix it, and the
exit status is 1 when any failed, so a deployment script can gate on it. It only looks: no migrations,
no queue declarations (opening the Dagster instance creates Dagster's own tables if they are missing,
and the log folder is created, as the program itself would do).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from killreport_assets.settings import DEFAULT_ESI_CONTACT, Settings, SettingsError, redact_url

# The daemon writes a heartbeat per daemon every 30 s; a few missed ones mean it is not running.
HEARTBEAT_TOLERANCE_SECONDS = 120.0
TIMEOUT_SECONDS = 10.0

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


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        if self.ok:
            return f"ok      {self.name}: {self.detail}"
        return f"FAILED  {self.name}: {self.detail} -> fix: {self.fix}"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--webserver-url",
        default=None,
        help="where this host reaches the Dagster webserver (default: KILLREPORT_DAGSTER_UI_URL); in "
        "Docker Compose, http://webserver:3000",
    )


def run(args: argparse.Namespace) -> int:
    checks = []
    for check in run_checks(webserver_url=args.webserver_url):
        print(check.line(), flush=True)
        checks.append(check)
    failed = sum(not check.ok for check in checks)
    print(f"doctor: {failed} of {len(checks)} checks failed" if failed else f"doctor: all {len(checks)} ok")
    return 1 if failed else 0


def run_checks(*, webserver_url: str | None = None) -> Iterator[Check]:
    """Every check, in checklist order, as it completes (each one bounded by a timeout). Everything
    is read from the environment, as the refresh and Dagster read it."""
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        yield Check("configuration", False, str(exc), "correct that variable (README, Configuration)")
        return
    mode = "embedded mode" if settings.rabbitmq_url is None else "RabbitMQ mode"
    yield Check("configuration", True, mode)
    yield check_database(settings.database_url)
    if settings.rabbitmq_url is not None:
        yield from check_broker(settings.rabbitmq_url, work_queues(settings))
    yield check_esi(settings)
    yield check_esi_contact(settings)
    yield from check_dagster(webserver_url or settings.dagster_ui_url, _schedule_name(settings))
    if settings.log.file is not None:
        yield check_log_folder(settings.log.file)


def work_queues(settings: Settings) -> list[str]:
    """The queues workers consume; the RabbitMQ topology is the one source of their names."""
    from killreport_assets.transport.topology import Topology

    return [lane.queue for lane in Topology(settings.retry_delay).lanes.values()]


def check_database(url: str) -> Check:
    from killreport_assets.storage.database import current_revision, head_revision, sqlalchemy_url

    shown = redact_url(url)
    real = sqlalchemy_url(url)
    if real.startswith("sqlite"):
        path = sa.engine.make_url(real).database
        if path and path != ":memory:" and not Path(path).exists():
            return Check(
                "database", False, f"{shown} does not exist", "run `killreport migrate` to create it"
            )
        engine = sa.create_engine(real)
    else:
        engine = sa.create_engine(real, connect_args={"connect_timeout": int(TIMEOUT_SECONDS)})
    try:
        with engine.connect() as connection:
            current = current_revision(connection)
    except sa.exc.DBAPIError as exc:
        reason = _describe(exc.orig)
        return Check("database", False, f"cannot open {shown}: {reason}", _database_fix(reason))
    finally:
        engine.dispose()
    head = head_revision()
    if current != head:
        return Check(
            "database",
            False,
            f"{shown} has schema revision {current or 'none'}, this version needs {head}",
            "run `killreport migrate` (a refresh also migrates before it starts)",
        )
    return Check("database", True, f"{shown} reachable, schema at revision {head}")


def _database_fix(reason: str) -> str:
    if "does not exist" in reason:
        return "create the database (`createdb -h HOST -U USER NAME`) or correct KILLREPORT_DATABASE_URL"
    if "authentication" in reason or "password" in reason:
        return "correct the user and password in KILLREPORT_DATABASE_URL"
    return "start PostgreSQL (`docker compose up -d postgres`) or correct the host in KILLREPORT_DATABASE_URL"


def check_broker(url: str, queues: list[str]) -> Iterator[Check]:
    """The broker, then one line per work queue: it exists and at least one worker consumes it."""
    import pika
    import pika.exceptions

    from killreport_assets.transport.amqp import config_error, parameters

    params = parameters(url, "doctor")
    params.connection_attempts = 1
    params.socket_timeout = TIMEOUT_SECONDS
    params.stack_timeout = TIMEOUT_SECONDS
    try:
        with _silenced("pika"):  # the failure is this check's one line; pika would log a traceback too
            connection = pika.BlockingConnection(params)
    except (pika.exceptions.AMQPError, OSError) as exc:
        problem = config_error(exc, url)
        if problem is not None:
            yield Check(
                "broker",
                False,
                str(problem),
                "correct the user, password or vhost in KILLREPORT_RABBITMQ_URL",
            )
        else:
            yield Check(
                "broker",
                False,
                f"cannot connect to {redact_url(url)}: {_describe(exc)}",
                "start RabbitMQ (`docker compose up -d rabbitmq`) or correct KILLREPORT_RABBITMQ_URL "
                "(unset it to run in embedded mode)",
            )
        return
    try:
        yield Check("broker", True, f"{redact_url(url)} reachable")
        for queue in queues:
            yield _check_queue(connection, queue)
    finally:
        connection.close()


def _check_queue(connection: Any, queue: str) -> Check:
    import pika.exceptions

    name = f"queue {queue}"
    start_workers = (
        "start workers: `killreport worker` (Docker: `docker compose up -d --scale worker=N worker`)"
    )
    channel = connection.channel()
    try:
        declared = channel.queue_declare(queue, passive=True)
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code == 404:
            return Check(name, False, "does not exist", f"{start_workers}; the first one declares the queues")
        return Check(
            name, False, f"{exc.reply_code} {exc.reply_text}", "check the vhost permissions of this user"
        )
    if channel.is_open:
        channel.close()
    consumers, ready = declared.method.consumer_count, declared.method.message_count
    if consumers == 0:
        return Check(name, False, f"no worker consumes it ({ready} messages ready)", start_workers)
    return Check(name, True, f"{consumers} consumer(s), {ready} messages ready")


def check_esi(settings: Settings) -> Check:
    """One cheap request (the alliance list) through the real client, with its User-Agent."""
    from killreport_assets.esi import EsiClient, EsiError
    from killreport_assets.esi.governor import EsiGovernor
    from killreport_assets.runtime import esi_config

    # One attempt with short timeouts, and no downtime pause (equal start and end turn it off): a
    # doctor reports, it does not wait.
    base = esi_config(settings)
    config = dataclasses.replace(
        base,
        max_attempts=1,
        connect_timeout=5.0,
        read_timeout=TIMEOUT_SECONDS,
        downtime_start=base.downtime_end,
    )
    started = time.monotonic()
    try:
        with EsiClient(config, governor=EsiGovernor(config)) as client:
            ids = client.alliance_ids().value
    except EsiError as exc:
        return Check(
            "esi",
            False,
            f"{settings.esi_base_url}: {exc}",
            "check KILLREPORT_ESI_BASE_URL and that this host reaches it (DNS, proxy, firewall); during "
            "ESI's daily downtime (11:00 UTC) try again later",
        )
    if not ids:
        return Check(
            "esi",
            False,
            f"{settings.esi_base_url} listed no alliances",
            "KILLREPORT_ESI_BASE_URL must be ESI's root, e.g. https://esi.evetech.net",
        )
    seconds = time.monotonic() - started
    return Check("esi", True, f"{settings.esi_base_url} listed {len(ids)} alliances in {seconds:.1f} s")


def check_esi_contact(settings: Settings) -> Check:
    if settings.esi_contact == DEFAULT_ESI_CONTACT:
        return Check(
            "esi contact",
            False,
            "the User-Agent names no operator (KILLREPORT_ESI_CONTACT is not set)",
            "set KILLREPORT_ESI_CONTACT to an email address or EVE character where CCP can reach you",
        )
    return Check("esi contact", True, f"the User-Agent carries {settings.esi_contact!r}")


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
            f"{home}/dagster.yaml does not load: {_describe(exc)}",
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
            yield Check("dagster webserver", False, f"{webserver_url}: {_describe(exc)}", fix)
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


def check_log_folder(path: Path) -> Check:
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
        if path.exists() and not os.access(path, os.W_OK):
            raise PermissionError(f"{path} is read-only")
    except OSError as exc:
        return Check(
            "log folder",
            False,
            f"{folder} is not writable: {exc.strerror or exc}",
            "create it, writable by the user running killreport, or change KILLREPORT_LOG_FILE",
        )
    return Check("log folder", True, f"{folder} writable")


def _schedule_name(settings: Settings) -> str:
    from killreport_assets.schedules import build_daily_refresh_schedule

    return build_daily_refresh_schedule(settings).name


def _is_temporary(folder: Path) -> bool:
    resolved = folder.resolve()
    return resolved.is_relative_to(Path(tempfile.gettempdir()).resolve()) or any(
        part.startswith(".tmp_dagster_home_") for part in resolved.parts
    )


@contextmanager
def _silenced(logger_name: str) -> Iterator[None]:
    logger = logging.getLogger(logger_name)
    previous = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(previous)


def _describe(exc: BaseException) -> str:
    """The first line of the innermost error: pika wraps the socket error in two layers of its own."""
    while True:
        inner = exc.args[0] if exc.args else getattr(exc, "exception", None)
        if not isinstance(inner, BaseException):
            break
        exc = inner
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
