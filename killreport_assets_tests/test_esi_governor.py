"""EsiGovernor decisions on a manual clock: pacing, error budget, pauses, downtime."""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from datetime import time as time_of_day
from pathlib import Path
from typing import Any

import httpx
import pytest

from killreport_assets.esi import EsiConfig, EsiGovernor, EsiPaused
from killreport_assets.storage import Storage
from killreport_assets.storage.fleet import EsiFleet

from .esi_support import ManualClock
from .rabbit_support import wait_for

pytestmark = pytest.mark.timeout(30)

ROUTE = "/alliances/{alliance_id}"
OTHER_ROUTE = "/corporations/{corporation_id}"


def make_governor(clock: ManualClock, **options: Any) -> tuple[EsiGovernor, list[tuple[str, float]]]:
    settings: dict[str, Any] = {"contact": "ops@example.com", "max_requests_per_second": 20.0, **options}
    pauses: list[tuple[str, float]] = []
    governor = EsiGovernor(
        EsiConfig(**settings), clock=clock, on_pause=lambda *p: pauses.append(p), rng=random.Random(7)
    )
    return governor, pauses


def send(governor: EsiGovernor, route: str = ROUTE, status: int = 200, **headers: str) -> dict[str, float]:
    """One request through the governor; returns what it waited for."""
    with governor.permit(route) as permit:
        named = {name.replace("_", "-"): value for name, value in headers.items()}
        governor.observe(route, httpx.Response(status, headers=named))
    return permit.waits


def limit(remain: int, reset: int) -> dict[str, str]:
    return {"X_Esi_Error_Limit_Remain": str(remain), "X_Esi_Error_Limit_Reset": str(reset)}


def test_pacing_spaces_requests_at_the_rate_after_a_small_burst() -> None:
    clock = ManualClock()
    governor, _ = make_governor(clock)
    started = clock.monotonic()
    for _ in range(40):
        send(governor)
    assert clock.monotonic() - started == pytest.approx(1.9)  # 2 at once, then one per 50 ms
    assert clock.sleeps[:2] == [pytest.approx(0.05), pytest.approx(0.05)]
    assert governor.stats()["waits"] == {"rate": pytest.approx(1.9)}


def test_rate_slows_in_proportion_below_half_the_error_budget() -> None:
    clock = ManualClock()
    governor, pauses = make_governor(clock, max_requests_per_second=10.0)
    send(governor, **limit(100, 60))
    send(governor, **limit(25, 59))  # a quarter left: half the rate
    clock.advance(1)
    first = clock.monotonic()
    for _ in range(5):
        send(governor, **limit(25, 58))
    assert clock.monotonic() - first == pytest.approx(4 * 0.2)
    assert pauses == []


def test_budget_at_the_margin_holds_until_the_window_resets_and_logs_once() -> None:
    clock = ManualClock()
    governor, pauses = make_governor(clock, max_concurrency=5)  # margin max(10, 5) = 10
    send(governor, **limit(11, 40))
    assert pauses == []
    send(governor, **limit(10, 40))
    waits = [send(governor, **limit(100, 60)), send(governor, **limit(100, 59))]
    assert waits[0] == {"error_limit_hold": pytest.approx(41.0)}  # Reset + 1 s
    assert waits[1] == {}
    assert pauses == [("error_limit_hold", pytest.approx(41.0))]


def test_straggler_from_an_earlier_window_does_not_lower_the_new_one() -> None:
    clock = ManualClock()
    governor, _ = make_governor(clock)
    send(governor, **limit(30, 2))
    clock.advance(3)  # that window is over
    send(governor, **limit(100, 60))
    send(governor, **limit(5, 0))  # a late answer from the old window
    assert governor.stats()["error_limit_remain"] == 100
    assert "error_limit_hold" not in send(governor)


def test_420_pauses_everything_for_reset_plus_margin() -> None:
    clock = ManualClock()
    governor, pauses = make_governor(clock)
    send(governor, status=420, **limit(0, 7))
    assert send(governor, OTHER_ROUTE) == {"error_limited": pytest.approx(8.0)}
    send(governor, status=420)  # no headers: 10 s default
    assert pauses == [("error_limited", 8.0), ("error_limited", 11.0)]
    assert governor.stats()["error_limited_420"] == 2


def test_many_420s_in_flight_are_announced_once() -> None:
    clock = ManualClock()
    governor, pauses = make_governor(clock)
    for _ in range(5):
        governor.observe(ROUTE, httpx.Response(420, headers={"X-Esi-Error-Limit-Reset": "7"}))
    assert pauses == [("error_limited", 8.0)]
    assert governor.stats()["error_limited_420"] == 5


def test_429_pauses_only_its_group() -> None:
    clock = ManualClock()
    governor, pauses = make_governor(clock)
    group = {"X_Ratelimit_Group": "alliance", "X_Ratelimit_Limit": "150/15m", "X_Ratelimit_Remaining": "120"}
    send(governor, status=429, Retry_After="4", **group)
    assert send(governor, OTHER_ROUTE) == {}
    assert send(governor, ROUTE) == {"rate_limited": pytest.approx(5.0)}
    assert pauses == [("rate_limited", 5.0)]


def test_429_without_a_group_pauses_everything() -> None:
    clock = ManualClock()
    governor, _ = make_governor(clock)
    send(governor, ROUTE, status=429)
    assert send(governor, OTHER_ROUTE) == {"rate_limited": pytest.approx(11.0)}
    assert governor.stats()["rate_limited_429"] == 1


def test_a_group_running_low_is_slowed_down_alone() -> None:
    clock = ManualClock()
    governor, _ = make_governor(clock)
    send(governor, X_Ratelimit_Group="alliance", X_Ratelimit_Limit="100/15m", X_Ratelimit_Remaining="10")
    clock.advance(1)
    start = clock.monotonic()
    for _ in range(3):
        send(governor, ROUTE)
    assert clock.monotonic() - start == pytest.approx(
        2 / (20.0 * 10 / 50)
    )  # 10 of 100 left: 20 % of the rate
    assert [send(governor, OTHER_ROUTE) for _ in range(2)] == [{}, {}]  # other routes keep the full rate


@pytest.mark.parametrize(
    ("now", "start", "end", "left"),
    [
        (datetime(2026, 8, 1, 11, 5, tzinfo=UTC), time_of_day(11, 0), time_of_day(11, 15), 600.0),
        (datetime(2026, 8, 1, 11, 15, tzinfo=UTC), time_of_day(11, 0), time_of_day(11, 15), None),
        (datetime(2026, 8, 1, 10, 59, tzinfo=UTC), time_of_day(11, 0), time_of_day(11, 15), None),
        (datetime(2026, 8, 1, 23, 59, tzinfo=UTC), time_of_day(23, 50), time_of_day(0, 10), 660.0),
        (datetime(2026, 8, 2, 0, 5, tzinfo=UTC), time_of_day(23, 50), time_of_day(0, 10), 300.0),
        (datetime(2026, 8, 1, 11, 5, tzinfo=UTC), time_of_day(11, 0), time_of_day(11, 0), None),
    ],
)
def test_downtime_503_opens_the_circuit_only_inside_the_window(
    now: datetime, start: time_of_day, end: time_of_day, left: float | None
) -> None:
    """Inside the window a 502/503 holds every request until a probe (about every 30 s) answers,
    however much of the window is left; outside it, it is an ordinary failure."""
    clock = ManualClock(now)
    governor, pauses = make_governor(clock, downtime_start=start, downtime_end=end)
    assert governor.downtime_pause() is (left is not None)
    if left is None:
        assert pauses == [] and governor.paused() is None
        return
    assert governor.paused() == "downtime"
    assert [reason for reason, _ in pauses] == ["downtime"] and 24 <= pauses[0][1] <= 36
    with governor.permit(ROUTE) as probe:
        governor.settle(probe, ok=True)
    assert probe.probe and probe.waits["downtime"] == pytest.approx(pauses[0][1], abs=0.01)
    assert governor.paused() is None and pauses[-1] == ("downtime", 0.0), "the pause ended at the probe"


def test_shared_governor_is_one_per_esi() -> None:
    config = EsiConfig(base_url="http://127.0.0.1:1", contact="ops@example.com")
    same = EsiConfig(base_url="http://127.0.0.1:1/", contact="someone@example.com")
    other = EsiConfig(base_url="http://127.0.0.1:2", contact="ops@example.com")
    assert EsiGovernor.shared(config) is EsiGovernor.shared(same)
    assert EsiGovernor.shared(config) is not EsiGovernor.shared(other)


def test_mostly_failing_answers_open_the_circuit_and_one_good_probe_closes_it() -> None:
    """16 of the last 20 answers failed: every request waits; probes (not the waiting requests) go
    out at a growing interval, and the first one ESI answers lets everyone through."""
    clock = ManualClock()
    governor, pauses = make_governor(clock)
    for ok in [True] * 4 + [False] * 16:
        with governor.permit(ROUTE) as permit:
            governor.settle(permit, ok)
    assert governor.paused() == "outage" and pauses[-1][0] == "outage"
    answers = iter([False, False, True])
    probes: list[float] = []

    def probe() -> bool:
        probes.append(clock.monotonic())
        return next(answers)

    with governor.permit(ROUTE, probe=probe) as permit:
        governor.settle(permit, True)
    assert not permit.probe and governor.paused() is None and pauses[-1] == ("outage", 0.0)
    gaps = [later - earlier for earlier, later in zip(probes, probes[1:], strict=False)]
    assert len(probes) == 3 and 8 <= gaps[0] <= 12 and 16 <= gaps[1] <= 24, "the interval doubles"


def test_a_request_held_by_an_open_circuit_is_handed_back_or_aborted() -> None:
    clock = ManualClock()
    config = EsiConfig(contact="ops@example.com")
    governor = EsiGovernor(config, clock=clock, max_hold=30.0)
    for _ in range(10):
        with governor.permit(ROUTE) as permit:
            governor.settle(permit, False)
    assert governor.paused() == "outage"
    with pytest.raises(EsiPaused, match="paused"), governor.permit(ROUTE, probe=lambda: False):
        pass
    assert 30 <= clock.monotonic() - 1000.0 < 40, "held for max_hold, not forever"
    stop = threading.Event()
    stop.set()
    with pytest.raises(EsiPaused, match="closed"), governor.permit(ROUTE, stop):
        pass


def test_another_process_finding_esi_down_holds_this_one_too() -> None:
    """A peer on the host reports an open circuit: requests here wait (without probing) until the
    peer reports it closed, even though this process has seen no failure itself."""
    clock = ManualClock()
    governor, _ = make_governor(clock)
    reports: list[tuple[str, float] | None] = [("outage", 4.0), ("outage", 2.0), None]
    reads: list[float] = []

    def peers() -> tuple[str, float] | None:
        reads.append(clock.monotonic())
        return reports[min(len(reads) - 1, len(reports) - 1)]

    stop = governor.watch_peers(peers)
    waits = send(governor)
    assert governor.paused() is None, "this process's own circuit stays closed"
    # read once a second: still down at 0 s and 1 s, closed at 2 s
    assert reads == [1000.0, 1001.0, 1002.0] and waits == {"outage": pytest.approx(2.0)}
    stop()
    assert send(governor).get("outage") is None


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[EsiFleet]:
    """The fleet's tables in a real (SQLite) database."""
    storage = Storage.open(f"sqlite:///{tmp_path / 'fleet.db'}")
    yield storage.fleet
    storage.dispose()


def test_processes_sharing_a_budget_keep_its_rate_together(fleet: EsiFleet) -> None:
    """Two processes (governors) on one budget of 20 requests/s: 60 requests take 3 s between
    them, as one process would, not 1.5 s, and no second of it holds more than the budget plus the
    one booked slice (0.1 s) a late slot may shift."""
    clock = ManualClock()
    governors = [make_governor(clock)[0] for _ in range(2)]
    for number, governor in enumerate(governors):
        governor.share_budget(fleet.share("https://esi.test", f"process {number}"))
    started = clock.monotonic()
    sent: list[float] = []
    for index in range(60):
        send(governors[index % 2])
        sent.append(clock.monotonic())
    assert clock.monotonic() - started == pytest.approx(2.95, abs=0.06)
    assert max(sum(1 for t in sent if start <= t < start + 1.0) for start in sent) <= 20 + 2
    assert [g.stats()["fleet_members"] for g in governors] == [2, 2]


def test_a_process_that_stops_sending_leaves_the_budget_to_the_others(fleet: EsiFleet) -> None:
    clock = ManualClock()
    busy, idle = make_governor(clock)[0], make_governor(clock)[0]
    busy.share_budget(fleet.share("https://esi.test", "busy"))
    leave = idle.share_budget(fleet.share("https://esi.test", "idle"))
    send(idle)
    leave()
    clock.advance(1.0)
    started = clock.monotonic()
    for _ in range(20):
        send(busy)
    assert clock.monotonic() - started == pytest.approx(0.95, abs=0.06)  # the whole rate
    assert busy.stats()["fleet_members"] == 1


def test_requests_on_the_wire_are_capped_at_this_process_s_share_of_the_error_budget(
    fleet: EsiFleet,
) -> None:
    """25 errors left, a reserve of 10 and three processes sending: this one may have
    (25 − 10) ÷ 3 = 5 requests on the wire, whatever its concurrency; the sixth waits until one
    answers. At 12 left the share is below one request: everything holds until the window resets."""
    clock = ManualClock()
    governor, pauses = make_governor(clock, max_concurrency=20, max_requests_per_second=1000.0)
    for other in ("worker a", "worker b"):
        fleet.heartbeat("https://esi.test", other, clock.now().timestamp(), 60.0)
    governor.share_budget(fleet.share("https://esi.test", "worker c"))
    send(governor, **limit(25, 30))
    assert governor.stats()["fleet_members"] == 3
    with contextlib.ExitStack() as on_wire:
        for _ in range(5):
            on_wire.enter_context(governor.permit(ROUTE))
        entered = threading.Event()

        def sixth() -> None:
            with governor.permit(ROUTE):
                entered.set()

        thread = threading.Thread(target=sixth)
        thread.start()
        wait_for(lambda: governor.stats()["error_share_waits"], "the sixth request to wait", 10)
        assert not entered.is_set()
    thread.join(10)
    assert entered.is_set(), "a request leaving the wire lets the next one on"
    send(governor, **limit(12, 30))
    assert send(governor, **limit(100, 60)) == {"error_limit_hold": pytest.approx(31.0, abs=0.01)}
    assert pauses == [("error_limit_hold", pytest.approx(31.0, abs=0.01))]
