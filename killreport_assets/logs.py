"""Logging for the `killreport` commands (worker, doctor, simulator, demo).

Text or JSON lines on stderr, where a process manager or Docker collects them, and optionally a
size-rotated file, so that no external logrotate is needed. Dagster runs do not use this: their
steps log through `context.log` into Dagster's event log, which the UI shows per run and step.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import logging.handlers
import sys
import time
from pathlib import Path

from killreport_assets.settings import LogSettings, SettingsError

TEXT_FORMAT = "%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s: %(message)s"
DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"
# Libraries that log every request, frame or plugin at INFO: only their warnings matter to an operator.
# pika also logs each failed connection attempt at ERROR with a traceback, while every failure reaches
# our code as an exception that is logged once with what happens next: keep only its critical lines.
QUIET_LOGGERS = {
    "httpx": logging.WARNING,
    "httpcore": logging.WARNING,
    "alembic.runtime.plugins": logging.WARNING,
    "pika": logging.CRITICAL,
}

# Attributes every LogRecord has; anything else on a record came from `extra=` and is kept in JSON.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}

_installed: list[logging.Handler] = []


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, `extra` fields, and
    the traceback when there is one, so log collectors need no parsing rules."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update((key, value) for key, value in vars(record).items() if key not in _STANDARD)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def _text_formatter() -> logging.Formatter:
    formatter = logging.Formatter(TEXT_FORMAT, DATE_FORMAT)
    formatter.converter = time.gmtime
    return formatter


class _AlembicChatter(logging.Filter):
    """Drops Alembic's every-connection INFO lines ("Context impl ...", "Will assume ... DDL"); the
    lines about an upgrade actually running stay."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(("Context impl", "Will assume"))


_ALEMBIC_MIGRATION = logging.getLogger("alembic.runtime.migration")
_ALEMBIC_MIGRATION.addFilter(_AlembicChatter())


def configure_logging(settings: LogSettings, *, verbose: bool = False) -> None:
    """Install the handlers `settings` ask for on the root logger, replacing any installed earlier.

    `verbose` (the `-v` flag) lowers the level to DEBUG whatever `KILLREPORT_LOG_LEVEL` says.
    """
    root = logging.getLogger()
    for handler in _installed:
        root.removeHandler(handler)
        handler.close()
    _installed.clear()

    formatter = JsonFormatter() if settings.format == "json" else _text_formatter()
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if settings.file is not None:
        handlers.append(_rotating_file(settings.file, settings.max_bytes, settings.backups))
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
        _installed.append(handler)
    root.setLevel(logging.DEBUG if verbose else settings.level)
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)


def _rotating_file(path: Path, max_bytes: int, backups: int) -> logging.Handler:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return logging.handlers.RotatingFileHandler(
            path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
        )
    except OSError as exc:
        raise SettingsError(
            f"KILLREPORT_LOG_FILE={str(path)!r} cannot be written: {exc.strerror or exc}"
        ) from None
