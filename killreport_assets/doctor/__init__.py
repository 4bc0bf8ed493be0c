"""`killreport doctor`: the deploy checklist as a command.

Run it with the environment the refresh runs with (in Docker: `docker compose exec user-code
killreport doctor --webserver-url http://webserver:3000`), so that a pass means the refresh can
reach everything it needs. Each check prints one line, `ok` or `FAILED` with how to fix it, and the
exit status is 1 when any failed, so a deployment script can gate on it. It only looks: no migrations,
no queue declarations (opening the Dagster instance creates Dagster's own tables if they are missing,
and the log folder is created, as the program itself would do).
"""

import argparse
from collections.abc import Iterator

from killreport_assets.doctor.common import Check
from killreport_assets.doctor.dagster_home import check_dagster
from killreport_assets.doctor.services import (
    check_broker,
    check_database,
    check_esi,
    check_esi_contact,
    check_log_folder,
)
from killreport_assets.settings import Settings, SettingsError

__all__ = ["Check", "check_esi", "configure_parser", "run", "run_checks", "work_queues"]


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
    yield check_esi(settings.esi)
    yield check_esi_contact(settings.esi)
    yield from check_dagster(webserver_url or settings.alerts.dagster_ui_url, _schedule_name(settings))
    if settings.log.file is not None:
        yield check_log_folder(settings.log.file)


def work_queues(settings: Settings) -> list[str]:
    """The queues workers consume; the RabbitMQ topology is the one source of their names."""
    from killreport_assets.transport.topology import Topology

    return [lane.queue for lane in Topology(settings.broker.retry_delay).lanes.values()]


def _schedule_name(settings: Settings) -> str:
    from killreport_assets.schedules import build_daily_refresh_schedule

    return build_daily_refresh_schedule(settings.schedule_hour).name
