"""The public data types the client returns, independent of the shape ESI answered in.

ESI bodies do not carry the entity's own ID; the client fills `id` from the request path.

This is the boundary where ESI's data is made storable, so the database never refuses a row:
player-written text is kept faithfully minus NUL characters (invisible in game; PostgreSQL's `text`
cannot hold them), a `date-time` without an offset is UTC (ESI's times are UTC by definition), and
what cannot be stored faithfully (an integer beyond 64 bits, an ID list with IDs that cannot be
IDs) fails validation, so that one entity fails with the reason while every other is written.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

INT64_MAX = 2**63 - 1
EntityId = Annotated[int, Field(gt=0, le=INT64_MAX)]


def storable(value: Any) -> Any:
    """`value` as the database can hold it; ValueError when it cannot be held faithfully."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, int) and not isinstance(value, bool) and not -INT64_MAX - 1 <= value <= INT64_MAX:
        raise ValueError(f"{value} is outside the 64-bit integer range the database stores")
    if isinstance(value, tuple | list):
        return type(value)(storable(item) for item in value)
    return value


class EsiModel(BaseModel):
    """Every parsed ESI entity: frozen, carrying the `id` it was requested by, and storable."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        return storable(value)


class Alliance(EsiModel):
    id: int
    name: str
    ticker: str
    date_founded: datetime
    creator_corporation_id: int
    creator_id: int
    executor_corporation_id: int | None = None
    faction_id: int | None = None


class AllianceMembers(EsiModel):
    """An alliance's member list: `id` is the alliance's."""

    id: int
    corporation_ids: tuple[EntityId, ...]


class Corporation(EsiModel):
    """A corporation; `tax_rate` is a 0–1 fraction rounded to 6 decimals whichever shape ESI used."""

    id: int
    name: str
    ticker: str
    member_count: int
    ceo_id: int | None = None
    creator_id: int | None = None
    date_founded: datetime | None = None
    description: str | None = None
    alliance_id: int | None = None
    faction_id: int | None = None
    home_station_id: int | None = None
    shares: int | None = None
    tax_rate: float = Field(ge=0, le=1)
    url: str | None = None
    war_eligible: bool | None = None
    closed: bool = False


class AllianceHistoryEntry(EsiModel):
    record_id: int
    start_date: datetime
    alliance_id: int | None = None
    is_deleted: bool = False


class UniverseName(EsiModel):
    id: int
    name: str
    category: str
