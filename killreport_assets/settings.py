"""Every environment variable the program reads, parsed and validated in one place.

A wrong value stops the program at start with a message that names the variable and says what
would be valid, instead of surfacing later as an obscure failure deep inside a run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

DEFAULT_ESI_BASE_URL = "https://esi.evetech.net"
DEFAULT_ESI_CONTACT = "+https://github.com/killreport/killreport_assets"
DEFAULT_DATABASE_FILE = "killreport.db"
DEFAULT_DAGSTER_UI_URL = "http://127.0.0.1:3000"
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

T = TypeVar("T")


class SettingsError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class StepTimeouts:
    """How long each ESI step may take before its asset fails (seconds)."""

    alliances: float = 30 * 60
    alliance_corporations: float = 60 * 60
    corporations: float = 90 * 60


@dataclass(frozen=True)
class LogSettings:
    """How the `killreport` commands log (Dagster runs log to Dagster's event log instead).

    Read apart from `Settings` so that commands which do not need the refresh's settings (the
    simulator, the worker) can log before, and regardless of, those being valid.
    """

    format: str = "text"
    level: str = "INFO"
    file: Path | None = None
    max_bytes: int = 10 * 1024 * 1024
    backups: int = 5

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LogSettings:
        reader = _Reader(os.environ if environ is None else environ)
        return cls(
            format=reader.get("KILLREPORT_LOG_FORMAT", _choice(*LOG_FORMATS), "text"),
            level=reader.get("KILLREPORT_LOG_LEVEL", _choice(*LOG_LEVELS), "INFO"),
            file=reader.get("KILLREPORT_LOG_FILE", Path, None),
            max_bytes=reader.get("KILLREPORT_LOG_MAX_BYTES", _positive(int), 10 * 1024 * 1024),
            backups=reader.get("KILLREPORT_LOG_BACKUPS", _positive(int), 5),
        )


@dataclass(frozen=True)
class Settings:
    database_url: str
    rabbitmq_url: str | None = None
    esi_base_url: str = DEFAULT_ESI_BASE_URL
    esi_contact: str = DEFAULT_ESI_CONTACT
    esi_max_rps: float = 50.0
    esi_concurrency: int = 20
    esi_error_limit_margin: int = 0
    embedded_workers: int = 20
    schedule_hour: int = 2
    step_timeouts: StepTimeouts = field(default_factory=StepTimeouts)
    stall_timeout: float = 10 * 60
    progress_interval: float = 30.0
    failure_threshold: float = 0.01
    worker_concurrency: int = 20
    retry_delay: int = 30
    max_attempts: int = 3
    rabbitmq_management_url: str | None = None
    alert_webhook_url: str | None = None
    dagster_ui_url: str = DEFAULT_DAGSTER_UI_URL
    log: LogSettings = field(default_factory=LogSettings)

    def __post_init__(self) -> None:
        margin, concurrency = self.esi_error_limit_margin, self.esi_concurrency
        if margin and margin < concurrency:
            raise SettingsError(
                f"KILLREPORT_ESI_ERROR_LIMIT_MARGIN={margin} is below KILLREPORT_ESI_CONCURRENCY={concurrency}: "
                "every in-flight request may fail, so the margin must cover at least this process's"
            )

    @property
    def embedded(self) -> bool:
        return self.rabbitmq_url is None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        reader = _Reader(env)
        return cls(
            database_url=reader.get("KILLREPORT_DATABASE_URL", _database_url, default_database_url(env)),
            rabbitmq_url=reader.get("KILLREPORT_RABBITMQ_URL", _amqp_url, None),
            esi_base_url=reader.get("KILLREPORT_ESI_BASE_URL", _http_url, DEFAULT_ESI_BASE_URL),
            esi_contact=reader.get("KILLREPORT_ESI_CONTACT", _non_empty, DEFAULT_ESI_CONTACT),
            esi_max_rps=reader.get("KILLREPORT_ESI_MAX_RPS", _positive(float), 50.0),
            esi_concurrency=reader.get("KILLREPORT_ESI_CONCURRENCY", _positive(int), 20),
            esi_error_limit_margin=reader.get("KILLREPORT_ESI_ERROR_LIMIT_MARGIN", _error_margin, 0),
            embedded_workers=reader.get("KILLREPORT_EMBEDDED_WORKERS", _positive(int), 20),
            schedule_hour=reader.get("KILLREPORT_SCHEDULE_HOUR", _hour, 2),
            step_timeouts=StepTimeouts(
                alliances=reader.get("KILLREPORT_ALLIANCES_TIMEOUT_MINUTES", _minutes, 30 * 60),
                alliance_corporations=reader.get(
                    "KILLREPORT_ALLIANCE_CORPORATIONS_TIMEOUT_MINUTES", _minutes, 60 * 60
                ),
                corporations=reader.get("KILLREPORT_CORPORATIONS_TIMEOUT_MINUTES", _minutes, 90 * 60),
            ),
            stall_timeout=reader.get("KILLREPORT_STALL_TIMEOUT_SECONDS", _positive(float), 600.0),
            progress_interval=reader.get("KILLREPORT_PROGRESS_INTERVAL_SECONDS", _positive(float), 30.0),
            failure_threshold=reader.get("KILLREPORT_FAILURE_THRESHOLD", _fraction, 0.01),
            worker_concurrency=reader.get("KILLREPORT_WORKER_CONCURRENCY", _positive(int), 20),
            retry_delay=reader.get("KILLREPORT_RETRY_DELAY_SECONDS", _positive(int), 30),
            max_attempts=reader.get("KILLREPORT_MAX_ATTEMPTS", _positive(int), 3),
            rabbitmq_management_url=reader.get("KILLREPORT_RABBITMQ_MANAGEMENT_URL", _http_url, None),
            # A webhook URL is a credential (its path is the secret): never echoed, even when invalid.
            alert_webhook_url=reader.get("KILLREPORT_ALERT_WEBHOOK_URL", _webhook_url, None, secret=True),
            dagster_ui_url=reader.get("KILLREPORT_DAGSTER_UI_URL", _http_url, DEFAULT_DAGSTER_UI_URL),
            log=LogSettings.from_env(env),
        )


def default_database_url(environ: Mapping[str, str]) -> str:
    """SQLite in `$DAGSTER_HOME` when set (so the UI and CLI share it), else the working directory."""
    home = environ.get("DAGSTER_HOME")
    folder = Path(home) if home else Path.cwd()
    return f"sqlite:///{(folder / DEFAULT_DATABASE_FILE).resolve()}"


def redact_url(url: str) -> str:
    """The URL with any password replaced, for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


class _Reader:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self._env = environ

    def get(self, name: str, parse: Callable[[str], T], default: T, *, secret: bool = False) -> T:
        raw = self._env.get(name)
        if raw is None or raw.strip() == "":
            return default
        try:
            return parse(raw.strip())
        except (TypeError, ValueError) as exc:
            shown = "<hidden>" if secret else redact_url(raw) if "://" in raw else raw
            raise SettingsError(f"{name}={shown!r} is invalid: {exc}") from None


def _non_empty(raw: str) -> str:
    return raw


def _error_margin(raw: str) -> int:
    value = int(raw)
    if not 0 <= value < 100:
        raise ValueError(
            "expected 0 (derive it from KILLREPORT_ESI_CONCURRENCY) or the in-flight requests of every "
            "process on this IP together, below ESI's 100 errors per window"
        )
    return value


def _positive(kind: Callable[[str], T]) -> Callable[[str], T]:
    def parse(raw: str) -> T:
        try:
            value = kind(raw)
        except ValueError:
            raise ValueError(f"expected a positive {kind.__name__}") from None
        if not value > 0:  # type: ignore[operator]
            raise ValueError(f"expected a positive {kind.__name__}")
        return value

    return parse


def _choice(*choices: str) -> Callable[[str], str]:
    """One of `choices`, matched case-insensitively, returned as spelled in `choices`."""

    def parse(raw: str) -> str:
        for choice in choices:
            if raw.lower() == choice.lower():
                return choice
        raise ValueError(f"expected one of {', '.join(choices)}")

    return parse


def _minutes(raw: str) -> float:
    return _positive(float)(raw) * 60


def _fraction(raw: str) -> float:
    value = float(raw)
    if not 0 <= value < 1:
        raise ValueError("expected a fraction between 0 and 1, e.g. 0.01 for 1%")
    return value


def _hour(raw: str) -> int:
    value = int(raw)
    if not 0 <= value <= 23:
        raise ValueError("expected an hour of the day, 0-23 (UTC)")
    return value


def _http_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("expected an http(s) URL such as https://esi.evetech.net")
    return raw.rstrip("/")


def _webhook_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("expected the http(s) URL of a Slack or Discord incoming webhook")
    return raw


def _amqp_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("amqp", "amqps") or not parts.hostname:
        raise ValueError("expected an AMQP URL such as amqp://guest:guest@127.0.0.1:5672/%2F")
    return raw


def _database_url(raw: str) -> str:
    scheme = urlsplit(raw).scheme.split("+", 1)[0]
    if scheme not in ("postgresql", "postgres", "sqlite"):
        raise ValueError("expected postgresql://user:pass@host:port/db or sqlite:///path/to/file.db")
    return raw
