"""The doctor's checks of the services the refresh uses: database, broker, ESI, the log folder."""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from killreport_assets.doctor.common import TIMEOUT_SECONDS, Check, describe, silenced
from killreport_assets.envvars import redact_url
from killreport_assets.esi import EsiConfig
from killreport_assets.settings import DEFAULT_ESI_CONTACT


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
        reason = describe(exc.orig)
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
        with silenced("pika"):  # the failure is this check's one line; pika would log a traceback too
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
                f"cannot connect to {redact_url(url)}: {describe(exc)}",
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


def check_esi(settings: EsiConfig) -> Check:
    """One cheap request (the alliance list) through the real client, with its User-Agent."""
    from killreport_assets.esi import EsiClient, EsiError
    from killreport_assets.esi.governor import EsiGovernor

    # One attempt with short timeouts, and no downtime pause (equal start and end turn it off): a
    # doctor reports, it does not wait.
    config = dataclasses.replace(
        settings,
        max_attempts=1,
        connect_timeout=5.0,
        read_timeout=TIMEOUT_SECONDS,
        downtime_start=settings.downtime_end,
    )
    started = time.monotonic()
    try:
        with EsiClient(config, governor=EsiGovernor(config)) as client:
            ids = client.alliance_ids().value
    except EsiError as exc:
        return Check(
            "esi",
            False,
            f"{settings.base_url}: {exc}",
            "check KILLREPORT_ESI_BASE_URL and that this host reaches it (DNS, proxy, firewall); during "
            "ESI's daily downtime (11:00 UTC) try again later",
        )
    if not ids:
        return Check(
            "esi",
            False,
            f"{settings.base_url} listed no alliances",
            "KILLREPORT_ESI_BASE_URL must be ESI's root, e.g. https://esi.evetech.net",
        )
    seconds = time.monotonic() - started
    return Check("esi", True, f"{settings.base_url} listed {len(ids)} alliances in {seconds:.1f} s")


def check_esi_contact(settings: EsiConfig) -> Check:
    if settings.contact == DEFAULT_ESI_CONTACT:
        return Check(
            "esi contact",
            False,
            "the User-Agent names no operator (KILLREPORT_ESI_CONTACT is not set)",
            "set KILLREPORT_ESI_CONTACT to an email address or EVE character where CCP can reach you",
        )
    return Check("esi contact", True, f"the User-Agent carries {settings.contact!r}")


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
