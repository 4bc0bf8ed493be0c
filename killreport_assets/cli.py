"""The `killreport` command: simulator, demo, and maintenance commands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from killreport_assets.envvars import redact_url
from killreport_assets.errors import DatabaseError
from killreport_assets.logs import configure_logging
from killreport_assets.settings import LogSettings, SettingsError, database_url
from killreport_assets.version import __version__


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        configure_logging(LogSettings.from_env(), verbose=args.verbose)
        return int(args.run(args) or 0)
    except SettingsError as exc:
        print(f"killreport: configuration error: {exc}", file=sys.stderr)
        return 2
    except DatabaseError as exc:  # unreachable or unprepared database: one line, no traceback
        print(f"killreport {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def positive_int(raw: str) -> int:
    """An argparse type: a positive integer, or a one-line usage error naming the value."""
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {raw!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {raw!r}")
    return value


def esi_id(raw: str) -> int:
    """An argparse type: an ESI ID (a positive 64-bit integer), or a one-line usage error naming it."""
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 0 < value < 2**63:
        raise argparse.ArgumentTypeError(f"expected an ESI ID (a positive 64-bit integer), got {raw!r}")
    return value


# What each subcommand reads from the environment, for its --help (`killreport config` prints values).
READS: dict[str, tuple[str, ...]] = {
    "esi-sim": (),
    "demo": (
        "KILLREPORT_ESI_MAX_RPS, KILLREPORT_ESI_CONCURRENCY (how hard to push the simulator)",
        "DAGSTER_HOME (the run history; default ./killreport-demo/dagster)",
    ),
    "migrate": ("KILLREPORT_DATABASE_URL (the database)", "DAGSTER_HOME (where the default SQLite file is)"),
    "config": ("every KILLREPORT_* variable",),
    "worker": (
        "KILLREPORT_RABBITMQ_URL (required: the broker)",
        "KILLREPORT_DATABASE_URL",
        "KILLREPORT_ESI_BASE_URL, KILLREPORT_ESI_CONTACT, KILLREPORT_ESI_MAX_RPS (the whole fleet's budget), "
        "KILLREPORT_ESI_CONCURRENCY, KILLREPORT_ESI_ERROR_LIMIT_MARGIN, KILLREPORT_ESI_DOWNTIME",
        "KILLREPORT_WORKER_CONCURRENCY (--concurrency's default)",
        "KILLREPORT_MAX_ATTEMPTS, KILLREPORT_RETRY_DELAY_SECONDS, KILLREPORT_STEP_LEASE_SECONDS",
        "KILLREPORT_PROGRESS_INTERVAL_SECONDS (its summary lines)",
        "KILLREPORT_LOG_FORMAT, KILLREPORT_LOG_LEVEL, KILLREPORT_LOG_FILE",
    ),
    "queues": (
        "KILLREPORT_RABBITMQ_URL (required)",
        "KILLREPORT_RABBITMQ_MANAGEMENT_URL (the unacked counts)",
        "KILLREPORT_DATABASE_URL (the ledger's progress)",
        "KILLREPORT_RETRY_DELAY_SECONDS (which retry queues)",
    ),
    "enqueue": ("KILLREPORT_RABBITMQ_URL (required)", "KILLREPORT_DATABASE_URL (the jobs' ledger rows)"),
    "doctor": (
        "KILLREPORT_DATABASE_URL, KILLREPORT_RABBITMQ_URL, KILLREPORT_ESI_BASE_URL",
        "KILLREPORT_DAGSTER_UI_URL (--webserver-url's default)",
        "DAGSTER_HOME",
    ),
}


def epilog(command: str) -> str | None:
    reads = READS[command]
    return "environment: " + "; ".join(reads) + "." if reads else None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="killreport", description=__doc__)
    parser.add_argument("--version", action="version", version=f"killreport {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from killreport_assets.simulator import cli as simulator_cli

    sim = commands.add_parser("esi-sim", help="serve a simulated ESI on loopback", epilog=epilog("esi-sim"))
    simulator_cli.configure_parser(sim)
    sim.set_defaults(run=simulator_cli.run)

    from killreport_assets import demo

    demo_parser = commands.add_parser(
        "demo",
        help="start the simulator and run a full refresh in embedded mode (no internet needed)",
        epilog=epilog("demo"),
    )
    demo.configure_parser(demo_parser)
    demo_parser.set_defaults(run=demo.run)

    migrate = commands.add_parser(
        "migrate",
        help="create or upgrade the application database schema (KILLREPORT_DATABASE_URL)",
        description="Create or upgrade the schema of the database KILLREPORT_DATABASE_URL names (default: "
        "SQLite in $DAGSTER_HOME or the working directory). Every process also does this when it opens "
        "the database; run it ahead to control when.",
        epilog=epilog("migrate"),
    )
    shown = migrate.add_mutually_exclusive_group()
    shown.add_argument(
        "--current",
        action="store_true",
        help="print the revision in place and the newest one; change nothing",
    )
    shown.add_argument(
        "--sql",
        action="store_true",
        help="print the SQL an upgrade would run on this database, for review; change nothing",
    )
    migrate.set_defaults(run=_migrate)

    config = commands.add_parser(
        "config",
        help="print the effective settings (KILLREPORT_* and defaults), secrets hidden",
        description="Every setting as the commands would use it: the KILLREPORT_* variables of this "
        "environment, or the defaults. Passwords and secret URL parameters are hidden.",
        epilog=epilog("config"),
    )
    config.set_defaults(run=_config)

    from killreport_assets import worker_cli

    for name, help_text, configure, run in (
        (
            "worker",
            "consume the RabbitMQ job queues and do the ESI work",
            worker_cli.configure_worker_parser,
            worker_cli.run_worker,
        ),
        (
            "queues",
            "queue depths, consumers, and the progress of the current refresh",
            worker_cli.configure_queues_parser,
            worker_cli.run_queues,
        ),
        (
            "enqueue",
            "on-demand (enrichment) refresh of given alliances or corporations",
            worker_cli.configure_enqueue_parser,
            worker_cli.run_enqueue,
        ),
    ):
        command = commands.add_parser(name, help=help_text, epilog=epilog(name))
        configure(command)
        command.set_defaults(run=run)

    from killreport_assets import doctor

    doctor_parser = commands.add_parser(
        "doctor",
        help="pre-flight: check database, broker, workers, ESI and Dagster; non-zero exit on failure",
        epilog=epilog("doctor"),
    )
    doctor.configure_parser(doctor_parser)
    doctor_parser.set_defaults(run=doctor.run)
    return parser


def _migrate(args: argparse.Namespace) -> int:
    from killreport_assets.storage import create_engine, migrate
    from killreport_assets.storage.database import head_revision, revision_in_place, upgrade_sql

    url = database_url()
    engine = create_engine(url, pool_size=1, migrated=False)  # --current and --sql only look
    try:
        if args.sql:
            sql = upgrade_sql(engine)
            print(
                sql or f"-- {redact_url(url)} is at the newest revision ({head_revision()}): nothing to run"
            )
        elif args.current:
            revision, head = revision_in_place(engine), head_revision()
            state = "up to date" if revision == head else "behind: run `killreport migrate` to upgrade"
            print(
                f"{redact_url(url)}: revision {revision or 'none (no schema yet)'}, newest {head} ({state})"
            )
        else:
            print(f"{redact_url(url)}: schema at revision {migrate(engine)}")
    finally:
        engine.dispose()
    return 0


def _config(_args: argparse.Namespace) -> int:
    from killreport_assets.settings import Settings, effective

    rows = effective(Settings.from_env())
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
