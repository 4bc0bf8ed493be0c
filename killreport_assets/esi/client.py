"""The ESI client: six public routes, cached, conditional, retried, and paced by the governor."""

from __future__ import annotations

import logging
import random
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import httpx
from pydantic import ValidationError

from killreport_assets.version import __version__

from . import wire
from .cache import CacheEntry, HttpCache, MemoryCache, WritableCache
from .clock import Clock
from .config import EsiConfig
from .connections import ConnectionLender
from .errors import EsiBadRequest, EsiError, EsiPaused, EsiResponseInvalid, EsiUnavailable
from .fleet import SharedBudget
from .freshness import expires_at
from .governor import EsiGovernor, Wait
from .models import Alliance, AllianceHistoryEntry, Corporation, UniverseName
from .result import Answer, EsiResult
from .stats import ClientStats

T = TypeVar("T")

logger = logging.getLogger("killreport_assets.esi")

PROJECT_URL = "https://github.com/killreport/killreport_assets"

ALLIANCES_ROUTE = "/alliances"
ALLIANCE_ROUTE = "/alliances/{alliance_id}"
ALLIANCE_CORPORATIONS_ROUTE = "/alliances/{alliance_id}/corporations"
CORPORATION_ROUTE = "/corporations/{corporation_id}"
CORPORATION_ALLIANCE_HISTORY_ROUTE = "/corporations/{corporation_id}/alliancehistory"
UNIVERSE_NAMES_ROUTE = "/universe/names"
_PLACEHOLDER = re.compile(r"\{[a-z_]+\}")

_NAMES_BATCH = 1000  # ESI's maxItems for POST /universe/names
_RETRY_STATUSES = frozenset({500, 502, 503, 504})
_DOWNTIME_STATUSES = frozenset({502, 503})
_THROTTLE_STATUSES = frozenset({420, 429})
_RETRY_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
# Consecutive 420/429/downtime pauses one request may sit through before giving up; they do not
# spend attempts, so this is what keeps them bounded.
_MAX_FREE_WAITS = 3
_EXCERPT = 200
# The largest body accepted: ESI's biggest answers here (the alliance list, a names batch) are tens of
# kilobytes; a body of megabytes is broken or hostile and fails its entity instead of filling memory
# and the database.
MAX_BODY_BYTES = 1024 * 1024


class EsiClient:
    """Thread-safe: one instance (one set of connections) is meant to be shared by all threads.

    `cache` defaults to a private `MemoryCache`. The client reads it, and writes each response it
    should keep into it only when it takes writes (`WritableCache`); a cache without `put` (the
    database's) is written by whoever commits the data the response carried. `governor` to the process-wide
    `EsiGovernor.shared(config)`; `clock` to the governor's clock.
    """

    def __init__(
        self,
        config: EsiConfig,
        cache: HttpCache | None = None,
        *,
        governor: EsiGovernor | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._config = config
        self._cache: HttpCache = cache if cache is not None else MemoryCache()
        self._governor = governor or EsiGovernor.shared(config)
        self._clock = clock or self._governor.clock
        self._base_url = config.base_url.rstrip("/")
        self._rng = random.Random()
        self._stats = ClientStats()
        self._closed = threading.Event()
        self._listeners: list[Callable[[], None]] = []
        headers = {
            "User-Agent": f"killreport-assets/{__version__} ({config.contact}; +{PROJECT_URL}) "
            f"httpx/{httpx.__version__}",
            "X-Compatibility-Date": config.compatibility_date.isoformat(),
            "Accept": "application/json",
        }
        timeout = httpx.Timeout(config.read_timeout, connect=config.connect_timeout)
        tls = httpx.create_ssl_context()  # one for all connections: building one reads the CA bundle
        self._http = ConnectionLender(
            lambda: httpx.Client(
                headers=headers,
                timeout=timeout,
                verify=tls,
                limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                http2=False,
            )
        )

    @property
    def base_url(self) -> str:
        return self._base_url

    def __enter__(self) -> EsiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed.set()
        for remove in self._listeners:
            remove()
        self._listeners.clear()
        self._http.close()

    def abort(self) -> None:
        """Make every request still waiting to be sent raise `EsiPaused` at once (cancellation);
        requests on the wire finish within their timeout. Until `resume`."""
        self._closed.set()

    def resume(self) -> None:
        """Undo `abort` (not `close`)."""
        if not self._http.closed:
            self._closed.clear()

    def paused(self) -> str | None:
        """Why ESI requests are held by the circuit breaker right now (None: they are not)."""
        return self._governor.paused()

    def watch_peers(self, peers: Callable[[], tuple[str, float] | None]) -> None:
        """See `EsiGovernor.watch_peers`: hold requests while another process here finds ESI down
        (until `close`)."""
        self._listeners.append(self._governor.watch_peers(peers))

    def share_budget(self, budget: SharedBudget) -> None:
        """See `EsiGovernor.share_budget`: keep the fleet's request and error budgets together with
        the other processes on `budget` (until `close`)."""
        self._listeners.append(self._governor.share_budget(budget))

    def add_pause_listener(self, listener: Callable[[str, float], None]) -> None:
        """Report the process's ESI pauses to `listener(reason, seconds)` (0: ended) until `close`."""
        self._listeners.append(self._governor.add_pause_listener(listener))

    def fetch(
        self, route: str, entity_id: int, parse: Callable[[bytes, int], T], *, max_attempts: int | None = None
    ) -> EsiResult[T]:
        """GET one entity of `route` (one `{placeholder}`), parsed by `parse(body, entity_id)`, in at
        most `max_attempts` requests (default and ceiling: the configured attempts)."""
        return self._get(route, entity_id, lambda body: parse(body, entity_id), max_attempts)

    def alliance_ids(self) -> EsiResult[list[int]]:
        return self._get(ALLIANCES_ROUTE, None, wire.parse_listed_ids)

    def alliance(self, alliance_id: int) -> EsiResult[Alliance]:
        return self._get(ALLIANCE_ROUTE, alliance_id, lambda body: wire.parse_alliance(body, alliance_id))

    def alliance_corporations(self, alliance_id: int) -> EsiResult[list[int]]:
        return self._get(ALLIANCE_CORPORATIONS_ROUTE, alliance_id, wire.parse_id_list)

    def corporation(self, corporation_id: int) -> EsiResult[Corporation]:
        return self._get(
            CORPORATION_ROUTE, corporation_id, lambda body: wire.parse_corporation(body, corporation_id)
        )

    def corporation_alliance_history(self, corporation_id: int) -> EsiResult[list[AllianceHistoryEntry]]:
        return self._get(CORPORATION_ALLIANCE_HISTORY_ROUTE, corporation_id, wire.parse_alliance_history)

    def universe_names(self, ids: Iterable[int]) -> list[UniverseName]:
        """Resolve IDs to names. ESI answers 404 to a whole batch if any ID in it is unknown, so
        such a batch is bisected until the unknown IDs stand alone; those are left out."""
        unique = [_checked_id(i) for i in dict.fromkeys(ids)]
        names: list[UniverseName] = []
        for start in range(0, len(unique), _NAMES_BATCH):
            names.extend(self._resolve(unique[start : start + _NAMES_BATCH]))
        return names

    def stats(self) -> dict[str, object]:
        """This client's counters, plus the governor's totals (process-wide when shared).

        `waits` are seconds by reason summed over the calling threads; `max_attempts_used` is the
        most attempts any one request took (never above `max_attempts`)."""
        return {**self._stats.snapshot(), "governor": self._governor.stats()}

    def _get(
        self,
        route: str,
        entity_id: int | None,
        parse: Callable[[bytes], T],
        max_attempts: int | None = None,
    ) -> EsiResult[T]:
        url = self._url(route, entity_id)
        entry, stored = self._stored(url, parse)
        if entry is not None and entry.expires_at > self._clock.now():
            return self._result(EsiResult(stored, Answer.CACHED, url, None, entry.expires_at, entry.etag))

        conditional: dict[str, str] = {}
        if entry is not None and entry.etag:
            conditional["If-None-Match"] = entry.etag
        if entry is not None and entry.last_modified:
            conditional["If-Modified-Since"] = entry.last_modified
        response, attempts = self._send(
            "GET", route, entity_id, url, headers=conditional, max_attempts=max_attempts
        )
        status = response.status_code
        if status == 404:
            return self._result(EsiResult(None, Answer.GONE, url, status, attempts=attempts))
        if status == 304:
            if entry is None:
                raise EsiError(f"ESI answered 304 to an unconditional GET {url}", status=status)
            refreshed = CacheEntry(
                etag=response.headers.get("etag") or entry.etag,
                last_modified=response.headers.get("last-modified") or entry.last_modified,
                expires_at=expires_at(response.headers, self._clock.now()),
                body=entry.body,
            )
            return self._kept(
                EsiResult(
                    stored,
                    Answer.UNCHANGED,
                    url,
                    status,
                    refreshed.expires_at,
                    refreshed.etag,
                    attempts,
                    refreshed,
                )
            )

        value = _parse(route, entity_id, parse, response.content)
        fresh = CacheEntry(
            etag=response.headers.get("etag"),
            last_modified=response.headers.get("last-modified"),
            expires_at=expires_at(response.headers, self._clock.now()),
            body=response.content,
        )
        keep = fresh.etag or fresh.last_modified or fresh.expires_at > self._clock.now()
        return self._kept(
            EsiResult(
                value,
                Answer.FETCHED,
                url,
                status,
                fresh.expires_at,
                fresh.etag,
                attempts,
                fresh if keep else None,
            )
        )

    def _url(self, route: str, entity_id: int | None) -> str:
        path = route if entity_id is None else _PLACEHOLDER.sub(str(_checked_id(entity_id)), route)
        return self._base_url + path

    def _stored(self, url: str, parse: Callable[[bytes], T]) -> tuple[CacheEntry | None, T | None]:
        """The cache entry for `url` and its parsed body. An entry that no longer parses (written by
        another version) is ignored, so it gets replaced by a fresh unconditional fetch."""
        entry = self._cache.get(url)
        if entry is None:
            return None, None
        try:
            return entry, parse(entry.body)
        except ValidationError:
            logger.debug("ignoring a cached body for %s that no longer validates", url)
            return None, None

    def _result(self, result: EsiResult[T]) -> EsiResult[T]:
        self._stats.outcome(str(result.answer))
        return result

    def _kept(self, result: EsiResult[T]) -> EsiResult[T]:
        if result.entry is not None and isinstance(self._cache, WritableCache):
            self._cache.put(result.url, result.entry)
        return self._result(result)

    def _resolve(self, batch: list[int]) -> list[UniverseName]:
        url = self._url(UNIVERSE_NAMES_ROUTE, None)
        response, _ = self._send("POST", UNIVERSE_NAMES_ROUTE, None, url, json=batch)
        if response.status_code == 404:
            if len(batch) == 1:
                self._stats.unresolved(1)
                return []
            middle = len(batch) // 2
            return self._resolve(batch[:middle]) + self._resolve(batch[middle:])
        if response.status_code != 200:
            raise EsiError(
                f"unexpected HTTP {response.status_code} from POST {url}", status=response.status_code
            )
        return _parse(UNIVERSE_NAMES_ROUTE, None, wire.parse_universe_names, response.content)

    def _send(
        self,
        method: str,
        route: str,
        entity_id: int | None,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        json: Any = None,
        max_attempts: int | None = None,
    ) -> tuple[httpx.Response, int]:
        """Send until a final answer (200/304/404) and return it with the attempts it took.

        5xx, timeouts and connection errors are retried with full-jitter backoff up to
        `max_attempts`; 420/429 wait on the governor without spending an attempt (at most
        `_MAX_FREE_WAITS` times in a row), and so do downtime 502/503 (the open circuit bounds
        those: `EsiPaused`)."""
        limit = (
            self._config.max_attempts
            if max_attempts is None
            else min(max_attempts, self._config.max_attempts)
        )
        attempts = 0
        free_waits = 0
        while True:
            outcome = self._exchange(method, route, url, headers, json)
            status = outcome.status_code if isinstance(outcome, httpx.Response) else None
            if status in _DOWNTIME_STATUSES and self._governor.downtime_pause():
                continue
            if status in _THROTTLE_STATUSES:
                free_waits += 1
                if free_waits > _MAX_FREE_WAITS:
                    self._stats.finished(attempts)
                    raise EsiUnavailable(route, entity_id, attempts, status, None)
                continue
            free_waits = 0
            attempts += 1
            if isinstance(outcome, httpx.Response) and status not in _RETRY_STATUSES:
                self._stats.finished(attempts)
                return _final(outcome, route, entity_id), attempts
            if attempts >= limit:
                self._stats.finished(attempts)
                error = None if isinstance(outcome, httpx.Response) else _describe(outcome)
                raise EsiUnavailable(route, entity_id, attempts, status, error)
            ceiling = min(self._config.backoff_cap, self._config.backoff_base * 2 ** (attempts - 1))
            delay = self._rng.uniform(0.0, ceiling)
            logger.debug(
                "retrying %s %s in %.2f s after %s", method, url, delay, status or _describe(outcome)
            )
            self._clock.sleep(delay)
            if self._closed.is_set():
                raise EsiPaused("the ESI client was closed during a retry's backoff")
            self._stats.retry(str(Wait.BACKOFF), delay)

    def _exchange(
        self, method: str, route: str, url: str, headers: dict[str, str] | None, json: Any
    ) -> httpx.Response | httpx.TransportError:
        """One HTTP request under the governor's permit."""
        with self._governor.permit(route, self._closed, self._probe) as permit:
            started = self._clock.monotonic()
            try:
                with self._http.lend() as http:
                    response = http.request(method, url, headers=headers, json=json)
            except _RETRY_ERRORS as exc:
                self._governor.settle(permit, ok=False)
                logger.debug("%s %s failed: %s", method, url, _describe(exc))
                self._stats.exchange(None, type(exc).__name__, permit.waits)
                return exc
            self._governor.settle(permit, ok=response.status_code not in _RETRY_STATUSES)
            self._governor.observe(route, response)
        logger.debug(
            "%s %s -> %d in %.0f ms",
            method,
            url,
            response.status_code,
            (self._clock.monotonic() - started) * 1000,
        )
        self._stats.exchange(response.status_code, None, permit.waits)
        return response

    def _probe(self) -> bool:
        """Whether ESI answers at all (anything but a 5xx or no answer): the alliance list, the one
        route every refresh reads, sent unconditionally and not cached."""
        try:
            with self._http.lend() as http:
                response = http.get(self._url(ALLIANCES_ROUTE, None))
        except _RETRY_ERRORS as exc:
            logger.debug("ESI probe failed: %s", _describe(exc))
            self._stats.exchange(None, type(exc).__name__, {})
            return False
        self._governor.observe(ALLIANCES_ROUTE, response)
        self._stats.exchange(response.status_code, None, {})
        logger.debug("ESI probe: HTTP %d", response.status_code)
        return response.status_code not in _RETRY_STATUSES


def _final(response: httpx.Response, route: str, entity_id: int | None) -> httpx.Response:
    """Pass 200/304/404 through; raise for every other status."""
    status = response.status_code
    if status in (200, 304, 404):
        return response
    target = route if entity_id is None else f"{route} ({entity_id})"
    excerpt = response.text[:_EXCERPT]
    if status == 400:
        raise EsiBadRequest(f"ESI rejected {target} (400): {excerpt}", status=status)
    raise EsiError(f"ESI answered {status} for {target}: {excerpt}", status=status)


def _parse(route: str, entity_id: int | None, parse: Callable[[bytes], T], body: bytes) -> T:
    if len(body) > MAX_BODY_BYTES:
        raise EsiResponseInvalid(
            route, entity_id, "<body>", f"{len(body)} bytes, over the {MAX_BODY_BYTES}-byte limit"
        )
    try:
        return parse(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "<body>"
        more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise EsiResponseInvalid(route, entity_id, field, first["msg"] + more) from exc


def _checked_id(value: int) -> int:
    """Reject what cannot be an ESI ID before it costs a 4xx against the error budget."""
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"ESI IDs are positive integers, got {value!r}")
    return value


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
