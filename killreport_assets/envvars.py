"""Reading environment variables: a reader whose errors name the variable (never echoing a secret),
and one parser per kind of value, each with the rule it enforces."""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Callable, Mapping
from typing import TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")


class SettingsError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


_USERINFO = re.compile(
    r"^(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@]*):(?P<password>.*)@(?P<tail>[^@]*)$", re.S
)
_SECRET_PARAMS = re.compile(r"(?i)([?&;][a-z_]*(?:password|passwd|pwd|secret|token|api_key|key)=)[^&;#]*")


def redact_url(url: str) -> str:
    """The URL with its password and secret query parameters replaced, for logs and error messages.

    Parsed by hand rather than with `urlsplit`, which gives up on a password holding an unencoded
    `/` or `@` and would let it through whole."""
    match = _USERINFO.match(url)
    if match is not None:
        url = f"{match['head']}:***@{match['tail']}"
    return _SECRET_PARAMS.sub(r"\1***", url)


class Reader:
    def __init__(self, environ: Mapping[str, str] | None) -> None:
        self._env = os.environ if environ is None else environ

    def get(self, name: str, parse: Callable[[str], T], default: T, *, secret: bool = False) -> T:
        raw = self._env.get(name)
        if raw is None or raw.strip() == "":
            return default
        try:
            return parse(raw.strip())
        except (TypeError, ValueError) as exc:
            shown = "<hidden>" if secret else redact_url(raw) if "://" in raw else raw
            raise SettingsError(f"{name}={shown!r} is invalid: {exc}") from None


def non_empty(raw: str) -> str:
    return raw


def non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("expected an integer ≥ 0")
    return value


def positive(kind: Callable[[str], T]) -> Callable[[str], T]:
    def parse(raw: str) -> T:
        try:
            value = kind(raw)
        except ValueError:
            raise ValueError(f"expected a positive {kind.__name__}") from None
        if not value > 0:  # type: ignore[operator]
            raise ValueError(f"expected a positive {kind.__name__}")
        return value

    return parse


def choice(*choices: str) -> Callable[[str], str]:
    """One of `choices`, matched case-insensitively, returned as spelled in `choices`."""

    def parse(raw: str) -> str:
        for choice in choices:
            if raw.lower() == choice.lower():
                return choice
        raise ValueError(f"expected one of {', '.join(choices)}")

    return parse


def minutes(raw: str) -> float:
    return positive(float)(raw) * 60


def fraction(raw: str) -> float:
    """A fraction below 1, as `0.01` or `1%`."""
    value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    if not 0 <= value < 1:
        raise ValueError("expected a fraction between 0 and 1, e.g. 0.01 or 1%")
    return value


def share(raw: str) -> float:
    value = float(raw)
    if not 0 <= value <= 1:
        raise ValueError("expected a share between 0 and 1, e.g. 0.05 for 5% (1 allows everything)")
    return value


def hour(raw: str) -> int:
    value = int(raw)
    if not 0 <= value <= 23:
        raise ValueError("expected an hour of the day, 0-23 (UTC)")
    return value


def _url(raw: str, schemes: tuple[str, ...], expected: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in schemes or not parts.hostname:
        raise ValueError(f"expected {expected}")
    return raw


def http_url(raw: str) -> str:
    return _url(raw, ("http", "https"), "an http(s) URL such as https://esi.evetech.net").rstrip("/")


def webhook_url(raw: str) -> str:
    return _url(raw, ("http", "https"), "the http(s) URL of a Slack or Discord incoming webhook")


def amqp_url(raw: str) -> str:
    return _url(raw, ("amqp", "amqps"), "an AMQP URL such as amqp://guest:guest@127.0.0.1:5672/%2F")


def database_url_value(raw: str) -> str:
    scheme = urlsplit(raw).scheme.split("+", 1)[0]
    if scheme not in ("postgresql", "postgres", "sqlite"):
        raise ValueError("expected postgresql://user:pass@host:port/db or sqlite:///path/to/file.db")
    return raw


def utc_window(raw: str) -> tuple[dt.time, dt.time]:
    """`HH:MM-HH:MM` (UTC, may wrap past midnight); `off` is an empty window."""
    if raw.lower() == "off":
        return dt.time(0, 0), dt.time(0, 0)
    try:
        start, end = (dt.datetime.strptime(part.strip(), "%H:%M").time() for part in raw.split("-"))
    except ValueError:
        raise ValueError("expected HH:MM-HH:MM in UTC (e.g. 11:00-11:15), or off") from None
    return start, end
