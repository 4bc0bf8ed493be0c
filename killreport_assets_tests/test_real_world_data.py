"""Real-world ESI data never breaks, corrupts or stales the refresh: player text with NUL, dates
without an offset, values the database cannot hold, a partial alliance list, stray 404s, leavers that
go unaffiliated and later close, duplicate deliveries. On PostgreSQL, through both transports where a
transport is involved; ESI's oddities come from `esi_faults` in front of the simulator."""

from __future__ import annotations

import datetime as dt
import math
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from killreport_assets.esi.models import AllianceMembers, Corporation
from killreport_assets.jobs import Job, LedgerStatus, Outcome
from killreport_assets.registry import ALLIANCE_CORPORATIONS, ALLIANCES, CORPORATIONS
from killreport_assets.resources import refresh_resources
from killreport_assets.simulator import SimulatorConfig, SimulatorServer
from killreport_assets.storage import Storage
from killreport_assets.storage.memberships import _LOCK_NAMESPACE, alliance_lock_key
from killreport_assets_tests import schema as t
from killreport_assets_tests.databases import postgres_database
from killreport_assets_tests.db import rows, scalar
from killreport_assets_tests.esi_faults import Faults, FaultyEsi
from killreport_assets_tests.rabbit_support import RabbitStack, wait_for
from killreport_assets_tests.refresh_support import (
    expected_corporation,
    expire_cache,
    failure_message,
    materialize_all,
    table_dump,
)
from killreport_assets_tests.test_refresh import UNIVERSE, NightClock
from killreport_assets_tests.test_storage import make_alliance

MODES = ["embedded", "rabbitmq"]


@pytest.fixture(autouse=True)
def fast_local_esi(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KILLREPORT_ESI_MAX_RPS", "400")
    monkeypatch.setenv("KILLREPORT_PROGRESS_INTERVAL_SECONDS", "2")


@contextmanager
def faulty_simulator(
    config: SimulatorConfig = UNIVERSE, clock: NightClock | None = None
) -> Iterator[tuple[SimulatorServer, Faults]]:
    faults = Faults()
    simulator = SimulatorServer(config, clock=clock or NightClock())
    simulator.app = FaultyEsi(simulator.app, faults)
    with simulator:
        yield simulator, faults


class Refresher:
    """One mode's database and resources (and workers, in RabbitMQ mode)."""

    def __init__(self, mode: str, request: pytest.FixtureRequest) -> None:
        self.mode = mode
        self._request = request
        self.stack: RabbitStack | None = request.getfixturevalue("stack") if mode == "rabbitmq" else None
        self._database = None if self.stack else postgres_database()
        self.url = self.stack.database_url if self.stack else self._database.__enter__()  # type: ignore[union-attr]
        self.storage = Storage.open(self.url)

    def resources(self, esi_url: str) -> Mapping[str, Any]:
        if self.stack is not None:
            return self.stack.resources(esi_url)
        return refresh_resources(database_url=self.url, esi_base_url=esi_url, poll_interval_seconds=0.05)

    def start_workers(self, esi_url: str, count: int = 1) -> None:
        if self.stack is not None:
            for _ in range(count):
                self.stack.start_worker(esi_url, "--concurrency", "8")
            self.stack.wait_for_consumers("killreport.corporations", count)

    def run(self, esi_url: str) -> dg.ExecuteInProcessResult:
        return materialize_all(self.resources(esi_url))

    def close(self) -> None:
        self.storage.dispose()
        if self._database is not None:
            self._database.__exit__(None, None, None)


@pytest.fixture(params=MODES)
def refresher(request: pytest.FixtureRequest) -> Iterator[Refresher]:
    refresher = Refresher(request.param, request)
    try:
        yield refresher
    finally:
        refresher.close()


def ledger_rows(storage: Storage, refresh_id: str, step: str) -> dict[int, sa.Row]:
    ledger = t.refresh_ledger
    query = sa.select(ledger).where(ledger.c.refresh_id == refresh_id, ledger.c.step == step)
    return {row.entity_id: row for row in rows(storage, query)}


def without_offset(stamp: str) -> str:
    return stamp.removesuffix("Z").removesuffix("+00:00")


# -- 1. one bad entity never fails the step ---------------------------------------------------------


def test_odd_and_unstorable_values_fail_only_their_entity(refresher: Refresher) -> None:
    with faulty_simulator() as (simulator, faults):
        universe = simulator.universe
        bad_list = universe.listed_alliance_ids()[5]
        others = sorted(set(universe.member_corporation_ids()) - set(universe.members(bad_list)))
        texty, naive, huge = others[:3]
        path = "/corporations/{}".format
        faults.edits[path(texty)] = lambda body: {
            **body,
            "name": body["name"][:2] + "\u0000" + body["name"][2:],
            "description": "\u0000" + (body.get("description") or "") + "\u0000",
        }
        faults.edits[path(naive)] = lambda body: {
            **body,
            "date_founded": without_offset(body["date_founded"]),
        }
        faults.edits[path(huge)] = lambda body: {**body, "member_count": 2**64}
        faults.edits[f"/alliances/{bad_list}/corporations"] = lambda ids: [*ids, 0]
        refresher.start_workers(simulator.url)

        result = refresher.run(simulator.url)

        assert result.success, "two failed entities are below the 1% limit"
        storage = refresher.storage
        corporations = ledger_rows(storage, result.run_id, CORPORATIONS.name)
        lists = ledger_rows(storage, result.run_id, ALLIANCE_CORPORATIONS.name)
        assert {i for i, r in corporations.items() if r.status == "failed"} == {huge}
        assert "64-bit integer range" in corporations[huge].last_error
        assert {i for i, r in lists.items() if r.status == "failed"} == {bad_list}
        assert "greater than 0" in lists[bad_list].last_error
        assert all(r.status != "pending" for r in [*corporations.values(), *lists.values()])

        stored = {r.id: r for r in rows(storage, sa.select(t.corporations))}
        for corporation_id in (texty, naive):
            want = expected_corporation(universe, corporation_id)
            assert {k: getattr(stored[corporation_id], k) for k in want} == want, (
                "stored faithfully, NUL aside"
            )
        assert stored[naive].date_founded.tzinfo is not None
        assert huge not in stored
        if refresher.stack is not None:
            for lane in ("alliance_corporations", "corporations"):
                assert refresher.stack.queue(f"killreport.{lane}.dead")[0] == 0, (
                    "every job has its ledger row"
                )


def test_data_the_database_refuses_fails_only_that_entity_and_keeps_every_fetched_response(
    refresher: Refresher,
) -> None:
    with faulty_simulator() as (simulator, faults):
        refused = sorted(simulator.universe.member_corporation_ids())[10]
        with refresher.storage.engine.begin() as conn:  # what a database may refuse that ESI sends
            conn.execute(
                sa.text(f"ALTER TABLE corporations ADD CONSTRAINT refuse_one CHECK (id <> {refused})")
            )
        refresher.start_workers(simulator.url)

        first = refresher.run(simulator.url)

        assert first.success
        row = ledger_rows(refresher.storage, first.run_id, CORPORATIONS.name)[refused]
        assert row.status == "failed" and "refuse_one" in row.last_error
        # Every other response was kept with its data: a re-run asks ESI for nothing but the refused one.
        faults.requests.clear()
        again = refresher.run(simulator.url)
        assert again.success
        assert dict(faults.requests) == {f"/corporations/{refused}": 1}


# -- 2. a partial answer never rewrites the universe ------------------------------------------------


def test_a_truncated_alliance_list_closes_nothing_and_names_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = NightClock()
    with postgres_database() as url, faulty_simulator(clock=clock) as (simulator, faults):
        storage = Storage.open(url)
        resources = refresh_resources(
            database_url=url, esi_base_url=simulator.url, poll_interval_seconds=0.05
        )
        assert materialize_all(resources).success
        listed = len(simulator.universe.listed_alliance_ids())
        before = table_dump(storage)
        clock.offset += 24 * 3600
        expire_cache(storage)
        faults.truncate_alliances = 50

        partial = materialize_all(resources)

        assert not partial.success
        message = failure_message(partial)
        assert f"ESI listed 50 alliances; closing the {listed - 50} open ones" in message
        assert f"of the {listed} open alliances" in message and "KILLREPORT_MAX_CLOSE_SHARE=1" in message
        assert table_dump(storage) == before, "nothing closed, no membership dropped, no snapshot rewritten"
        faults.requests.clear()
        assert not materialize_all(resources).success, "the same answer, until it expires"
        assert faults.requests["/alliances"] == 0, "not asked again before its Expires"

        monkeypatch.setenv("KILLREPORT_MAX_CLOSE_SHARE", "1")  # the closures are real: allow them once
        allowed = materialize_all(resources)
        assert allowed.success
        closed = scalar(storage, sa.select(sa.func.count()).where(t.alliances.c.closed_at.is_not(None)))
        assert closed == listed - 50
        storage.dispose()


def test_a_stray_404_on_a_member_list_keeps_the_memberships(refresher: Refresher) -> None:
    clock = NightClock()
    with faulty_simulator(clock=clock) as (simulator, faults):
        refresher.start_workers(simulator.url)
        assert refresher.run(simulator.url).success
        alliance = next(a for a in simulator.universe.listed_alliance_ids() if simulator.universe.members(a))
        members = t.alliance_corporations
        of_alliance = sa.select(members.c.corporation_id).where(members.c.alliance_id == alliance)
        before = {r.corporation_id for r in rows(refresher.storage, of_alliance)}
        assert before
        clock.offset += 24 * 3600
        expire_cache(refresher.storage)
        faults.not_found[f"/alliances/{alliance}/corporations"] = 1

        result = refresher.run(simulator.url)

        assert result.success
        assert {r.corporation_id for r in rows(refresher.storage, of_alliance)} == before
        history = t.membership_history
        left = sa.select(history).where(history.c.alliance_id == alliance, history.c.event == "left")
        assert rows(refresher.storage, left) == [], "a 404 is not 'the alliance has no members'"
        row = ledger_rows(refresher.storage, result.run_id, ALLIANCE_CORPORATIONS.name)[alliance]
        if refresher.stack is None:
            assert (row.status, row.http_status) == ("failed", 404), "kept, failed, tried again next night"
        else:
            assert row.status == "unchanged" and faults.requests[f"/alliances/{alliance}/corporations"] == 3


def test_a_detail_answer_never_reopens_an_alliance_esi_stopped_listing(database_url: str) -> None:
    storage = Storage.open(database_url)
    alliance = make_alliance(99000001, name="Gone Alliance", ticker="GONE", executor_corporation_id=None)

    def fetched(refresh: str) -> Outcome:
        return Outcome(Job(refresh, ALLIANCES, alliance.id), LedgerStatus.DONE, alliance, 200)

    storage.apply([fetched("night-1")])
    storage.listing.sync(ALLIANCES.store, [99000002])  # ESI stopped listing it
    storage.apply([fetched("enrichment-1")])  # `killreport enqueue alliance 99000001`
    closed_at = scalar(storage, sa.select(t.alliances.c.closed_at))
    assert closed_at is not None
    storage.listing.sync(ALLIANCES.store, [99000001])  # listed again: now it reopens
    assert scalar(storage, sa.select(t.alliances.c.closed_at)) is None
    storage.dispose()


# -- 3. no corporation is stale forever -------------------------------------------------------------


def test_corporations_in_no_alliance_are_revalidated_evenly_and_at_least_every_n_days(
    database_url: str,
) -> None:
    storage = Storage.open(database_url)
    now = dt.datetime.now(dt.UTC)
    corporations = [
        Corporation(id=98000000 + i, name=f"C{i}", ticker="C", member_count=i + 1, tax_rate=0.1)
        for i in range(70)
    ]
    storage.apply([Outcome(Job("seed", CORPORATIONS, c.id), LedgerStatus.DONE, c, 200) for c in corporations])
    days = 7
    # Spread their last confirmations over the past week, as steady nightly operation leaves them.
    with storage.engine.begin() as conn:
        for index, corporation in enumerate(corporations):
            confirmed = now - dt.timedelta(days=index % days, hours=1)
            conn.execute(
                t.corporations.update()
                .where(t.corporations.c.id == corporation.id)
                .values(confirmed_at=confirmed)
            )

    seen: list[int] = []
    for night in range(days):
        chosen = storage.memberships.corporations_to_refresh(days)
        assert (chosen.members, chosen.leavers, chosen.unaffiliated) == ([], [], 70)
        assert len(chosen.revalidated) == math.ceil(70 / days), f"night {night}: 1/{days} of them"
        seen += chosen.revalidated
        storage.apply(
            [
                Outcome(
                    Job(f"n{night}", CORPORATIONS, i), LedgerStatus.UNCHANGED, corporations[i - 98000000], 304
                )
                for i in chosen.revalidated
            ]
        )
    assert sorted(seen) == sorted(c.id for c in corporations), "each exactly once a week"

    # A missed week: every one is due, and all are revalidated at once.
    with storage.engine.begin() as conn:
        conn.execute(t.corporations.update().values(confirmed_at=now - dt.timedelta(days=days + 1)))
    assert len(storage.memberships.corporations_to_refresh(days).revalidated) == 70
    storage.dispose()


# -- 4. concurrent handling of one entity is safe ---------------------------------------------------


def test_two_writers_of_one_member_list_never_duplicate_its_history() -> None:
    """Forced interleave: another writer holds the alliance's list (as a duplicate delivery would)
    and commits the same joins while ours waits; ours then finds nothing left to record."""
    with postgres_database() as url:
        storage = Storage.open(url)
        alliance, corporations = 99000001, (98000001, 98000002)
        other = storage.engine.connect()
        other_tx = other.begin()
        other.execute(
            sa.text("SELECT pg_advisory_xact_lock(:n, :k)"),
            {"n": _LOCK_NAMESPACE, "k": alliance_lock_key(alliance)},
        )
        outcome = Outcome(
            Job("night", ALLIANCE_CORPORATIONS, alliance),
            LedgerStatus.DONE,
            AllianceMembers(id=alliance, corporation_ids=corporations),
            200,
        )
        writer = threading.Thread(target=storage.apply, args=([outcome],))
        writer.start()
        waiting = sa.text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
        wait_for(lambda: scalar(storage, waiting) == 1, "our writer to wait for the other's lock", timeout=30)
        now = dt.datetime.now(dt.UTC)
        for corporation in corporations:
            other.execute(
                t.alliance_corporations.insert().values(
                    alliance_id=alliance, corporation_id=corporation, first_seen_at=now
                )
            )
            other.execute(
                t.membership_history.insert().values(
                    alliance_id=alliance,
                    corporation_id=corporation,
                    event="joined",
                    observed_at=now,
                    refresh_id="dup",
                )
            )
        other_tx.commit()
        other.close()
        writer.join(30)
        assert not writer.is_alive()
        history = rows(
            storage, sa.select(t.membership_history.c.corporation_id, t.membership_history.c.event)
        )
        assert sorted(history) == [(98000001, "joined"), (98000002, "joined")]
        storage.dispose()


def test_a_late_duplicate_never_turns_a_done_ledger_row_worse(database_url: str) -> None:
    storage = Storage.open(database_url)
    corporation = Corporation(id=98000001, name="C", ticker="C", member_count=3, tax_rate=0.1)
    job = Job("night", CORPORATIONS, corporation.id)
    storage.ledger.add_pending("night", CORPORATIONS.name, [corporation.id])
    storage.apply([Outcome(job, LedgerStatus.DONE, corporation, 200)])
    storage.apply([Outcome(job, LedgerStatus.FAILED, http_status=503, error="late duplicate")])
    storage.ledger.add_pending("night", CORPORATIONS.name, [corporation.id])  # a retried step
    assert storage.ledger.progress("night", CORPORATIONS.name).by_status == {"done": 1}
    storage.dispose()


# -- all of it at once ------------------------------------------------------------------------------

# Seed 43: a corporation that leaves its alliance on day 1 disbands on day 4, and few alliances close.
SCENARIO = SimulatorConfig(seed=43, alliances=120, corporations=600)


def membership_pairs(universe: Any) -> set[tuple[int, int]]:
    return {(a, c) for a in universe.listed_alliance_ids() for c in universe.members(a)}


def history_since(storage: Storage, since: dt.datetime) -> list[tuple[int, int, str]]:
    history = t.membership_history
    query = sa.select(history.c.alliance_id, history.c.corporation_id, history.c.event).where(
        history.c.observed_at > since
    )
    return [tuple(row) for row in rows(storage, query)]


def test_three_nights_of_real_world_esi_end_with_the_universe_every_night(
    stack: RabbitStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NUL text, a truncated alliance list, a stray 404, a leaver that goes unaffiliated and later
    disbands, and duplicate deliveries, with two workers: after each night the tables equal the
    universe field by field, history holds exactly the real joins and leaves, and no request
    precedes its Expires."""
    from killreport_assets.simulator.universe import CORPORATION_LEFT, diff
    from killreport_assets.transport.rabbitmq import enqueue_enrichment
    from killreport_assets_tests.refresh_support import assert_tables_match

    monkeypatch.setenv("KILLREPORT_REVALIDATE_DAYS", "1")  # the closure is noticed the night it happens
    clock = NightClock()
    storage = stack.storage
    assert storage is not None
    with faulty_simulator(SCENARIO, clock) as (simulator, faults):
        for _ in range(2):
            stack.start_worker(simulator.url, "--concurrency", "8")
        stack.wait_for_consumers("killreport.corporations", 2)
        resources = stack.resources(simulator.url)
        day0 = simulator.universe

        # Night 1: player text with NUL characters in it.
        for corporation in sorted(day0.member_corporation_ids())[:5]:
            faults.edits[f"/corporations/{corporation}"] = lambda body: {
                **body,
                "name": "\u0000" + body["name"],
                "description": (body.get("description") or "") + "\u0000",
            }
        first = materialize_all(resources)
        assert first.success
        assert_tables_match(storage, day0)
        assert simulator.stats()["early_requests"] == 0

        # Night 2: the universe drifted. ESI first answers a truncated alliance list...
        day1 = simulator.set_day(1)
        leavers = diff(day0, day1)[CORPORATION_LEFT]
        assert leavers
        clock.offset += 24 * 3600
        expire_cache(storage)
        before = table_dump(storage)
        night2 = dt.datetime.now(dt.UTC)
        faults.truncate_alliances = len(day1.listed_alliance_ids()) // 2
        assert not materialize_all(resources).success
        assert table_dump(storage) == before, "the partial list changed nothing"
        clock.offset += SCENARIO.cache_ttl + 1  # the operator re-runs once ESI's answer has expired
        expire_cache(storage)

        # ... then the whole list, with a stray 404 on a member list, and the member lists delivered
        # twice (the nightly jobs again, while the corporations step runs).
        faults.truncate_alliances = None
        stray = next(a for a in day1.listed_alliance_ids() if day1.members(a))
        faults.not_found[f"/alliances/{stray}/corporations"] = 1
        outcome: dict[str, dg.ExecuteInProcessResult] = {}
        night = threading.Thread(target=lambda: outcome.update(result=materialize_all(resources)))
        night.start()
        try:
            wait_for(
                lambda: storage.ledger.latest_refresh(step=CORPORATIONS.name) not in (None, first.run_id),
                "night 2's corporations step",
                timeout=120,
            )
            refresh_id = storage.ledger.latest_refresh(step=CORPORATIONS.name)
            assert refresh_id is not None
            duplicates = [Job(refresh_id, ALLIANCE_CORPORATIONS, a) for a in day1.listed_alliance_ids()]
            enqueue_enrichment(stack.url, 1, duplicates)
        finally:
            night.join(300)
        assert outcome["result"].success
        wait_for(lambda: stack.queue("killreport.enrichment")[0] == 0, "the duplicates to be handled")
        assert_tables_match(storage, day1)
        pairs0, pairs1 = membership_pairs(day0), membership_pairs(day1)
        events = history_since(storage, night2)
        assert len(events) == len(set(events)), "no event twice"
        assert {(a, c) for a, c, e in events if e == "joined"} == pairs1 - pairs0
        assert {(a, c) for a, c, e in events if e == "left"} == pairs0 - pairs1
        assert {
            leaver
            for leaver in leavers
            if scalar(storage, sa.select(t.corporations.c.alliance_id).where(t.corporations.c.id == leaver))
            is None
        } == leavers

        # Night 3 (day 4): one of night 2's leavers, now in no alliance, has disbanded.
        day4 = simulator.set_day(4)
        disbanded = {leaver for leaver in leavers if day4.corporation(leaver) is None}
        assert disbanded
        clock.offset += 3 * 24 * 3600
        expire_cache(storage)
        night3 = dt.datetime.now(dt.UTC)
        assert materialize_all(resources).success
        assert_tables_match(storage, day4)
        closed = sa.select(t.corporations.c.id).where(t.corporations.c.closed_at > night3)
        assert disbanded <= {row.id for row in rows(storage, closed)}
        events = history_since(storage, night3)
        assert len(events) == len(set(events))
        assert {(a, c) for a, c, e in events if e == "joined"} == membership_pairs(day4) - pairs1
        assert {(a, c) for a, c, e in events if e == "left"} == pairs1 - membership_pairs(day4)
        stats = simulator.stats()
        assert stats["early_requests"] == 0, stats["early_by_route"]
