"""The ESI client against the simulator over real loopback HTTP: revalidation with 304s after the
TTL, a 420 pause until the error window resets, and both corporation shapes stored identically."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import sqlalchemy as sa

from killreport_assets.esi import Answer, EsiClient, EsiConfig, EsiGovernor, MemoryCache
from killreport_assets.esi.wire import parse_corporation
from killreport_assets.jobs import Job, LedgerStatus
from killreport_assets.jobs import Outcome as JobOutcome
from killreport_assets.registry import CORPORATIONS
from killreport_assets.simulator import SimulatorConfig, SimulatorServer
from killreport_assets.storage import Storage
from killreport_assets_tests import schema as t
from killreport_assets_tests.db import rows

SMALL = SimulatorConfig(seed=5, alliances=60, corporations=300)


def client_for(url: str, cache: MemoryCache | None = None, **options) -> EsiClient:
    config = EsiConfig(
        base_url=url, contact="tests@killreport.invalid", max_requests_per_second=500, **options
    )
    return EsiClient(config, cache or MemoryCache(), governor=EsiGovernor(config))


class ShiftedClock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def test_second_pass_after_the_ttl_revalidates_and_gets_304s_for_unchanged_data() -> None:
    clock = ShiftedClock()
    with SimulatorServer(SMALL, clock=clock) as simulator:
        cache = MemoryCache()
        with client_for(simulator.url, cache) as client:
            listed = client.alliance_ids().value
            with ThreadPoolExecutor(8) as pool:
                first = list(pool.map(client.alliance, listed))
                fresh = list(pool.map(client.alliance, listed))
        assert {r.answer for r in first} == {Answer.FETCHED}
        assert {r.answer for r in fresh} == {Answer.CACHED}, "nothing is requested before Expires"
        assert simulator.stats()["by_route"]["GET /alliances/{id}"] == {"200": len(listed)}

        # The TTL runs out (on both sides' clocks); one alliance is renamed meanwhile.
        clock.offset += SMALL.cache_ttl + 1
        for url, entry in list(cache._entries.items()):
            cache.put(
                url, dataclasses.replace(entry, expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
            )
        before = simulator.universe
        renamed = simulator.set_day(1)
        changed = {a for a in listed if renamed.alliance(a) != before.alliance(a)}
        simulator.reset_stats()
        with client_for(simulator.url, cache) as client, ThreadPoolExecutor(8) as pool:
            second = dict(zip(listed, pool.map(client.alliance, listed), strict=True))

        stats = simulator.stats()
        assert stats["conditional_requests"] == len(listed)
        assert stats["early_requests"] == 0
        unchanged = [a for a in listed if a not in changed]
        assert unchanged and all(second[a].answer is Answer.UNCHANGED for a in unchanged)
        assert stats["not_modified"] == len(unchanged)
        assert all(second[a].value.name == renamed.alliance(a).name for a in listed)


def test_an_injected_420_pauses_the_client_until_the_reset_and_it_then_completes() -> None:
    config = dataclasses.replace(SMALL, error_window=3)
    with SimulatorServer(config) as simulator:
        ids = list(simulator.universe.member_corporation_ids()[:40])
        reset = simulator.exhaust_error_limit()
        started = time.monotonic()
        with client_for(simulator.url) as client, ThreadPoolExecutor(8) as pool:
            results = list(pool.map(client.corporation, ids))
            client_stats = client.stats()
        elapsed = time.monotonic() - started
    assert all(r.answer is Answer.FETCHED for r in results)
    stats = simulator.stats()
    assert 1 <= stats["error_limited"] <= 8, "the first 420s stop every thread; no request storm"
    assert client_stats["waits"]["error_limited"] >= min(reset, 3) - 0.5
    assert elapsed >= min(reset, 3) - 0.5, "it waited for the window to reset"


def test_both_corporation_shapes_parse_to_the_same_stored_values(tmp_path: Path) -> None:
    with SimulatorServer(SMALL) as simulator:
        universe = simulator.universe
        complete = [
            c
            for c in universe.member_corporation_ids()
            if (r := universe.corporation_record(c)).description
            and r.home_station_id
            and r.shares
            and r.war_eligible is not None
            and r.date_founded is not None
            and r.creator_id is not None
        ][:25]
        assert complete
        with httpx.Client(base_url=simulator.url) as http:
            legacy = [http.get(f"/latest/corporations/{c}/").content for c in complete]
            new = [
                http.get(f"/corporations/{c}", headers={"X-Compatibility-Date": "2026-08-04"}).content
                for c in complete
            ]
    assert all(b'tax_rate"' in body for body in legacy) and all(b"tax_rates" in body for body in new)

    stored = {}
    for shape, bodies in (("legacy", legacy), ("new", new)):
        storage = Storage.open(f"sqlite:///{tmp_path / shape}.db")
        storage.apply(
            [
                JobOutcome(Job("r", CORPORATIONS, c), LedgerStatus.DONE, parse_corporation(body, c), 200)
                for c, body in zip(complete, bodies, strict=True)
            ]
        )
        columns = [
            c for c in t.corporations.columns if c.name not in ("created_at", "updated_at", "confirmed_at")
        ]
        stored[shape] = rows(storage, sa.select(*columns).order_by(t.corporations.c.id))
        storage.dispose()
    assert stored["legacy"] == stored["new"]
    assert all(0 <= row.tax_rate <= 1 for row in stored["new"])
