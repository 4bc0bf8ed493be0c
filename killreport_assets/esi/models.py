"""The public data types the client returns, independent of the shape ESI answered in.

ESI bodies do not carry the entity's own ID; the client fills `id` from the request path.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class EsiModel(BaseModel):
    """Every parsed ESI entity: frozen, and carrying the `id` it was requested by."""

    model_config = ConfigDict(frozen=True, extra="ignore")


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
    corporation_ids: tuple[int, ...]


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
