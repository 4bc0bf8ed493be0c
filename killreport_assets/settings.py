"""Every environment variable the program reads, parsed and validated in one place.

A wrong value stops the program at start with a message that names the variable and says what
would be valid, instead of surfacing later as an obscure failure deep inside a run.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from killreport_assets.envvars import (
    Reader,
    SettingsError,
    amqp_url,
    choice,
    database_url_value,
    fraction,
    hour,
    http_url,
    minutes,
    non_empty,
    non_negative_int,
    positive,
    redact_url,
    share,
    utc_window,
    webhook_url,
)
from killreport_assets.esi.config import EsiConfig, concurrency_for

if TYPE_CHECKING:
    from killreport_assets.registry import EntityKind

DEFAULT_ESI_CONTACT = "+https://github.com/killreport/killreport_assets"
DEFAULT_DATABASE_FILE = "killreport.db"
DEFAULT_DAGSTER_UI_URL = "http://127.0.0.1:3000"
DEFAULT_SCHEDULE_HOUR = 2
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

T = TypeVar("T")


@dataclass(frozen=True)
class LogSettings:
    """How the `killreport` commands log (Dagster runs log to Dagster's event log instead)."""

    format: str = "text"
    level: str = "INFO"
    file: Path | None = None
    max_bytes: int = 10 * 1024 * 1024
    backups: int = 5

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LogSettings:
        reader = Reader(environ)
        return cls(
            format=reader.get("KILLREPORT_LOG_FORMAT", choice(*LOG_FORMATS), cls.format),
            level=reader.get("KILLREPORT_LOG_LEVEL", choice(*LOG_LEVELS), cls.level),
            file=reader.get("KILLREPORT_LOG_FILE", Path, None),
            max_bytes=reader.get("KILLREPORT_LOG_MAX_BYTES", positive(int), cls.max_bytes),
            backups=reader.get("KILLREPORT_LOG_BACKUPS", positive(int), cls.backups),
        )


def esi_config(environ: Mapping[str, str] | None = None) -> EsiConfig:
    """The ESI client's configuration from the KILLREPORT_ESI_* variables. Its defaults and rules
    (e.g. the error margin's) are `EsiConfig`'s own, checked there once; this names the variables."""
    reader = Reader(environ)
    given = {
        "base_url": reader.get("KILLREPORT_ESI_BASE_URL", http_url, None),
        "contact": reader.get("KILLREPORT_ESI_CONTACT", non_empty, DEFAULT_ESI_CONTACT),
        "max_requests_per_second": reader.get("KILLREPORT_ESI_MAX_RPS", positive(float), None),
        "max_concurrency": esi_concurrency(reader),
        "error_limit_margin": reader.get("KILLREPORT_ESI_ERROR_LIMIT_MARGIN", non_negative_int, None),
    }
    downtime = reader.get("KILLREPORT_ESI_DOWNTIME", utc_window, None)
    if downtime is not None:
        given["downtime_start"], given["downtime_end"] = downtime
    try:
        return EsiConfig(**{name: value for name, value in given.items() if value is not None})
    except ValueError as exc:
        named = [f"{variable}={given[name]}" for name, variable in _ESI_VARIABLES.items() if name in str(exc)]
        raise SettingsError(f"{' and '.join(named) or 'KILLREPORT_ESI_*'}: {exc}") from None


def esi_concurrency(reader: Reader) -> int:
    """KILLREPORT_ESI_CONCURRENCY, else what the budget needs (`concurrency_for`). Also the default
    number of job threads (embedded pool, worker), so threads and requests in flight match."""
    given = reader.get("KILLREPORT_ESI_CONCURRENCY", positive(int), None)
    if given is not None:
        return given
    budget = reader.get("KILLREPORT_ESI_MAX_RPS", positive(float), EsiConfig.max_requests_per_second)
    return concurrency_for(budget)


# EsiConfig's fields as the variables that set them, for its error messages.
_ESI_VARIABLES = {
    "error_limit_margin": "KILLREPORT_ESI_ERROR_LIMIT_MARGIN",
    "max_concurrency": "KILLREPORT_ESI_CONCURRENCY",
    "contact": "KILLREPORT_ESI_CONTACT",
    "base_url": "KILLREPORT_ESI_BASE_URL",
}


@dataclass(frozen=True)
class RefreshSettings:
    """How the Dagster run drives a refresh: step timeouts (one per registered kind), stall
    detection, progress logging, the failure threshold, the embedded pool's size, and how long a
    step's lease outlives its last heartbeat (how soon a killed run's step can be taken over and its
    queued jobs are skipped)."""

    step_timeouts: Mapping[str, float] = field(default_factory=dict)
    stall_timeout: float = 10 * 60
    progress_interval: float = 30.0
    failure_threshold: float = 0.01
    max_close_share: float = 0.05
    revalidate_days: int = 7
    embedded_workers: int = concurrency_for(EsiConfig.max_requests_per_second)  # from_env: the budget's
    lease_ttl: float = 120.0  # seconds without a heartbeat after which a step's run counts as dead
    ledger_days: int = 30  # refresh ledger rows are kept this long
    cache_days: int = 30  # ESI answers not renewed for this long are dropped

    def step_timeout(self, kind: EntityKind) -> float:
        return self.step_timeouts.get(kind.name, kind.timeout_minutes * 60)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RefreshSettings:
        from killreport_assets.registry import REGISTRY

        reader = Reader(environ)
        return cls(
            step_timeouts={
                kind.name: reader.get(kind.timeout_variable, minutes, kind.timeout_minutes * 60)
                for kind in REGISTRY
            },
            stall_timeout=reader.get("KILLREPORT_STALL_TIMEOUT_SECONDS", positive(float), cls.stall_timeout),
            progress_interval=reader.get(
                "KILLREPORT_PROGRESS_INTERVAL_SECONDS", positive(float), cls.progress_interval
            ),
            failure_threshold=reader.get("KILLREPORT_FAILURE_THRESHOLD", fraction, cls.failure_threshold),
            max_close_share=reader.get("KILLREPORT_MAX_CLOSE_SHARE", share, cls.max_close_share),
            revalidate_days=reader.get("KILLREPORT_REVALIDATE_DAYS", positive(int), cls.revalidate_days),
            embedded_workers=reader.get("KILLREPORT_EMBEDDED_WORKERS", positive(int), None)
            or esi_concurrency(reader),
            lease_ttl=reader.get("KILLREPORT_STEP_LEASE_SECONDS", positive(float), cls.lease_ttl),
            ledger_days=reader.get("KILLREPORT_LEDGER_RETENTION_DAYS", positive(int), cls.ledger_days),
            cache_days=reader.get("KILLREPORT_ESI_CACHE_RETENTION_DAYS", positive(int), cls.cache_days),
        )

    def __post_init__(self) -> None:
        if self.cache_days <= self.revalidate_days:
            raise SettingsError(
                f"KILLREPORT_ESI_CACHE_RETENTION_DAYS={self.cache_days} must be more than "
                f"KILLREPORT_REVALIDATE_DAYS={self.revalidate_days}: otherwise the answers of corporations "
                "revalidated that rarely are dropped before they can save a request"
            )


@dataclass(frozen=True)
class BrokerSettings:
    """RabbitMQ, as the publishing run, the workers and `killreport queues` all see it."""

    url: str | None = None
    retry_delay: int = 30
    management_url: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> BrokerSettings:
        reader = Reader(environ)
        return cls(
            url=reader.get("KILLREPORT_RABBITMQ_URL", amqp_url, None),
            retry_delay=reader.get("KILLREPORT_RETRY_DELAY_SECONDS", positive(int), cls.retry_delay),
            management_url=reader.get("KILLREPORT_RABBITMQ_MANAGEMENT_URL", http_url, None),
        )


@dataclass(frozen=True)
class WorkerSettings:
    """What only `killreport worker` reads."""

    concurrency: int = concurrency_for(EsiConfig.max_requests_per_second)  # from_env: the budget's
    max_attempts: int = 3

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WorkerSettings:
        reader = Reader(environ)
        return cls(
            concurrency=reader.get("KILLREPORT_WORKER_CONCURRENCY", positive(int), None)
            or esi_concurrency(reader),
            max_attempts=reader.get("KILLREPORT_MAX_ATTEMPTS", positive(int), cls.max_attempts),
        )


@dataclass(frozen=True)
class AlertSettings:
    """What the failure-alert sensor reads, at each tick."""

    webhook_url: str | None = None
    dagster_ui_url: str = DEFAULT_DAGSTER_UI_URL

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AlertSettings:
        reader = Reader(environ)
        return cls(
            # A webhook URL is a credential (its path is the secret): never echoed, even when invalid.
            webhook_url=reader.get("KILLREPORT_ALERT_WEBHOOK_URL", webhook_url, None, secret=True),
            dagster_ui_url=reader.get("KILLREPORT_DAGSTER_UI_URL", http_url, cls.dagster_ui_url),
        )


def schedule_hour(environ: Mapping[str, str] | None = None) -> int:
    """The nightly run's UTC hour: the one setting the code location reads when it loads."""
    return Reader(environ).get("KILLREPORT_SCHEDULE_HOUR", hour, DEFAULT_SCHEDULE_HOUR)


def database_url(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return Reader(env).get("KILLREPORT_DATABASE_URL", database_url_value, default_database_url(env))


@dataclass(frozen=True)
class Settings:
    """Every setting, for the commands that need most of them (`doctor`, `demo`, `worker`); each
    group reads and validates its own variables, so a part of the program reads only its groups."""

    database_url: str
    esi: EsiConfig = field(default_factory=lambda: EsiConfig(contact=DEFAULT_ESI_CONTACT))
    refresh: RefreshSettings = field(default_factory=RefreshSettings)
    broker: BrokerSettings = field(default_factory=BrokerSettings)
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    log: LogSettings = field(default_factory=LogSettings)
    schedule_hour: int = DEFAULT_SCHEDULE_HOUR

    @property
    def rabbitmq_url(self) -> str | None:
        return self.broker.url

    @property
    def embedded(self) -> bool:
        return self.broker.url is None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        return cls(
            database_url=database_url(env),
            esi=esi_config(env),
            refresh=RefreshSettings.from_env(env),
            broker=BrokerSettings.from_env(env),
            worker=WorkerSettings.from_env(env),
            alerts=AlertSettings.from_env(env),
            log=LogSettings.from_env(env),
            schedule_hour=schedule_hour(env),
        )


def default_database_url(environ: Mapping[str, str]) -> str:
    """SQLite in `$DAGSTER_HOME` when set (so the UI and CLI share it), else the working directory."""
    home = environ.get("DAGSTER_HOME")
    folder = Path(home) if home else Path.cwd()
    return f"sqlite:///{(folder / DEFAULT_DATABASE_FILE).resolve()}"


def effective(settings: Settings) -> list[tuple[str, str]]:
    """Every setting as (dotted name, value) for `killreport config`: URLs without their
    passwords or secret parameters, the alert webhook (a credential in itself) only as set or not."""
    shown: list[tuple[str, str]] = []

    def walk(prefix: str, value: object) -> None:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            for item in dataclasses.fields(value):
                walk(f"{prefix}{item.name}.", getattr(value, item.name))
            return
        name = prefix.rstrip(".")
        if "webhook" in name:
            text = "(not set)" if value is None else "*** (set)"
        elif isinstance(value, str) and "://" in value:
            text = redact_url(value)
        elif isinstance(value, Mapping):
            text = ", ".join(f"{k}={v}" for k, v in value.items())
        else:
            text = "(not set)" if value is None else str(value)
        shown.append((name, text))

    walk("", settings)
    return shown
