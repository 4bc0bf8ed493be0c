"""Adding an entity kind is a registry entry, its table and its asset: a kind defined only here (an
ESI route served beside the simulator, a table, a registry entry, an asset) is refreshed end to end
through both transports, against the real PostgreSQL (and RabbitMQ), with no change to the package.

Run as a module, this file is a `killreport` command line that knows the kind: that is how the
RabbitMQ test's worker process gets it (`python -m killreport_assets_tests.test_entity_registry worker`).
"""

import itertools
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import pytest
import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from killreport_assets.assets.refresh import Refresh, esi_step
from killreport_assets.esi.models import EsiModel
from killreport_assets.registry import REGISTRY, EntityKind, Gone
from killreport_assets.resources import refresh_resources
from killreport_assets.simulator import SimulatorConfig, SimulatorServer
from killreport_assets.storage import EntityTable, Storage
from killreport_assets_tests.databases import postgres_database
from killreport_assets_tests.db import rows
from killreport_assets_tests.rabbit_support import RabbitStack


class Faction(EsiModel):
    id: int
    name: str
    corporation_id: int | None = None
    closed: bool = False


def parse_faction(body: bytes, faction_id: int) -> Faction:
    return Faction.model_validate({**json.loads(body), "id": faction_id})


FACTION_TABLE = sa.Table(
    "test_factions",
    sa.MetaData(),
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("corporation_id", sa.BigInteger),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("closed_at", sa.DateTime(timezone=True)),
)
FACTIONS = EntityKind(
    name="test_factions",
    route="/factions/{faction_id}",
    parse=parse_faction,
    store=EntityTable(FACTION_TABLE),
    gone=Gone.CLOSED,
    timeout_minutes=5,
)
# The kind's universe: ESI knows these; the last listed id answers 404.
UNIVERSE = {500000 + i: {"name": f"Faction {i}", "corporation_id": 1000000 + i} for i in range(1, 41)}
GONE = 500099
IDS = [*UNIVERSE, GONE]


@esi_step(FACTIONS, description="Factions, a kind only this test knows.")
def factions(context: dg.AssetExecutionContext, refresh: Refresh) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata=refresh.metadata(refresh.run(context, FACTIONS, IDS)))


@contextmanager
def simulator_with_factions() -> Iterator[tuple[SimulatorServer, dict[int, int]]]:
    """The ESI simulator with the kind's route in front of it; yields it and the requests per id."""
    requests: dict[int, int] = dict.fromkeys(IDS, 0)
    etags = itertools.count(1)

    async def faction(request: Request) -> Response:
        faction_id = int(request.path_params["faction_id"])
        requests[faction_id] = requests.get(faction_id, 0) + 1
        if faction_id not in UNIVERSE:
            return JSONResponse({"error": "Faction not found"}, status_code=404)
        headers = {"Cache-Control": "public, max-age=300", "ETag": f'"f{next(etags)}"'}
        return JSONResponse(UNIVERSE[faction_id], headers=headers)

    simulator = SimulatorServer(SimulatorConfig(seed=5, alliances=5, corporations=20))
    simulator.app = Starlette(
        routes=[Route("/factions/{faction_id:int}", faction), Mount("/", app=simulator.app)]
    )
    with simulator:
        yield simulator, requests


def _refresh(resources: dict) -> dg.ExecuteInProcessResult:
    return dg.materialize([factions], resources=resources, raise_on_error=False)


def _assert_table_is_the_universe(storage: Storage) -> None:
    stored = {row.id: row for row in rows(storage, sa.select(FACTION_TABLE))}
    assert set(stored) == set(IDS) - {GONE}, "a 404 for an id never stored writes nothing"
    for faction_id, want in UNIVERSE.items():
        row = stored[faction_id]
        assert (row.name, row.corporation_id, row.closed_at) == (want["name"], want["corporation_id"], None)


@contextmanager
def _kind_and_database() -> Iterator[tuple[str, Storage]]:
    with REGISTRY.registered(FACTIONS), postgres_database() as url:
        storage = Storage.open(url)
        FACTION_TABLE.create(storage.engine)
        try:
            yield url, storage
        finally:
            storage.dispose()


def test_a_kind_defined_outside_the_package_is_refreshed_in_embedded_mode() -> None:
    with _kind_and_database() as (url, storage), simulator_with_factions() as (simulator, requests):
        resources = refresh_resources(
            database_url=url, esi_base_url=simulator.url, poll_interval_seconds=0.05
        )
        first = _refresh(resources)
        assert first.success
        _assert_table_is_the_universe(storage)
        progress = storage.ledger.progress(first.run_id, FACTIONS.name)
        assert progress.by_status == {"done": len(UNIVERSE), "gone": 1}
        assert all(n == 1 for n in requests.values())
        checks = {e.check_name: e.passed for e in first.get_asset_check_evaluations()}
        assert checks == {"test_factions_failed_entities": True}

        # The responses were kept with the rows they carried: nothing is requested before it expires
        # (a 404 is not cacheable, so only that one is asked again).
        second = _refresh(resources)
        assert second.success and all(requests[i] == 1 for i in UNIVERSE) and requests[GONE] == 2, requests
        assert storage.ledger.progress(second.run_id, FACTIONS.name).by_http_status == {
            "cache": len(UNIVERSE),
            "404": 1,
        }


@pytest.mark.usefixtures("stack")
def test_a_kind_defined_outside_the_package_is_refreshed_through_rabbitmq(stack: RabbitStack) -> None:
    with REGISTRY.registered(FACTIONS), simulator_with_factions() as (simulator, requests):
        assert stack.storage is not None
        FACTION_TABLE.create(stack.storage.engine)
        stack.start_worker(simulator.url, "--concurrency", "4", module=__name__)
        stack.wait_for_consumers(f"killreport.{FACTIONS.name}", 1)
        result = _refresh(stack.resources(simulator.url))
        assert result.success
        _assert_table_is_the_universe(stack.storage)
        assert stack.storage.ledger.progress(result.run_id, FACTIONS.name).by_status == {
            "done": len(UNIVERSE),
            "gone": 1,
        }
        assert all(n == 1 for n in requests.values())


if __name__ == "__main__":  # the worker of the RabbitMQ test: the package's CLI, knowing the kind
    from killreport_assets.cli import main

    REGISTRY.register(FACTIONS)
    sys.exit(main(sys.argv[1:]))
