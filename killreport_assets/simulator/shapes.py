"""ESI's JSON bodies for the six routes, built from the canonical universe records.

`/corporations/{id}` has two live shapes chosen by compatibility date (esi.md §2.4): the legacy one
(fraction `tax_rate` with float32 noise, `faction_id`, required `ceo_id`/`creator_id`) and the
2026-07-21 one (`state`, `type`, percent `tax_rates`, `friendly_fire`, required description/home
station/shares/war eligibility). Everything else has one shape.
"""

from __future__ import annotations

import json
import struct
from datetime import date
from typing import Any

from killreport_assets.simulator.universe import Alliance, Corporation, Universe, iso

NEW_CORPORATION_SHAPE = date(2026, 7, 21)
LEGACY = "legacy"
NEW = "2026-07-21"


def dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def float32(value: float) -> float:
    """What ESI's float32 `tax_rate` looks like once printed as a double, e.g. 0.1 -> 0.10000000149011612."""
    return struct.unpack("f", struct.pack("f", value))[0]


def alliance_detail(alliance: Alliance) -> dict[str, Any]:
    body: dict[str, Any] = {
        "creator_corporation_id": alliance.creator_corporation_id,
        "creator_id": alliance.creator_id,
        "date_founded": iso(alliance.date_founded),
        "name": alliance.name,
        "ticker": alliance.ticker,
    }
    if alliance.executor_corporation_id is not None and not alliance.closed:
        body["executor_corporation_id"] = alliance.executor_corporation_id
    if alliance.faction_id is not None:
        body["faction_id"] = alliance.faction_id
    return body


def corporation_legacy(corp: Corporation) -> dict[str, Any]:
    body: dict[str, Any] = {
        "ceo_id": corp.ceo_id,
        "creator_id": corp.creator_id if corp.creator_id is not None else 1,
        "member_count": corp.member_count,
        "name": corp.name,
        "tax_rate": float32(corp.tax_rate),
        "ticker": corp.ticker,
    }
    optional = {
        "alliance_id": corp.alliance_id,
        "date_founded": iso(corp.date_founded) if corp.date_founded else None,
        "description": corp.description,
        "faction_id": corp.faction_id,
        "home_station_id": corp.home_station_id,
        "shares": corp.shares,
        "url": corp.url,
        "war_eligible": corp.war_eligible,
    }
    body.update((k, v) for k, v in optional.items() if v is not None)
    return body


def corporation_new(corp: Corporation) -> dict[str, Any]:
    """The 2026-07-21 shape; fields the legacy shape could omit get ESI-like defaults (GUESS: "", 0, false)."""
    body: dict[str, Any] = {
        "description": corp.description or "",
        "friendly_fire": corp.friendly_fire,
        "home_station_id": corp.home_station_id or 0,
        "member_count": corp.member_count,
        "name": corp.name,
        "shares": corp.shares or 0,
        "state": corp.state,
        "tax_rates": {
            "isk": round(corp.tax_rate * 100, 1),
            "loyalty_point": round(corp.loyalty_point_tax_rate * 100, 1),
        },
        "ticker": corp.ticker,
        "type": corp.type,
        "war_eligible": bool(corp.war_eligible),
        "ceo_id": corp.ceo_id,
    }
    # NPC corporations no longer have a valid creator (esi-issues#453); alliance/faction/palette are player-only.
    if corp.creator_id is not None and not (corp.is_npc and corp.creator_id == 1):
        body["creator_id"] = corp.creator_id
    if corp.date_founded is not None:
        body["date_founded"] = iso(corp.date_founded)
    if corp.url is not None:
        body["url"] = corp.url
    if not corp.is_npc:
        if corp.alliance_id is not None:
            body["alliance_id"] = corp.alliance_id
        if corp.faction_id is not None:
            body["enlisted_faction_id"] = corp.faction_id
        if corp.palette:
            body["palette"] = dict(
                zip(("main_color", "secondary_color", "tertiary_color"), corp.palette, strict=False)
            )
    return body


def alliance_history(universe: Universe, corporation_id: int) -> list[dict[str, Any]]:
    """Newest first, like CCP's example; `is_deleted` only where the alliance has closed."""
    rows = []
    for record in reversed(universe.alliance_history(corporation_id)):
        row: dict[str, Any] = {"record_id": record.record_id, "start_date": iso(record.start_date)}
        if record.alliance_id is not None:
            row["alliance_id"] = record.alliance_id
            alliance = universe.alliance(record.alliance_id)
            if alliance is not None and alliance.closed:
                row["is_deleted"] = True
        rows.append(row)
    return rows
