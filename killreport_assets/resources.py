"""The Dagster resource that gives assets their `Runtime` (storage, ESI client, transport).

Every field is optional: unset fields come from the environment (see `settings.py` and the README),
so secrets such as database passwords never enter Dagster's run config or its UI.
"""

import dataclasses

import dagster as dg
from pydantic import PrivateAttr

from killreport_assets.runtime import Runtime
from killreport_assets.settings import Settings


class KillreportResource(dg.ConfigurableResource):
    """Application database, ESI and job transport for the refresh assets."""

    database_url: str | None = None
    esi_base_url: str | None = None
    rabbitmq_url: str | None = None
    poll_interval_seconds: float = 1.0

    _runtime: Runtime | None = PrivateAttr(default=None)

    def settings(self) -> Settings:
        overrides = {
            name: value
            for name, value in (
                ("database_url", self.database_url),
                ("esi_base_url", self.esi_base_url),
                ("rabbitmq_url", self.rabbitmq_url),
            )
            if value is not None
        }
        return dataclasses.replace(Settings.from_env(), **overrides)

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            self._runtime = Runtime(self.settings())
        return self._runtime

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._runtime is not None:
            self._runtime.close()
            self._runtime = None
