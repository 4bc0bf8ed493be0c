"""ESI response bodies as sent on the wire, and their mapping to the public models.

Parsers take the raw body and raise pydantic's `ValidationError` (whose `loc` names the bad
field); the client turns that into `EsiResponseInvalid`. Validation is strict so that type drift
(e.g. a string where an ID belongs) is caught instead of coerced.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, create_model

from .models import INT64_MAX, Alliance, AllianceHistoryEntry, AllianceMembers, Corporation, UniverseName

logger = logging.getLogger("killreport_assets.esi")

# Both corporation shapes give the same fraction after rounding away float32 noise
# (legacy 0.10000000149011612 and new 10.0 % both become 0.1).
_TAX_RATE_DECIMALS = 6


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


def _shape(model: type[BaseModel], name: str, *, drop: tuple[str, ...] = (), **changes: Any) -> type[_Wire]:
    """A wire shape: `model`'s fields without the ones ESI does not send (`id`, always, and `drop`),
    with `changes` (field name → (type, default or `...` for required))."""
    fields: dict[str, Any] = {
        field: (info.annotation, info)
        for field, info in model.model_fields.items()
        if field not in ("id", "closed", *drop)
    }
    return create_model(name, __base__=_Wire, **{**fields, **changes})


_AllianceWire = _shape(Alliance, "_AllianceWire")
# Compatibility dates before 2026-07-21: `tax_rate` is a fraction, `faction_id`, no state; the CEO and
# creator are always there.
_LegacyCorporationWire = _shape(
    Corporation, "_LegacyCorporationWire", ceo_id=(int, ...), creator_id=(int, ...)
)


class _TaxRatesWire(_Wire):
    isk: float = Field(ge=0, le=100)


# Compatibility date 2026-07-21 on: `tax_rates.isk` in percent, `enlisted_faction_id`, `state`, and
# description, home station, shares and war eligibility always there. Enum-like strings stay `str`
# because ESI may add values to them under an existing compatibility date.
_CorporationWire = _shape(
    Corporation,
    "_CorporationWire",
    drop=("tax_rate", "faction_id"),
    state=(str, ...),
    description=(str, ...),
    home_station_id=(int, ...),
    shares=(int, ...),
    war_eligible=(bool, ...),
    tax_rates=(_TaxRatesWire, ...),
    enlisted_faction_id=(int | None, None),
)


_ID_LIST = TypeAdapter(list[int])
_JSON_OBJECT = TypeAdapter(dict[str, Any])
_HISTORY = TypeAdapter(list[AllianceHistoryEntry])
_NAMES = TypeAdapter(list[UniverseName])


def parse_id_list(body: bytes) -> list[int]:
    return _ID_LIST.validate_json(body, strict=True)


def parse_listed_ids(body: bytes) -> list[int]:
    """A list of every entity of a kind (`/alliances/`): entries that cannot be IDs are left out
    (logged), so one bad entry does not stop the whole kind."""
    ids = parse_id_list(body)
    valid = [i for i in ids if 0 < i <= INT64_MAX]
    if len(valid) < len(ids):
        logger.warning(
            "ESI listed %d entries that are not IDs; left out: %s",
            len(ids) - len(valid),
            sorted(set(ids) - set(valid))[:10],
        )
    return valid


def parse_alliance_members(body: bytes, alliance_id: int) -> AllianceMembers:
    return AllianceMembers(id=alliance_id, corporation_ids=tuple(parse_id_list(body)))


def parse_alliance(body: bytes, alliance_id: int) -> Alliance:
    wire = _AllianceWire.model_validate_json(body, strict=True)
    return Alliance(id=alliance_id, **wire.model_dump())


def parse_corporation(body: bytes, corporation_id: int) -> Corporation:
    """Pick the shape by its keys, not by the date we sent: a proxy or cache may answer the other one."""
    keys = _JSON_OBJECT.validate_json(body).keys()
    if "tax_rates" in keys or "state" in keys:
        new = _CorporationWire.model_validate_json(body, strict=True)
        fields = new.model_dump(exclude={"state", "tax_rates", "enlisted_faction_id"})
        return Corporation(
            id=corporation_id,
            **fields,
            faction_id=new.enlisted_faction_id,
            tax_rate=round(new.tax_rates.isk / 100, _TAX_RATE_DECIMALS),
            closed=new.state == "closed",
        )
    legacy = _LegacyCorporationWire.model_validate_json(body, strict=True)
    fields = legacy.model_dump(exclude={"tax_rate"})
    return Corporation(id=corporation_id, **fields, tax_rate=round(legacy.tax_rate, _TAX_RATE_DECIMALS))


def parse_alliance_history(body: bytes) -> list[AllianceHistoryEntry]:
    return _HISTORY.validate_json(body, strict=True)


def parse_universe_names(body: bytes) -> list[UniverseName]:
    return _NAMES.validate_json(body, strict=True)
