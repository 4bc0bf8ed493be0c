"""Parsing ESI bodies into the public models, in both corporation shapes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from killreport_assets.esi import Alliance, AllianceHistoryEntry, Corporation, UniverseName
from killreport_assets.esi.wire import (
    parse_alliance,
    parse_alliance_history,
    parse_corporation,
    parse_id_list,
    parse_universe_names,
)

# The same corporation as answered for compatibility dates before and from 2026-07-21.
LEGACY = {
    "alliance_id": 1354830081,
    "ceo_id": 2112625428,
    "creator_id": 2112625428,
    "date_founded": "2014-08-11T03:56:39Z",
    "description": '<font size="12" color="#bfffffff">Welcome</font><br><a href="showinfo:2//98615046">x</a>',
    "faction_id": 500001,
    "home_station_id": 60003760,
    "member_count": 8136,
    "name": "KarmaFleet",
    "shares": 1000,
    "tax_rate": 0.10000000149011612,
    "ticker": "SNOOO",
    "url": "",
    "war_eligible": True,
}
NEW = {
    "alliance_id": 1354830081,
    "ceo_id": 2112625428,
    "creator_id": 2112625428,
    "date_founded": "2014-08-11T03:56:39Z",
    "description": LEGACY["description"],
    "enlisted_faction_id": 500001,
    "friendly_fire": "illegal",
    "home_station_id": 60003760,
    "member_count": 8136,
    "name": "KarmaFleet",
    "palette": {"main_color": "#102030"},
    "shares": 1000,
    "state": "active",
    "tax_rates": {"isk": 10.0, "loyalty_point": 5.6},
    "ticker": "SNOOO",
    "type": "player_owned",
    "url": "",
    "war_eligible": True,
}


def body(value: Any) -> bytes:
    return json.dumps(value).encode()


def test_both_corporation_shapes_give_the_same_corporation() -> None:
    legacy = parse_corporation(body(LEGACY), 98370861)
    new = parse_corporation(body(NEW), 98370861)
    assert legacy == new
    assert legacy.tax_rate == 0.1 and new.tax_rate == 0.1
    assert new.id == 98370861 and new.faction_id == 500001 and new.closed is False


@pytest.mark.parametrize(
    ("fraction", "percent"),
    [(0.15000000596046448, 15.0), (0.0560000017285347, 5.6), (0.0, 0.0), (1.0, 100.0)],
)
def test_tax_rate_is_exactly_equal_across_shapes(fraction: float, percent: float) -> None:
    legacy = parse_corporation(body({**LEGACY, "tax_rate": fraction}), 1)
    new = parse_corporation(body({**NEW, "tax_rates": {"isk": percent, "loyalty_point": 0}}), 1)
    assert legacy.tax_rate == new.tax_rate


def test_new_shape_maps_closed_state_and_optional_people() -> None:
    closed = {
        k: v
        for k, v in NEW.items()
        if k not in ("ceo_id", "creator_id", "alliance_id", "enlisted_faction_id")
    }
    corporation = parse_corporation(body({**closed, "state": "closed", "member_count": 0}), 98000001)
    assert corporation.closed is True
    assert (corporation.ceo_id, corporation.creator_id, corporation.alliance_id, corporation.faction_id) == (
        None,
        None,
        None,
        None,
    )


def test_legacy_npc_corporation() -> None:
    npc = {
        "ceo_id": 3000001,
        "creator_id": 1,
        "description": "",
        "home_station_id": 60015069,
        "member_count": 24865,
        "name": "State Protectorate",
        "shares": 0,
        "tax_rate": 0,
        "ticker": "SPTEC",
        "url": "None",
        "faction_id": 500001,
    }
    corporation = parse_corporation(body(npc), 1000180)
    assert corporation.tax_rate == 0.0 and corporation.date_founded is None and corporation.closed is False


def test_shape_is_chosen_by_keys_so_either_shape_parses_whatever_date_was_sent() -> None:
    """A cache or proxy may hand back the other shape; the parser does not know the date we sent."""
    assert isinstance(parse_corporation(body(LEGACY), 1), Corporation)
    assert isinstance(parse_corporation(body(NEW), 1), Corporation)


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({**LEGACY, "member_count": "8136"}, "member_count"),  # strict: no string-to-int coercion
        ({k: v for k, v in LEGACY.items() if k != "ceo_id"}, "ceo_id"),  # required in the legacy shape
        ({**LEGACY, "tax_rate": 10.0}, "tax_rate"),  # legacy is a fraction
        ({**NEW, "tax_rates": {"loyalty_point": 1}}, "tax_rates.isk"),
        ({k: v for k, v in NEW.items() if k != "war_eligible"}, "war_eligible"),
        ([LEGACY], ""),
    ],
)
def test_invalid_corporations_name_the_field(value: Any, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_corporation(body(value), 1)
    assert ".".join(str(p) for p in caught.value.errors()[0]["loc"]) == field


def test_alliance_gets_its_id_from_the_path() -> None:
    alliance = parse_alliance(
        body(
            {
                "creator_corporation_id": 459299583,
                "creator_id": 240070320,
                "date_founded": "2010-06-01T05:36:00Z",
                "name": "Goonswarm Federation",
                "ticker": "CONDI",
            }
        ),
        1354830081,
    )
    assert alliance == Alliance(
        id=1354830081,
        name="Goonswarm Federation",
        ticker="CONDI",
        date_founded=datetime(2010, 6, 1, 5, 36, tzinfo=UTC),
        creator_corporation_id=459299583,
        creator_id=240070320,
    )
    assert alliance.executor_corporation_id is None and alliance.faction_id is None


def test_id_lists_history_and_names() -> None:
    assert parse_id_list(b"[99000001, 99000002]") == [99000001, 99000002]
    assert parse_id_list(b"[]") == []
    history = parse_alliance_history(
        body(
            [
                {
                    "alliance_id": 99000006,
                    "is_deleted": True,
                    "record_id": 23,
                    "start_date": "2016-10-25T14:46:00Z",
                },
                {"record_id": 1, "start_date": "2015-07-06T20:56:00Z"},
            ]
        )
    )
    assert history[1] == AllianceHistoryEntry(
        record_id=1, start_date=datetime(2015, 7, 6, 20, 56, tzinfo=UTC), alliance_id=None, is_deleted=False
    )
    assert history[0].is_deleted is True
    names = parse_universe_names(b'[{"category":"character","id":95465499,"name":"CCP Bartender"}]')
    assert names == [UniverseName(id=95465499, name="CCP Bartender", category="character")]


def test_models_are_frozen() -> None:
    corporation = parse_corporation(body(LEGACY), 1)
    with pytest.raises(ValidationError):
        corporation.name = "x"  # type: ignore[misc]
