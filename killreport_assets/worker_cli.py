"""The RabbitMQ-mode commands: `killreport worker`, `killreport queues`, `killreport enqueue`.

Each command has a `configure_*_parser` and a `run_*`, registered in `cli.py`. Heavy imports (the
storage, the ESI client) happen inside `run_*`, so `killreport --help` stays fast.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import signal
import sys
from types import FrameType

from killreport_assets.cli import esi_id, positive_int
from killreport_assets.envvars import redact_url
from killreport_assets.registry import REGISTRY
from killreport_assets.settings import BrokerSettings, Settings, SettingsError, database_url
from killreport_assets.transport.topology import lane_names

log = logging.getLogger("killreport_assets.worker")


def _broker(command: str) -> tuple[BrokerSettings, str]:
    """The broker settings and URL of a command that needs RabbitMQ."""
    broker = BrokerSettings.from_env()
    if broker.url is None:
        raise SettingsError(
            f"KILLREPORT_RABBITMQ_URL is not set: `killreport {command}` needs the broker, e.g. "
            "amqp://guest:guest@127.0.0.1:5672/%2F"
        )
    return broker, broker.url


# -- killreport worker ------------------------------------------------------------------------------


def configure_worker_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--queues",
        type=_lane_list,
        default=None,
        help=f"comma-separated queues to consume (default: all: {', '.join(lane_names())})",
    )
    parser.add_argument(
        "--concurrency",
        type=positive_int,
        default=None,
        help="jobs run in parallel, and the prefetch of each nightly queue; enrichment gets a quarter "
        "more on top (default: KILLREPORT_WORKER_CONCURRENCY, else as KILLREPORT_ESI_CONCURRENCY)",
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=30.0,
        help="on SIGTERM/SIGINT, seconds to finish in-flight jobs before returning them (default 30)",
    )


def run_worker(args: argparse.Namespace) -> int:
    from killreport_assets.esi import EsiClient
    from killreport_assets.storage import DatabaseError, Storage
    from killreport_assets.transport.amqp import BrokerConfigError
    from killreport_assets.transport.topology import Topology
    from killreport_assets.transport.worker import Worker, WorkerOptions

    _broker("worker")
    settings = Settings.from_env()
    assert settings.rabbitmq_url is not None
    topology = Topology(settings.broker.retry_delay)
    options = WorkerOptions(
        lanes=topology.select(args.queues or lane_names()),
        concurrency=args.concurrency or settings.worker.concurrency,
        max_attempts=settings.worker.max_attempts,
        summary_interval=settings.refresh.progress_interval,
        drain_timeout=args.drain_timeout,
        lease_ttl=settings.refresh.lease_ttl,
    )
    try:
        # job threads use this pool when an attempt is retried or a lease re-read, beside the writer;
        # their ledger and cache reads go through the statement pool (at most 10)
        storage = Storage.open(settings.database_url, pool_size=options.concurrency + 2)
    except DatabaseError as exc:
        print(f"killreport worker: {exc}", file=sys.stderr)
        return 2
    client = EsiClient(settings.esi, storage.cache)
    storage.coordinate(client, f"killreport worker {os.getpid()}")
    worker = Worker(settings.rabbitmq_url, topology, storage, client, options)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if signum_seen:
            log.warning("second %s: returning in-flight jobs now", signal.Signals(signum).name)
            worker.abandon()
            return
        signum_seen.append(signum)
        log.info("%s: stopping", signal.Signals(signum).name)
        worker.stop()

    signum_seen: list[int] = []
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info(
        "killreport worker: broker %s, database %s, ESI %s",
        redact_url(settings.rabbitmq_url),
        redact_url(settings.database_url),
        settings.esi.base_url,
    )
    try:
        worker.run()
    except BrokerConfigError as exc:
        print(f"killreport worker: configuration error: {exc}", file=sys.stderr)
        return 2
    finally:
        client.close()
        storage.dispose()
    log.info("killreport worker stopped")
    return 0


# -- killreport queues ------------------------------------------------------------------------------


def configure_queues_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--refresh-id", default=None, help="show this refresh (default: the latest nightly one)"
    )


def run_queues(args: argparse.Namespace) -> int:
    import pika.exceptions

    from killreport_assets.storage import Storage
    from killreport_assets.transport.amqp import broker_problem
    from killreport_assets.transport.monitor import (
        enrichment_refresh_id,
        lane_counts,
        latest_nightly_refresh,
        refresh_report,
    )
    from killreport_assets.transport.topology import Topology

    broker, url = _broker("queues")
    try:
        counts, problem = lane_counts(url, Topology(broker.retry_delay), broker.management_url)
    except (pika.exceptions.AMQPError, OSError) as exc:
        print(f"killreport queues: {broker_problem(exc, url)}", file=sys.stderr)
        return 1
    print(f"RabbitMQ {redact_url(url)}")
    header = ("queue", "ready", "unacked", "consumers", "retrying", "dead-lettered")
    rows = [
        (
            c.lane.queue,
            str(c.ready),
            "?" if c.unacked is None else str(c.unacked),
            str(c.consumers),
            str(c.retrying),
            str(c.dead_lettered),
        )
        for c in counts
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print(
            "  "
            + "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    if problem:
        print(f"  ({problem})")

    storage = Storage.open(database_url(), pool_size=1)
    try:
        nightly = args.refresh_id or latest_nightly_refresh(storage)
        enrichment = enrichment_refresh_id(dt.datetime.now(dt.UTC).date())
        for title, refresh_id in (("refresh", nightly), ("enrichment today", enrichment)):
            reports = refresh_report(storage, refresh_id) if refresh_id else []
            print(f"{title} {refresh_id or ''}".rstrip() + (":" if reports else ": nothing recorded"))
            for step, line in reports:
                print(f"  {step:<22} {line}")
    finally:
        storage.dispose()
    return 0


# -- killreport enqueue -----------------------------------------------------------------------------


def configure_enqueue_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "kind",
        choices=REGISTRY.names_and_aliases(),
        help=f"what the IDs are: {', '.join(REGISTRY.names_and_aliases())} (singular names are aliases)",
    )
    parser.add_argument("ids", nargs="+", type=esi_id, metavar="ID", help="entity IDs to refresh now")
    parser.add_argument(
        "--refresh-id",
        default=None,
        help="the ledger refresh id the jobs are recorded under (default: enrichment-<UTC date>)",
    )


def run_enqueue(args: argparse.Namespace) -> int:
    from killreport_assets.jobs import Job
    from killreport_assets.transport.base import TransportError
    from killreport_assets.transport.monitor import enrichment_refresh_id
    from killreport_assets.transport.rabbitmq import enqueue_enrichment

    broker, url = _broker("enqueue")
    refresh_id = args.refresh_id or enrichment_refresh_id(dt.datetime.now(dt.UTC).date())
    kind = REGISTRY.get(args.kind)
    jobs = [Job(refresh_id, kind, i) for i in dict.fromkeys(args.ids)]
    try:
        consumers = enqueue_enrichment(url, broker.retry_delay, jobs)
    except TransportError as exc:
        print(f"killreport enqueue: {exc}", file=sys.stderr)
        return 1
    print(f"queued {len(jobs)} {args.kind} job(s) for enrichment (refresh id {refresh_id})")
    if consumers == 0:
        print(
            "warning: no worker consumes the enrichment queue yet; start `killreport worker`", file=sys.stderr
        )
    return 0


def _lane_list(raw: str) -> list[str]:
    names = [name.strip() for name in raw.split(",") if name.strip()]
    unknown = sorted(set(names) - set(lane_names()))
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"choose from {','.join(lane_names())} (got {raw!r})")
    return names
