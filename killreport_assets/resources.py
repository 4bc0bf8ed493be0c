"""The Dagster resources, one per system the refresh touches: the database, ESI, the transport.

Each reads only its own settings, when a run first uses it: the code location loads with no
setting but the schedule hour, and a bad worker-only setting never reaches the Dagster side.
Secret-bearing URLs come through `dg.EnvVar` (see `definitions.py`), so they never enter run config.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

import dagster as dg
from pydantic import PrivateAttr

from killreport_assets.esi import EsiClient, EsiConfig
from killreport_assets.settings import BrokerSettings, RefreshSettings, database_url, esi_config
from killreport_assets.storage import Storage
from killreport_assets.transport.base import Transport
from killreport_assets.transport.inline import InlineTransport
from killreport_assets.transport.rabbitmq import RabbitTransport


class DatabaseResource(dg.ConfigurableResource):
    """The application database (KILLREPORT_DATABASE_URL; default: SQLite beside DAGSTER_HOME)."""

    url: str | None = None

    _storage: Storage | None = PrivateAttr(default=None)

    @property
    def storage(self) -> Storage:
        if self._storage is None:
            url = database_url({"KILLREPORT_DATABASE_URL": self.url} if self.url else None)
            # job threads use this pool when an attempt is retried or a lease re-read; their ledger
            # and cache reads go through the statement pool (at most 10, `statement_engine`)
            workers = RefreshSettings.from_env().embedded_workers
            self._storage = Storage.open(url, pool_size=workers + 4)
        return self._storage

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._storage is not None:
            self._storage.dispose()
            self._storage = None


class EsiResource(dg.ConfigurableResource):
    """ESI: the KILLREPORT_ESI_* settings; `base_url` overrides KILLREPORT_ESI_BASE_URL."""

    base_url: str | None = None

    _client: EsiClient | None = PrivateAttr(default=None)

    def config(self) -> EsiConfig:
        config = esi_config()
        return dataclasses.replace(config, base_url=self.base_url) if self.base_url else config

    def client(self, storage: Storage) -> EsiClient:
        """The run's one client (one connection pool, the process's governor), reading the
        database's ESI cache and reporting ESI pauses to it (so stall detection sees them)."""
        if self._client is None:
            self._client = EsiClient(self.config(), storage.cache)
            storage.coordinate(self._client, f"Dagster step process {os.getpid()}")
        return self._client

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


class TransportResource(dg.ConfigurableResource):
    """Where jobs run: the embedded pool, or RabbitMQ workers when KILLREPORT_RABBITMQ_URL is set;
    and how a step waits for them (the KILLREPORT_* step settings)."""

    rabbitmq_url: str | None = None
    poll_interval_seconds: float = 1.0

    def refresh_settings(self) -> RefreshSettings:
        return RefreshSettings.from_env()

    def open(self, storage: Storage, client: EsiClient) -> Transport:
        broker = BrokerSettings.from_env()
        if self.rabbitmq_url:
            broker = dataclasses.replace(broker, url=self.rabbitmq_url)
        if broker.url is not None:
            return RabbitTransport(broker.url, broker.retry_delay)
        settings = self.refresh_settings()
        return InlineTransport(
            storage, client, workers=settings.embedded_workers, lease_ttl=settings.lease_ttl
        )


def refresh_resources(
    *,
    database_url: str | None = None,
    esi_base_url: str | None = None,
    rabbitmq_url: str | None = None,
    poll_interval_seconds: float = 1.0,
) -> Mapping[str, dg.ConfigurableResource]:
    """The resources the refresh assets and checks take, by their parameter names."""
    return {
        "database": DatabaseResource(url=database_url),
        "esi": EsiResource(base_url=esi_base_url),
        "transport": TransportResource(
            rabbitmq_url=rabbitmq_url, poll_interval_seconds=poll_interval_seconds
        ),
    }
