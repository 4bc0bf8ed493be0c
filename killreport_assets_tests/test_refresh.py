"""The asset graph end to end against the simulator, on SQLite and on the real PostgreSQL: a first
day, a same-day re-run, then a drifted day with a poison corporation."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from killreport_assets.resources import refresh_resources
from killreport_assets.simulator import SimulatorConfig, SimulatorServer
from killreport_assets.simulator.universe import diff
from killreport_assets.storage import Storage
from killreport_assets_tests import schema as t
from killreport_assets_tests.db import rows
from killreport_assets_tests.refresh_support import (
    assert_tables_match,
    check_results,
    expire_cache,
    materialize_all,
    table_dump,
)

UNIVERSE = SimulatorConfig(seed=11, alliances=120, corporations=600)


@pytest.fixture(autouse=True)
def fast_local_esi(monkeypatch: pytest.MonkeyPatch) -> None:
    # The simulator is on loopback: no need for production pacing, and a quick progress cadence.
    monkeypatch.setenv("KILLREPORT_ESI_MAX_RPS", "400")
    monkeypatch.setenv("KILLREPORT_PROGRESS_INTERVAL_SECONDS", "2")


class NightClock:
    """The simulator's clock, which a test moves a day ahead instead of waiting for it."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def test_two_days_are_exact_and_a_rerun_changes_nothing(database_url: str) -> None:
    clock = NightClock()
    with SimulatorServer(UNIVERSE, clock=clock) as simulator:
        resource = refresh_resources(
            database_url=database_url, esi_base_url=simulator.url, poll_interval_seconds=0.05
        )
        storage = Storage.open(database_url)

        first = materialize_all(resource)
        assert first.success
        assert all(check_results(first).values()), check_results(first)
        assert_tables_match(storage, simulator.universe)
        day0 = simulator.universe

        # Same day again: everything is fresh in the cache, nothing is requested, nothing changes.
        before = table_dump(storage)
        simulator.reset_stats()
        rerun = materialize_all(resource)
        assert rerun.success
        assert simulator.stats()["requests"] == 0, "the alliance list is fresh in the cache too"
        assert table_dump(storage) == before

        # The next night: the universe drifted and one member corporation always answers 500.
        day1 = simulator.set_day(1)
        changes = diff(day0, day1)
        poison = next(iter(sorted(set(day1.member_corporation_ids()) & set(day0.member_corporation_ids()))))
        simulator.configure(poison_corporations=[poison])
        clock.offset += 24 * 3600
        expire_cache(storage)
        simulator.reset_stats()

        second = materialize_all(resource)
        assert second.success, "one failed corporation is far below the 1% limit"
        assert_tables_match(storage, day1, stale=frozenset({poison}))
        stats = simulator.stats()
        assert stats["early_requests"] == 0
        assert stats["not_modified"] > 0, "unchanged entities were revalidated, not refetched"

        # The poison corporation is reported, with its error, and was not retried forever.
        ledger = t.refresh_ledger
        row = rows(
            storage,
            sa.select(ledger).where(ledger.c.refresh_id == second.run_id, ledger.c.entity_id == poison),
        )[0]
        assert (row.status, row.http_status) == ("failed", 500)
        assert 1 < row.attempts <= 4 and "500" in row.last_error
        corporations = second.asset_materializations_for_node("corporations")[0]
        assert corporations.metadata["failed"].value == 1
        assert corporations.metadata["failed_ids"].value == [poison]
        assert check_results(second)["corporations_failed_entities"] is False
        assert check_results(second)["totals_consistent"] is True

        # Leavers were refreshed: their alliance_id is cleared (the original never did this).
        for kind in (
            "corporation_moved",
            "corporation_left",
            "corporation_disbanded",
            "alliance_closed",
            "alliance_created",
            "corporation_renamed",
            "member_count_changed",
        ):
            assert changes[kind], f"the drifted day has no {kind}"
        leavers = changes["corporation_left"] - {poison}
        leaver_rows = rows(
            storage, sa.select(t.corporations.c.alliance_id).where(t.corporations.c.id.in_(leavers))
        )
        assert len(leaver_rows) == len(leavers) and all(r.alliance_id is None for r in leaver_rows)
        storage.dispose()


def test_a_rerun_after_a_failed_step_fetches_only_what_the_failed_run_did_not(tmp_path) -> None:
    with SimulatorServer(SimulatorConfig(seed=13, alliances=60, corporations=300)) as simulator:
        members = simulator.universe.member_corporation_ids()
        poison = sorted(members[::20])  # 5%: far above the 1% a step tolerates
        simulator.configure(poison_corporations=poison)
        resource = refresh_resources(
            database_url=f"sqlite:///{tmp_path / 'resume.db'}",
            esi_base_url=simulator.url,
            poll_interval_seconds=0.05,
        )
        failed = materialize_all(resource)
        assert not failed.success
        message = failed.get_step_failure_events()[0].step_failure_data.error.message
        assert f"{len(poison)} of {len(members)} entities failed permanently" in message
        assert "above the 1% limit" in message and "re-run later" in message

        simulator.configure(poison_corporations=[])
        simulator.reset_stats()
        rerun = materialize_all(resource)
        assert rerun.success
        by_route = simulator.stats()["by_route"]
        assert by_route["GET /corporations/{id}"] == {"200": len(poison)}, "only the failed ones are fetched"
        assert "GET /alliances/{id}" not in by_route and "GET /alliances/{id}/corporations" not in by_route
