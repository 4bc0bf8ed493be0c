"""The entity registry: one declaration per kind of ESI entity the refresh keeps.

A kind's one name is its job kind, ledger step, asset, RabbitMQ lane and queue suffix alike
(`corporations` → queue `killreport.corporations`, asset `corporations`). Everything that differs
per kind is declared here, and the job handlers, the unit of work, the settings (step timeouts),
the worker's `--queues`, `killreport enqueue`, the doctor and the checks iterate the registry.

Adding a kind is an entry here, its table and migration in `storage/`, and its asset.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum

from killreport_assets.esi import wire
from killreport_assets.esi.client import ALLIANCE_CORPORATIONS_ROUTE, ALLIANCE_ROUTE, CORPORATION_ROUTE
from killreport_assets.esi.models import EsiModel
from killreport_assets.storage import AllianceMembers, EntityTable, Store


class Gone(StrEnum):
    """What ESI's 404 means for a kind."""

    CLOSED = "closed"  # the entity no longer exists: its store closes the row
    RETRY = "retry"  # ESI documents no 404 here: a stray one; keep what is stored and try again


@dataclass(frozen=True)
class EntityKind:
    name: str  # job kind, ledger step, asset name and lane
    route: str  # ESI route with one {placeholder} for the entity id
    parse: Callable[[bytes, int], EsiModel]  # wire body and id → model (pydantic ValidationError if invalid)
    store: Store  # where its data goes (and how it closes a row when `gone` is CLOSED)
    gone: Gone  # what ESI's 404 means for this kind
    timeout_minutes: float  # default of its step timeout
    aliases: tuple[str, ...] = ()  # other names `killreport enqueue` and job messages accept

    @property
    def timeout_variable(self) -> str:
        return f"KILLREPORT_{self.name.upper()}_TIMEOUT_MINUTES"

    def __str__(self) -> str:
        return self.name


ALLIANCES = EntityKind(
    name="alliances",
    route=ALLIANCE_ROUTE,
    parse=wire.parse_alliance,
    store=EntityTable("alliances", clear_when_gone=("executor_corporation_id",), closed_by_listing=True),
    gone=Gone.CLOSED,
    timeout_minutes=30,
    aliases=("alliance",),
)
ALLIANCE_CORPORATIONS = EntityKind(
    name="alliance_corporations",
    route=ALLIANCE_CORPORATIONS_ROUTE,
    parse=wire.parse_alliance_members,
    store=AllianceMembers(),
    gone=Gone.RETRY,  # a listed alliance's member list: a 404 is not "no members"
    timeout_minutes=60,
)
CORPORATIONS = EntityKind(
    name="corporations",
    route=CORPORATION_ROUTE,
    parse=wire.parse_corporation,
    # ESI's 2026-07-21 shape may leave these out although the corporation still has them.
    store=EntityTable(
        "corporations",
        keep_if_absent=frozenset(
            {
                "ceo_id",
                "creator_id",
                "date_founded",
                "description",
                "home_station_id",
                "shares",
                "war_eligible",
            }
        ),
        clear_when_gone=("alliance_id",),  # and so it is not refreshed as a leaver every night
    ),
    gone=Gone.CLOSED,
    timeout_minutes=90,
    aliases=("corporation",),
)


class Registry:
    """The kinds in refresh order, by name and alias."""

    def __init__(self, *kinds: EntityKind) -> None:
        self._kinds: dict[str, EntityKind] = {}
        for kind in kinds:
            self.register(kind)

    def __iter__(self) -> Iterator[EntityKind]:
        return iter(self._kinds.values())

    def __len__(self) -> int:
        return len(self._kinds)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._kinds)

    def names_and_aliases(self) -> tuple[str, ...]:
        return tuple(name for kind in self for name in (kind.name, *kind.aliases))

    def get(self, name: str) -> EntityKind:
        """The kind called `name` (or aliased so); KeyError names the valid ones."""
        for kind in self:
            if name == kind.name or name in kind.aliases:
                return kind
        raise KeyError(f"unknown entity kind {name!r}; known: {', '.join(self.names_and_aliases())}")

    def register(self, kind: EntityKind) -> None:
        taken = set(self.names_and_aliases())
        clash = {kind.name, *kind.aliases} & taken
        if clash:
            raise ValueError(f"entity kind name(s) already registered: {', '.join(sorted(clash))}")
        self._kinds[kind.name] = kind

    def unregister(self, kind: EntityKind) -> None:
        del self._kinds[kind.name]

    @contextmanager
    def registered(self, kind: EntityKind) -> Iterator[EntityKind]:
        """`kind` registered for the duration of a `with` block (extensions' and tests' kinds)."""
        self.register(kind)
        try:
            yield kind
        finally:
            self.unregister(kind)


REGISTRY = Registry(ALLIANCES, ALLIANCE_CORPORATIONS, CORPORATIONS)
