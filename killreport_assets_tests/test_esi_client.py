"""EsiClient behaviour over real loopback HTTP: headers, caching, retries, pauses, bisection."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from datetime import time as time_of_day
from email.utils import format_datetime
from typing import Any

import pytest

from killreport_assets.esi import (
    Answer,
    CacheEntry,
    EsiBadRequest,
    EsiClient,
    EsiConfig,
    EsiError,
    EsiGovernor,
    EsiPaused,
    EsiResponseInvalid,
    EsiUnavailable,
    MemoryCache,
)
from killreport_assets.version import __version__

from .esi_support import ManualClock, Reply, Request, StubEsi, json_reply, sequence, serve

pytestmark = pytest.mark.timeout(30)

ALLIANCE = {
    "creator_corporation_id": 98199293,
    "creator_id": 91432281,
    "date_founded": "2013-05-06T22:20:14Z",
    "executor_corporation_id": 98199293,
    "name": "Brave Collective",
    "ticker": "BRAVE",
}
NO_DOWNTIME = time_of_day(0, 0)


@pytest.fixture
def stub() -> Iterator[StubEsi]:
    yield from serve()


def make_client(
    stub: StubEsi,
    clock: ManualClock | None = None,
    governor_options: dict[str, Any] | None = None,
    **options: Any,
) -> EsiClient:
    """A client with its own governor and cache; downtime handling off unless a test sets it."""
    settings: dict[str, Any] = {
        "base_url": stub.url + "/",
        "contact": "ops@example.com",
        "max_requests_per_second": 1000.0,
        "backoff_base": 0.5,
        "downtime_start": NO_DOWNTIME,
        "downtime_end": NO_DOWNTIME,
    }
    config = EsiConfig(**{**settings, **options})
    governor = EsiGovernor(config, clock=clock, **{"reset_margin": 1.0, **(governor_options or {})})
    return EsiClient(config, MemoryCache(), governor=governor)


def test_sends_identification_headers_and_new_style_paths(stub: StubEsi) -> None:
    stub.respond = lambda _: json_reply([99000001, 99000002])
    with make_client(stub) as client:
        result = client.alliance_ids()
    assert result.value == [99000001, 99000002]
    assert result.answer is Answer.FETCHED
    (request,) = stub.requests
    assert request.path == "/alliances"
    assert request.headers["x-compatibility-date"] == "2026-07-21"
    assert request.headers["accept"] == "application/json"
    assert request.headers["user-agent"].startswith(
        f"killreport-assets/{__version__} (ops@example.com; +https://github.com/killreport/killreport_assets) httpx/"
    )


def test_fresh_cache_entry_is_served_without_a_request(stub: StubEsi) -> None:
    stub.respond = lambda _: json_reply(ALLIANCE, ETag='"v1"', Cache_Control="public, max-age=3600")
    with make_client(stub) as client:
        first = client.alliance(99003214)
        second = client.alliance(99003214)
    assert first.answer is Answer.FETCHED and first.status == 200 and first.attempts == 1
    assert second.answer is Answer.CACHED and second.status is None and second.attempts == 0
    assert second.value == first.value and second.value is not None and second.value.id == 99003214
    assert second.etag == '"v1"' and second.expires_at == first.expires_at
    assert len(stub.requests) == 1


def test_a_cache_shared_between_clients_is_honoured(stub: StubEsi) -> None:
    """As with several processes on one database cache: what one fetched, the other does not refetch."""
    stub.respond = lambda _: json_reply(ALLIANCE, Cache_Control="max-age=3600")
    cache = MemoryCache()
    config = EsiConfig(base_url=stub.url, contact="ops@example.com")
    with EsiClient(config, cache, governor=EsiGovernor(config)) as one:
        one.alliance(99003214)
    with EsiClient(config, cache, governor=EsiGovernor(config)) as other:
        assert other.alliance(99003214).answer is Answer.CACHED
    assert len(stub.requests) == 1


def test_a_cached_body_that_no_longer_validates_is_refetched_unconditionally(stub: StubEsi) -> None:
    stub.respond = lambda _: json_reply(ALLIANCE, ETag='"v2"', Cache_Control="max-age=3600")
    cache = MemoryCache()
    url = f"{stub.url}/alliances/99003214"
    cache.put(url, CacheEntry(etag='"v1"', last_modified=None, expires_at=datetime(2000, 1, 1), body=b"{}"))
    config = EsiConfig(base_url=stub.url, contact="ops@example.com")
    with EsiClient(config, cache, governor=EsiGovernor(config)) as client:
        result = client.alliance(99003214)
    assert result.answer is Answer.FETCHED
    assert "if-none-match" not in stub.requests[0].headers
    stored = cache.get(url)
    assert stored is not None and stored.etag == '"v2"'


def test_expired_entry_is_revalidated_and_a_304_returns_the_stored_body(stub: StubEsi) -> None:
    last_modified = "Tue, 14 Nov 2017 11:11:26 GMT"
    stub.respond = sequence(
        json_reply(ALLIANCE, ETag='W/"v1"', Last_Modified=last_modified, Cache_Control="max-age=60"),
        Reply(304, headers={"ETag": 'W/"v1"', "Cache-Control": "max-age=120"}),
    )
    clock = ManualClock()
    with make_client(stub, clock) as client:
        first = client.alliance(99003214)
        clock.advance(61)
        second = client.alliance(99003214)
        clock.advance(119)
        third = client.alliance(99003214)
    assert [r.answer for r in (first, second, third)] == [Answer.FETCHED, Answer.UNCHANGED, Answer.CACHED]
    assert first.expires_at == datetime(2026, 8, 1, 0, 1, tzinfo=UTC)
    assert second.value == first.value and second.status == 304
    assert second.expires_at == clock.now() - timedelta(seconds=119) + timedelta(seconds=120)
    assert len(stub.requests) == 2
    revalidation = stub.requests[1].headers
    assert revalidation["if-none-match"] == 'W/"v1"'
    assert revalidation["if-modified-since"] == last_modified
    assert "if-none-match" not in stub.requests[0].headers


def test_expiry_uses_expires_minus_date_not_the_local_clock(stub: StubEsi) -> None:
    server_now = datetime(2020, 1, 1, 12, 0, tzinfo=UTC)  # a server clock far from ours
    expires = format_datetime(server_now + timedelta(seconds=300), usegmt=True)
    stub.respond = lambda _: json_reply([1], Date=format_datetime(server_now, usegmt=True), Expires=expires)
    clock = ManualClock()
    with make_client(stub, clock) as client:
        result = client.alliance_corporations(99003214)
        clock.advance(299)
        assert client.alliance_corporations(99003214).answer is Answer.CACHED
    assert result.expires_at == datetime(2026, 8, 1, 0, 5, tzinfo=UTC)
    assert len(stub.requests) == 1


def test_404_is_gone_and_not_cached(stub: StubEsi) -> None:
    stub.respond = lambda _: json_reply({"error": "Corporation not found"}, 404)
    with make_client(stub) as client:
        results = [client.corporation(98000001) for _ in range(2)]
    assert all(r.answer is Answer.GONE and r.value is None and r.status == 404 for r in results)
    assert len(stub.requests) == 2


def test_400_raises_bad_request_without_retrying(stub: StubEsi) -> None:
    stub.respond = lambda _: json_reply({"error": "bad compatibility date"}, 400)
    with make_client(stub) as client, pytest.raises(EsiBadRequest, match="bad compatibility date") as caught:
        client.alliance(99003214)
    assert caught.value.status == 400
    assert len(stub.requests) == 1


def test_other_4xx_raise_esi_error_with_status_and_excerpt(stub: StubEsi) -> None:
    stub.respond = lambda _: json_reply({"error": "forbidden"}, 403)
    with make_client(stub) as client, pytest.raises(EsiError, match="forbidden") as caught:
        client.alliance(99003214)
    assert caught.value.status == 403 and type(caught.value) is EsiError
    assert len(stub.requests) == 1


def test_5xx_are_retried_with_capped_full_jitter_backoff(stub: StubEsi) -> None:
    html = Reply(504, b"<html><body>504 Gateway Time-out</body></html>", {"Content-Type": "text/html"})
    stub.respond = sequence(
        json_reply({"error": "No reply within 10 seconds"}, 502),
        json_reply({"error": "unavailable"}, 503),
        html,
        json_reply({"error": "Unhandled internal error encountered!"}, 500),
        json_reply(ALLIANCE),
    )
    clock = ManualClock()
    with make_client(stub, clock, max_attempts=5, backoff_base=0.5, backoff_cap=1.5) as client:
        result = client.alliance(99003214)
        stats = client.stats()
    assert result.answer is Answer.FETCHED and result.attempts == 5
    assert stats["retries"] == 4 and stats["max_attempts_used"] == 5
    assert stats["by_status"] == {200: 1, 500: 1, 502: 1, 503: 1, 504: 1}
    assert len(clock.sleeps) == 4
    assert all(
        0 <= slept <= ceiling for slept, ceiling in zip(clock.sleeps, [0.5, 1.0, 1.5, 1.5], strict=True)
    )


def test_retries_are_bounded_by_max_attempts(stub: StubEsi) -> None:
    stub.respond = lambda _: json_reply({"error": "unavailable"}, 503)
    with make_client(stub, ManualClock(), max_attempts=3) as client:
        with pytest.raises(EsiUnavailable) as caught:
            client.corporation(98000001)
        stats = client.stats()
    assert caught.value.attempts == 3 and caught.value.last_status == 503
    assert len(stub.requests) == 3 and stats["max_attempts_used"] == 3


def test_a_read_timeout_is_retried(stub: StubEsi) -> None:
    release = threading.Event()

    def respond(request: Request) -> Reply:
        if len(stub.requests) == 1:
            release.wait(5)  # outlive the client's read timeout
        return json_reply(ALLIANCE)

    stub.respond = respond
    try:
        with make_client(stub, ManualClock(), read_timeout=0.2) as client:
            result = client.alliance(99003214)
            stats = client.stats()
    finally:
        release.set()
    assert result.answer is Answer.FETCHED and result.attempts == 2
    assert stats["transport_errors"] == {"ReadTimeout": 1}


def test_connections_are_kept_alive_one_per_request_in_flight(stub: StubEsi) -> None:
    """Eight requests held in flight together open eight connections; the next forty reuse them,
    from any thread; a closed client opens none."""
    together = threading.Barrier(8, timeout=10)
    answered = 0
    lock = threading.Lock()

    def respond(_: Request) -> Reply:
        nonlocal answered
        with lock:
            answered += 1
            first_eight = answered <= 8
        if first_eight:
            together.wait()  # all eight are on the wire at once
        return json_reply(ALLIANCE)

    stub.respond = respond
    client = make_client(stub, max_requests_per_second=10_000)
    with ThreadPoolExecutor(8) as pool:
        assert all(r.answer is Answer.FETCHED for r in pool.map(client.alliance, range(1, 9)))
        assert all(r.answer is Answer.FETCHED for r in pool.map(client.alliance, range(9, 49)))
    assert (answered, stub.connections) == (48, 8)
    client.close()
    with pytest.raises(EsiPaused, match="closed"):
        client.alliance(1)
    assert stub.connections == 8


def test_connection_errors_exhaust_attempts() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = EsiConfig(base_url=f"http://127.0.0.1:{port}", contact="ops@example.com", max_attempts=2)
    governor = EsiGovernor(config, clock=ManualClock())
    with EsiClient(config, governor=governor) as client, pytest.raises(EsiUnavailable) as caught:
        client.alliance_ids()
    assert caught.value.attempts == 2 and caught.value.last_status is None
    assert caught.value.last_error is not None and caught.value.last_error.startswith("ConnectError")


def test_invalid_body_names_route_id_and_field_and_is_not_cached(stub: StubEsi) -> None:
    body = {
        "name": "C C P",
        "ticker": "-CCP-",
        "member_count": "many",
        "ceo_id": 1,
        "creator_id": 1,
        "tax_rate": 0,
    }
    stub.respond = lambda _: json_reply(body, ETag='"x"', Cache_Control="max-age=3600")
    cache = MemoryCache()
    config = EsiConfig(base_url=stub.url, contact="ops@example.com")
    with (
        EsiClient(config, cache, governor=EsiGovernor(config)) as client,
        pytest.raises(EsiResponseInvalid) as caught,
    ):
        client.corporation(98000001)
    error = caught.value
    assert (error.route, error.entity_id, error.field) == (
        "/corporations/{corporation_id}",
        98000001,
        "member_count",
    )
    assert cache.get(f"{stub.url}/corporations/98000001") is None


def test_universe_names_batches_by_1000_and_bisects_404s(stub: StubEsi) -> None:
    invalid = {5, 1700}
    ids = list(range(1, 2102))

    def respond(request: Request) -> Reply:
        batch = request.json()
        if len(batch) > 1000:
            return json_reply({"error": "too many"}, 400)
        if invalid & set(batch):
            return json_reply({"error": "Ensure all IDs are valid before resolving"}, 404)
        return json_reply([{"id": i, "name": f"n{i}", "category": "character"} for i in batch])

    stub.respond = respond
    with make_client(stub) as client:
        names = client.universe_names(ids + ids[:10])  # duplicates are sent once
        stats = client.stats()
    assert sorted(n.id for n in names) == sorted(set(ids) - invalid)
    assert all(r.method == "POST" and r.path == "/universe/names" for r in stub.requests)
    assert max(len(r.json()) for r in stub.requests) == 1000
    assert stats["names_unresolved"] == 2


def test_420_pauses_every_client_of_the_governor_until_the_reset(stub: StubEsi) -> None:
    """Real time: the wait is the behaviour. Client A is 420'd; B, sharing the governor, must wait too."""
    stub.respond = lambda request: (
        json_reply({"error": "This software has exceeded the error limit for ESI."}, 420, **_limit(0, 1))
        if request.path == "/alliances/1" and len(stub.requests) == 1
        else json_reply(ALLIANCE, **_limit(100, 60))
    )
    paused = threading.Event()
    pause_started: list[float] = []

    def on_pause(reason: str, seconds: float) -> None:
        pause_started.append(time.monotonic())
        paused.set()

    config = EsiConfig(
        base_url=stub.url, contact="ops@example.com", downtime_start=NO_DOWNTIME, downtime_end=NO_DOWNTIME
    )
    governor = EsiGovernor(config, on_pause=on_pause, reset_margin=0.2)
    with EsiClient(config, governor=governor) as a, EsiClient(config, governor=governor) as b:
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(a.alliance, 1)
            assert paused.wait(10)
            second = b.alliance(2)
            first_result = first.result(10)
        a_stats = a.stats()
    assert first_result.answer is Answer.FETCHED and first_result.attempts == 1  # the 420 spent no attempt
    assert second.answer is Answer.FETCHED
    b_request = next(r for r in stub.requests if r.path == "/alliances/2")
    assert b_request.arrived - pause_started[0] >= 1.1  # Reset 1 s + 0.2 s margin
    assert a_stats["error_limited_420"] == 1 and governor.stats()["error_limited_420"] == 1


def test_repeated_420s_give_up_after_bounded_pauses(stub: StubEsi) -> None:
    stub.respond = lambda _: json_reply({"error": "error limited"}, 420, **_limit(0, 5))
    clock = ManualClock()
    with make_client(stub, clock) as client, pytest.raises(EsiUnavailable) as caught:
        client.alliance(1)
    assert caught.value.last_status == 420 and caught.value.attempts == 0
    assert len(stub.requests) == 4  # the first try and three pauses
    assert sum(clock.sleeps) == pytest.approx(18.0), "three pauses of Reset + 1 s, slept in short slices"


def test_low_error_budget_holds_requests_until_the_window_resets(stub: StubEsi) -> None:
    stub.respond = sequence(json_reply(ALLIANCE, **_limit(10, 30)), json_reply(ALLIANCE, **_limit(100, 60)))
    clock = ManualClock()
    pauses: list[tuple[str, float]] = []
    with make_client(stub, clock, governor_options={"on_pause": lambda *p: pauses.append(p)}) as client:
        client.alliance(1)
        result = client.alliance(2)
        stats = client.stats()
    assert result.answer is Answer.FETCHED
    assert pauses == [("error_limit_hold", 31.0)]  # Reset + 1 s
    assert stats["waits"] == {"error_limit_hold": 31.0}


def test_429_pauses_the_rate_limit_group_for_retry_after(stub: StubEsi) -> None:
    group = {"X_Ratelimit_Group": "alliance", "X_Ratelimit_Limit": "150/15m"}
    stub.respond = sequence(
        json_reply({"error": "too many requests"}, 429, Retry_After="5", X_Ratelimit_Remaining="0", **group),
        json_reply(ALLIANCE, X_Ratelimit_Remaining="148", **group),
    )
    clock = ManualClock()
    with make_client(stub, clock) as client:
        result = client.alliance(1)
        stats = client.stats()
    assert result.answer is Answer.FETCHED and result.attempts == 1
    assert stats["rate_limited_429"] == 1
    assert stats["waits"]["rate_limited"] == 6.0  # Retry-After + 1 s


def test_downtime_503_waits_for_esi_without_spending_attempts(stub: StubEsi) -> None:
    """Real time: ESI answers 503 for 1.5 s inside the configured downtime window (which lasts
    another 10 minutes); probes every 0.2 s find it back long before the window ends."""
    now = datetime.now(UTC)
    started = time.monotonic()
    end = now + timedelta(seconds=1.5)
    stub.respond = lambda request: (
        json_reply({"error": "The datasource tranquility is temporarily unavailable"}, 503)
        if datetime.now(UTC) < end
        else json_reply(ALLIANCE)
    )
    options = {
        "downtime_start": (now - timedelta(minutes=5)).time(),
        "downtime_end": (now + timedelta(minutes=10)).time(),
        "max_attempts": 1,
    }
    with make_client(stub, governor_options={"downtime_probe": 0.2}, **options) as client:
        result = client.alliance(99003214)
        stats = client.stats()
        elapsed = time.monotonic() - started
    assert result.answer is Answer.FETCHED and result.attempts == 1, "the 503s spent no attempt"
    assert 1.5 <= elapsed < 60, "resumed at the first good probe, not at the end of the window"
    assert 2 <= len(stub.requests) <= 12, "one probe at a time, about every 0.2 s"
    assert stats["waits"]["downtime"] > 0


def test_request_rate_cap_is_honoured_across_threads(stub: StubEsi) -> None:
    """Real time: 40 requests at 20 req/s (burst of 2) cannot take less than 1.9 s."""
    stub.respond = lambda _: json_reply(ALLIANCE)
    with make_client(stub, max_requests_per_second=20.0, max_concurrency=4) as client:
        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(client.alliance, range(1, 41)))
        elapsed = time.monotonic() - started
    assert all(r.answer is Answer.FETCHED for r in results)
    arrivals = sorted(r.arrived for r in stub.requests)
    assert arrivals[-1] - arrivals[0] >= 1.85
    assert 1.85 <= elapsed < 5


def _limit(remain: int, reset: int) -> dict[str, str]:
    return {"X_Esi_Error_Limit_Remain": str(remain), "X_Esi_Error_Limit_Reset": str(reset)}
