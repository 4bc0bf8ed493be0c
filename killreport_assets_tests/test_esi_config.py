"""EsiConfig validation: a wrong value fails at construction, naming the field."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

import pytest

from killreport_assets.esi import EsiConfig
from killreport_assets.settings import RefreshSettings, WorkerSettings, esi_config


def test_defaults() -> None:
    config = EsiConfig(contact="ops@example.com")
    assert config.base_url == "https://esi.evetech.net"
    assert config.compatibility_date == date(2026, 7, 21)
    assert config.error_margin == 10  # the fleet's reserve, whatever the concurrency
    assert EsiConfig(contact="x", max_concurrency=40).error_margin == 10
    assert EsiConfig(contact="x", max_concurrency=40, error_limit_margin=5).error_margin == 5


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"compatibility_date": date(2026, 7, 20)}, "compatibility_date"),
        ({"compatibility_date": datetime(2026, 8, 1)}, "compatibility_date"),
        ({"base_url": "esi.evetech.net"}, "base_url"),
        ({"base_url": "https://esi.evetech.net/?datasource=tranquility"}, "base_url"),
        ({"contact": ""}, "contact"),
        ({"contact": "me\r\nX-Evil: 1"}, "contact"),
        ({"max_requests_per_second": 0}, "max_requests_per_second"),
        ({"max_requests_per_second": float("inf")}, "max_requests_per_second"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 1.5}, "max_attempts"),
        ({"backoff_base": -1}, "backoff_base"),
        ({"backoff_cap": 0.1}, "backoff_cap"),
        ({"connect_timeout": 0}, "connect_timeout"),
        ({"read_timeout": -1}, "read_timeout"),
        ({"error_limit_margin": -1}, "error_limit_margin"),
        ({"error_limit_margin": 100}, "error_limit_margin"),  # at ESI's whole budget
        ({"downtime_start": "11:00"}, "downtime_start"),
        ({"downtime_end": time(11, 15, tzinfo=UTC)}, "downtime_end"),
    ],
)
def test_invalid_values_name_the_field(options: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        EsiConfig(**{"contact": "ops@example.com", **options})


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, (20, 20, 20)),  # the default budget, 50 req/s
        ({"KILLREPORT_ESI_MAX_RPS": "100"}, (40, 40, 40)),  # 100 req/s x 0.4 s in flight
        ({"KILLREPORT_ESI_MAX_RPS": "10"}, (20, 20, 20)),  # never fewer than 20
        ({"KILLREPORT_ESI_MAX_RPS": "100000"}, (50, 50, 50)),  # never more than 50 unless told
        ({"KILLREPORT_ESI_MAX_RPS": "100", "KILLREPORT_ESI_CONCURRENCY": "25"}, (25, 25, 25)),
        (
            {
                "KILLREPORT_ESI_MAX_RPS": "100",
                "KILLREPORT_EMBEDDED_WORKERS": "7",
                "KILLREPORT_WORKER_CONCURRENCY": "9",
            },
            (40, 7, 9),
        ),
    ],
)
def test_concurrency_follows_the_budget_unless_set(
    environ: dict[str, str], expected: tuple[int, int, int]
) -> None:
    """Holding a budget takes budget x round trip requests in flight (Little's law): the ESI client's
    concurrency and the job threads of both modes default to what the budget needs."""
    got = (
        esi_config(environ).max_concurrency,
        RefreshSettings.from_env(environ).embedded_workers,
        WorkerSettings.from_env(environ).concurrency,
    )
    assert got == expected
