"""The live objects one process needs for a refresh, built from `Settings`.

Assets (through the Dagster resource), the worker and the CLI all build the same `Runtime`, so
storage, the shared ESI cache and the ESI client are configured in exactly one place.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from functools import cached_property

from killreport_assets.esi import EsiClient, EsiConfig
from killreport_assets.settings import Settings
from killreport_assets.storage import Storage
from killreport_assets.storage.cache import DatabaseCache
from killreport_assets.transport.inline import InlineTransport
from killreport_assets.transport.rabbitmq import RabbitTransport


class Runtime(AbstractContextManager["Runtime"]):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.storage = Storage.open(settings.database_url, pool_size=4)
        self.cache = DatabaseCache(self.storage.engine)

    @cached_property
    def esi(self) -> EsiClient:
        return EsiClient(esi_config(self.settings), self.cache)

    def transport(self) -> InlineTransport | RabbitTransport:
        """Where jobs go: the embedded pool, or RabbitMQ when `KILLREPORT_RABBITMQ_URL` is set."""
        if self.settings.rabbitmq_url is not None:
            return RabbitTransport.from_settings(self.settings, self.cache)
        return InlineTransport(self.storage, self.esi, self.cache, workers=self.settings.embedded_workers)

    def close(self) -> None:
        if "esi" in self.__dict__:
            self.esi.close()
        self.storage.dispose()

    def __exit__(self, *exc: object) -> None:
        self.close()


def esi_config(settings: Settings) -> EsiConfig:
    return EsiConfig(
        base_url=settings.esi_base_url,
        contact=settings.esi_contact,
        max_requests_per_second=settings.esi_max_rps,
        max_concurrency=settings.esi_concurrency,
        error_limit_margin=settings.esi_error_limit_margin,
    )
