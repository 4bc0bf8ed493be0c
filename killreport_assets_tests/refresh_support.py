"""Helpers for end-to-end refresh tests: run the asset graph, and compare tables with the simulator."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import dagster as dg
import sqlalchemy as sa

from killreport_assets.assets import ALL_ASSETS
from killreport_assets.checks import ALL_CHECKS
from killreport_assets.simulator.universe import Universe
from killreport_assets.storage import Storage
from killreport_assets_tests import schema as t
from killreport_assets_tests.db import rows, scalar


def materialize_all(
    resources: Mapping[str, Any], *, raise_on_error: bool = False
) -> dg.ExecuteInProcessResult:
    """What "Materialize all" does: the five assets and their checks, in one run."""
    return dg.materialize([*ALL_ASSETS, *ALL_CHECKS], resources=resources, raise_on_error=raise_on_error)


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    """What the run's first failed step said (its `dg.Failure` description, or its error)."""
    failures = [event for event in result.all_events if event.is_step_failure]
    assert failures, "a step failed"
    data = failures[0].step_failure_data
    return (data.user_failure_data.description if data.user_failure_data else None) or data.error.message


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def expire_cache(storage: Storage) -> None:
    """Let the night pass: every cached ESI answer is now stale (validators kept, as after 24 h)."""
    storage.cache.expire_all(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))


def expected_alliance(universe: Universe, alliance_id: int) -> dict[str, Any]:
    a = universe.alliance(alliance_id)
    assert a is not None
    return {
        "name": a.name,
        "ticker": a.ticker,
        "date_founded": a.date_founded,
        "creator_corporation_id": a.creator_corporation_id,
        "creator_id": a.creator_id,
        "executor_corporation_id": None if a.closed else a.executor_corporation_id,
        "faction_id": a.faction_id,
        "closed": a.closed,
    }


def expected_corporation(universe: Universe, corporation_id: int) -> dict[str, Any]:
    """The record as ESI's 2026-07-21 shape (the one the client asks for) reports it: that shape makes
    description, home station, shares and war eligibility required, so ESI fills them in."""
    c = universe.corporation_record(corporation_id)
    assert c is not None
    return {
        "name": c.name,
        "ticker": c.ticker,
        "member_count": c.member_count,
        "ceo_id": c.ceo_id,
        "creator_id": None if c.is_npc and c.creator_id == 1 else c.creator_id,
        "date_founded": c.date_founded,
        "description": c.description or "",
        "alliance_id": None if c.is_npc else c.alliance_id,
        "faction_id": None if c.is_npc else c.faction_id,
        "home_station_id": c.home_station_id or 0,
        "shares": c.shares or 0,
        "tax_rate": round(round(c.tax_rate * 100, 1) / 100, 6),
        "url": c.url,
        "war_eligible": bool(c.war_eligible),
    }


def stored(storage: Storage, table: sa.Table) -> dict[int, sa.Row]:
    return {row.id: row for row in rows(storage, sa.select(table))}


def assert_tables_match(storage: Storage, universe: Universe, *, stale: frozenset[int] = frozenset()) -> None:
    """Every table equals the simulator's universe field by field. `stale` corporations failed to
    refresh on purpose and keep what an earlier day stored."""
    alliances = stored(storage, t.alliances)
    listed = set(universe.listed_alliance_ids())
    assert listed <= set(alliances), "every listed alliance is stored"
    for alliance_id, row in alliances.items():
        want = expected_alliance(universe, alliance_id)
        assert (row.closed_at is not None) == want.pop("closed"), alliance_id
        assert {k: getattr(row, k) for k in want} == want, alliance_id

    memberships = {
        (r.alliance_id, r.corporation_id) for r in rows(storage, sa.select(t.alliance_corporations))
    }
    assert memberships == {(a, c) for a in listed for c in universe.members(a)}

    corporations = stored(storage, t.corporations)
    members = {c for _, c in memberships}
    assert members - stale <= set(corporations), "every member corporation is stored"
    for corporation_id, row in corporations.items():
        if corporation_id in stale:
            continue
        if universe.corporation(corporation_id) is None:  # disbanded: ESI answers 404
            assert row.closed_at is not None and row.alliance_id is None, corporation_id
            continue
        assert row.closed_at is None, corporation_id
        want = expected_corporation(universe, corporation_id)
        assert {k: getattr(row, k) for k in want} == want, corporation_id

    day = scalar(storage, sa.select(sa.func.max(t.alliance_snapshots.c.snapshot_date)))
    snapshot = {
        r.alliance_id: (r.member_count, r.corporation_count)
        for r in rows(
            storage, sa.select(t.alliance_snapshots).where(t.alliance_snapshots.c.snapshot_date == day)
        )
    }
    open_corporations = {i: r for i, r in corporations.items() if r.closed_at is None}
    assert snapshot == {
        a: (
            sum(open_corporations[c].member_count for c in universe.members(a) if c in open_corporations),
            sum(1 for c in universe.members(a) if c in open_corporations),
        )
        for a in listed
    }
    corporation_snapshot = {
        r.corporation_id: r.member_count
        for r in rows(
            storage, sa.select(t.corporation_snapshots).where(t.corporation_snapshots.c.snapshot_date == day)
        )
    }
    assert corporation_snapshot == {i: r.member_count for i, r in open_corporations.items()}


# The refresh's bookkeeping and the processes' coordination: they differ between runs by design.
NOT_DATA = frozenset(
    {"esi_cache", "refresh_ledger", "alembic_version", "step_leases", "esi_pauses", "esi_budget", "esi_fleet"}
)


def table_dump(storage: Storage) -> dict[str, list[tuple]]:
    """Every row of every data table (snapshot `created_at` aside: a re-run rewrites the day's rows)."""
    dump = {}
    for table in t.metadata.sorted_tables:
        if table.name in NOT_DATA:
            continue
        columns = [
            c for c in table.columns if not (table.name.endswith("_snapshots") and c.name == "created_at")
        ]
        dump[table.name] = sorted(rows(storage, sa.select(*columns)), key=repr)
    return dump
