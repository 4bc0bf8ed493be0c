"""Process-wide pacing of ESI traffic, shared by every thread and every client of a process.

ESI limits by source IP: after 100 error responses in a (fixed) window it answers 420 to
everything until the window resets, and routes in a rate-limit group answer 429 when their token
bucket is empty. The governor keeps the process from getting there:

* pacing: requests are spaced at `max_requests_per_second` with a small burst, and at most
  `max_concurrency` are in flight. With `share_budget` the rate is the whole fleet's: every
  process books its slots on one shared timeline (`fleet.py`);
* error budget: X-ESI-Error-Limit-Remain/-Reset of every response are tracked (ESI counts per IP,
  so every process sees the fleet's errors in them). Below half of the budget the rate is scaled
  down in proportion to what is left. Requests on the wire are capped at this process's share of
  what is left above the reserve, (remain − reserve) ÷ processes sending; when the share is
  below one request, new requests are held until the window resets. Each request on the wire can
  cost at most one error, so even if all of them fail, the fleet together cannot take the budget
  below the reserve, at any number of processes — so many transient errors never turn into a 420;
* a 420 anyway (e.g. another process on the same IP) stops every request until the reset;
* a 429 pauses its rate-limit group (everything, without a group header) for Retry-After;
* outages: when most recent answers are 5xx or timeouts, or a 502/503 arrives in the daily
  downtime, the circuit breaker (`circuit.py`) stops every request and lets one probe through now
  and then; the first success resumes everyone. A request waits on an open circuit at most
  `max_hold` seconds, then `EsiPaused` hands its job back to be retried later without an attempt.
  Other processes on the host that report such a pause (`watch_peers`) hold this one's requests too.

Pauses are logged at INFO (reason and seconds) and reported to the pause listeners (seconds 0 when
the circuit closes), which is how a step in another process learns that ESI is paused.
Every wait is sliced into short sleeps and ends early when the caller's `abort` event is set.
"""

from __future__ import annotations

import logging
import random
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum

import httpx

from .circuit import Circuit
from .clock import Clock, SystemClock
from .config import ESI_ERROR_BUDGET, EsiConfig
from .errors import EsiPaused
from .fleet import FleetPacer, SharedBudget
from .limits import ErrorBudget, Pacer, RateLimitGroup, parse_int

logger = logging.getLogger("killreport_assets.esi")

# Seconds to pause on a 420/429 that carries no Reset/Retry-After (what EVE Ref and eve-esi-proxy use).
_DEFAULT_PAUSE = 10.0
# Longest single sleep, so that an abort or a closing circuit is noticed promptly.
_SLICE = 0.5

PauseHook = Callable[[str, float], None]


class Wait(StrEnum):
    """Why a request waited; the keys of the `waits` statistics."""

    RATE = "rate"
    CONCURRENCY = "concurrency"
    ERROR_LIMIT_HOLD = "error_limit_hold"
    ERROR_LIMITED = "error_limited"
    RATE_LIMITED = "rate_limited"
    DOWNTIME = "downtime"
    OUTAGE = "outage"
    BACKOFF = "backoff"


@dataclass
class Permit:
    """Seconds one request spent waiting before it was let through, by reason; whether it is the
    circuit's probe and whether its answer was reported."""

    waits: dict[str, float] = field(default_factory=dict)
    probe: bool = False
    settled: bool = False
    on_wire: bool = False


class EsiGovernor:
    """Admission control for ESI requests; see the module docstring. Thread-safe.

    `reset_margin` is added to every Reset/Retry-After (the safety second); `max_hold` bounds how
    long one request waits on an open circuit; `downtime_probe` is the seconds between probes in the
    daily downtime (it lasts minutes: no need to knock often).
    """

    def __init__(
        self,
        config: EsiConfig,
        *,
        clock: Clock | None = None,
        on_pause: PauseHook | None = None,
        reset_margin: float = 1.0,
        max_hold: float = 120.0,
        downtime_probe: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self._listeners: list[PauseHook] = [] if on_pause is None else [on_pause]
        self._reset_margin = reset_margin
        self._max_hold = max_hold
        self._downtime_probe = downtime_probe
        self._rng = rng or random.Random()
        self._circuit = Circuit(rng=self._rng)
        self._peers: Callable[[], tuple[str, float] | None] | None = None
        self._peers_read = float("-inf")
        self._peer_pause: tuple[str, float] | None = None
        self._slots = threading.BoundedSemaphore(config.max_concurrency)
        self._lock = threading.Lock()
        self._notify_lock = threading.Lock()  # listeners hear one report at a time, in order
        self._wire = threading.Condition(self._lock)  # signalled when a request leaves the wire
        self._on_wire = 0
        self._wire_waits = 0  # times a request waited for its process's share of the error budget
        self._pacer = Pacer()
        self._fleets: list[FleetPacer] = []  # the first one paces; more come from several clients
        self._budget = ErrorBudget(pad=reset_margin)
        self._groups: dict[str, RateLimitGroup] = {}
        self._route_groups: dict[str, str] = {}
        self._paused_until = float("-inf")
        self._pause_reason = Wait.ERROR_LIMITED
        self._announced_hold = float("-inf")
        self._waits: defaultdict[str, float] = defaultdict(float)
        self._count_420 = 0
        self._count_429 = 0

    @classmethod
    def shared(cls, config: EsiConfig) -> EsiGovernor:
        """The process-wide governor for `config.base_url`. The first config seen sets its limits,
        because one process can only honour one cap towards one ESI."""
        key = config.base_url.rstrip("/")
        with _shared_lock:
            governor = _shared.get(key)
            if governor is None:
                governor = _shared[key] = cls(config)
            elif _limits(governor.config) != _limits(config):
                logger.warning("the shared ESI governor for %s keeps the limits it was created with", key)
        return governor

    def add_pause_listener(self, listener: PauseHook) -> Callable[[], None]:
        """Also report pauses to `listener(reason, seconds)` (seconds 0: the pause ended); returns
        the function that stops it."""
        with self._lock:
            self._listeners.append(listener)

        def remove() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return remove

    @contextmanager
    def permit(
        self, route: str, abort: threading.Event | None = None, probe: Callable[[], bool] | None = None
    ) -> Iterator[Permit]:
        """Wait until a request on `route` may be sent; hold a concurrency slot while it runs. Raises
        `EsiPaused` when an open circuit holds it past `max_hold`, or when `abort` is set.

        When this request's turn to probe an open circuit comes, `probe()` (True: ESI answered) is
        sent instead of risking the request itself, so that no job's attempts are spent on probes
        and a few entities that always fail cannot keep the circuit open. Without `probe`, the
        request itself is the probe."""
        permit = Permit()
        started = self.clock.monotonic()
        with self._slots:
            self._record(permit, Wait.CONCURRENCY, self.clock.monotonic() - started)
            try:
                self._pace(route, permit, abort, probe)
                yield permit
            finally:
                with self._lock:
                    if permit.probe and not permit.settled:
                        self._circuit.abandon_probe()
                    if permit.on_wire:
                        self._on_wire -= 1
                        self._wire.notify()

    def share_budget(self, budget: SharedBudget) -> Callable[[], None]:
        """Pace on the fleet's shared timeline and share the error budget with the processes that
        send on it (see `fleet.py`); returns the function that stops it (and leaves the fleet)."""
        fleet = FleetPacer(budget, self.clock, most=self.config.max_concurrency)
        with self._lock:
            self._fleets.append(fleet)

        def stop() -> None:
            with self._lock:
                if fleet in self._fleets:
                    self._fleets.remove(fleet)
            fleet.leave()

        return stop

    def watch_peers(self, peers: Callable[[], tuple[str, float] | None]) -> Callable[[], None]:
        """Also hold requests while `peers()` reports (reason, seconds left) of an outage, downtime
        or error-limit pause another process on this host is in: they share ESI's view of this IP,
        so one process finding ESI down stops the others too (it probes; they wait). Read at most
        once a second; a failing read counts as no pause. Returns the function that stops it."""
        with self._lock:
            self._peers, self._peers_read = peers, float("-inf")

        def stop() -> None:
            with self._lock:
                if self._peers is peers:
                    self._peers, self._peer_pause = None, None

        return stop

    def _peer_hold(self, now: float) -> tuple[str, float] | None:
        if self._peers is None:
            return None
        with self._lock:
            fresh = now - self._peers_read < 1.0
            cached = self._peer_pause
            if not fresh:  # this thread reads; the others keep the last answer meanwhile
                self._peers_read = now
        if not fresh:
            try:
                found = self._peers()
            except Exception as exc:  # noqa: BLE001 - the database may be away; hold nothing then
                logger.debug("cannot read other processes' ESI pauses: %s", exc)
                found = None
            cached = None if found is None else (found[0], now + found[1])
            with self._lock:
                self._peers_read, self._peer_pause = now, cached
        if cached is None or cached[1] <= now:
            return None
        return cached

    def settle(self, permit: Permit, ok: bool) -> None:
        """Report whether the request answered (False: a 5xx, a timeout, no connection)."""
        permit.settled = True
        with self._lock:
            was = self._circuit.reason
            event = self._circuit.record(ok, self.clock.monotonic())
            reason = was or self._circuit.reason or str(Wait.OUTAGE)
        if event is not None:
            self._circuit_event(reason, *event)

    def paused(self) -> str | None:
        """Why requests are held by the circuit breaker right now (None: they are not)."""
        with self._lock:
            return self._circuit.reason

    def observe(self, route: str, response: httpx.Response) -> None:
        """Learn from a response's limit headers; start a pause on 420/429."""
        headers = response.headers
        remain = parse_int(headers.get("x-esi-error-limit-remain"))
        reset = parse_int(headers.get("x-esi-error-limit-reset"))
        group_name = headers.get("x-ratelimit-group")
        now = self.clock.monotonic()
        announce: tuple[Wait, float, str] | None = None
        with self._lock:
            if remain is not None and reset is not None:
                self._budget.observe(remain, reset, now)
            group = None
            if group_name:
                self._route_groups[route] = group_name
                group = self._groups.setdefault(group_name, RateLimitGroup())
                group.observe(headers.get("x-ratelimit-limit"), headers.get("x-ratelimit-remaining"))
            if response.status_code == 420:
                self._count_420 += 1
                seconds = (_DEFAULT_PAUSE if reset is None else reset) + self._reset_margin
                self._budget.exhaust(now + seconds)
                announce = self._pause_all(Wait.ERROR_LIMITED, now, seconds)
            elif response.status_code == 429:
                self._count_429 += 1
                retry_after = parse_int(headers.get("retry-after"))
                seconds = (_DEFAULT_PAUSE if retry_after is None else retry_after) + self._reset_margin
                if group is None:
                    announce = self._pause_all(Wait.RATE_LIMITED, now, seconds)
                else:
                    if _is_news(group.paused_until, now, seconds):
                        announce = (
                            Wait.RATE_LIMITED,
                            seconds,
                            f"requests in rate-limit group {group_name!r}",
                        )
                    group.paused_until = max(group.paused_until, now + seconds)
        if announce:
            self._announce(*announce)

    def downtime_pause(self) -> bool:
        """Call on a 502/503. Inside the daily downtime, open the circuit (probing every
        `downtime_probe` s, so work resumes as soon as ESI is back) and return True: the failure is
        expected and should not spend an attempt."""
        left = _downtime_left(self.clock.now(), self.config.downtime_start, self.config.downtime_end)
        if left is None:
            return False
        with self._lock:
            event = self._circuit.trip(str(Wait.DOWNTIME), self.clock.monotonic(), self._downtime_probe)
        if event is not None:
            self._circuit_event(str(Wait.DOWNTIME), *event)
        return True

    def stats(self) -> dict[str, object]:
        """Totals for this governor (for the shared one: the whole process)."""
        with self._lock:
            return {
                "waits": dict(self._waits),
                "error_limited_420": self._count_420,
                "rate_limited_429": self._count_429,
                "error_limit_remain": self._budget.remain(self.clock.monotonic()),
                "fleet_members": self._members(),
                "error_share_waits": self._wire_waits,
            }

    def _pace(
        self, route: str, permit: Permit, abort: threading.Event | None, probe: Callable[[], bool] | None
    ) -> None:
        reserved = False
        held = 0.0
        while True:
            if abort is not None and abort.is_set():
                raise EsiPaused("the ESI client was closed while this request waited to be sent")
            now = self.clock.monotonic()
            with self._lock:
                circuit_until = None
                if not permit.probe:  # a request that claimed the probe keeps it through other waits
                    circuit_until, permit.probe = self._circuit.admit(now)
            if permit.probe and probe is not None:
                self.settle(permit, probe())
                permit.probe = permit.settled = False
                continue
            hold_reason = self._circuit.reason
            if circuit_until is None and not permit.probe and (peer := self._peer_hold(now)) is not None:
                hold_reason, circuit_until = peer  # another process on this host found ESI down
            with self._lock:
                if circuit_until is not None:
                    blocked, until, new_hold = Wait(hold_reason), circuit_until, False
                else:
                    blocked, until, new_hold = self._blocked(route, now)
                if circuit_until is not None and held >= self._max_hold:
                    raise EsiPaused(
                        f"ESI requests have been paused ({blocked}) for {held:.0f} s; hand the job back "
                        "and try it later"
                    )
                if blocked is None:
                    if reserved:
                        if self._onto_wire(permit, now):
                            return
                    else:
                        fleet = self._fleets[0] if self._fleets else None
                        rate, delay = self._reserve(route, now, local=fleet is None)
                else:
                    # book a fresh slot afterwards, so the end of a pause is paced rather than a burst
                    reason, reserved = blocked, False
            if blocked is None:
                if reserved:  # paced, but waited for room on the wire: look at pauses again
                    continue
                if fleet is not None:
                    delay = max(delay, fleet.reserve(now, rate))  # may ask the database: unlocked
                reason, until, reserved = Wait.RATE, now + delay, True
                if delay <= 0:
                    continue
            if new_hold:
                self._announce(reason, until - now, "new requests until the error-limit window resets")
            seconds = until - now if reason is Wait.RATE else min(until - now, _SLICE)
            if circuit_until is not None:
                held += seconds
            self._record(permit, reason, seconds, sleep=True)

    def _blocked(self, route: str, now: float) -> tuple[Wait | None, float, bool]:
        """The latest pause or hold that applies to `route`, and whether it is a hold not yet logged.
        A hold that ends with a pause is reported as the pause, which is what caused it."""
        blocks: list[tuple[float, Wait]] = []
        if self._paused_until > now:
            blocks.append((self._paused_until, self._pause_reason))
        group = self._group(route)
        if group is not None and group.paused_until > now:
            blocks.append((group.paused_until, Wait.RATE_LIMITED))
        hold = self._budget.hold_until(now, self.config.error_margin + self._members() - 1)
        if hold is not None:
            blocks.append((hold, Wait.ERROR_LIMIT_HOLD))
        if not blocks:
            return None, now, False
        until, reason = max(blocks, key=lambda block: block[0])  # on a tie the earlier entry wins
        new_hold = reason is Wait.ERROR_LIMIT_HOLD and until != self._announced_hold
        if new_hold:
            self._announced_hold = until
        return reason, until, new_hold

    def _reserve(self, route: str, now: float, *, local: bool) -> tuple[float, float]:
        """(the rate to pace at now, the wait for a slot booked in this process); `local` False
        leaves the main slot to the fleet's timeline."""
        rate = self.config.max_requests_per_second
        paced = rate * self._budget.rate_factor(now)
        delay = self._pacer.reserve(now, paced) if local else 0.0
        group = self._group(route)
        if group is not None and (factor := group.rate_factor()) < 1.0:
            delay = max(delay, group.pacer.reserve(now, rate * factor))
        return paced, delay

    def _members(self) -> int:
        return self._fleets[0].members if self._fleets else 1

    def _onto_wire(self, permit: Permit, now: float) -> bool:
        """Under the lock: put the request on the wire if this process's share of the error budget
        has room, else wait (briefly) for a request to leave it. (remain − reserve) ÷ processes,
        so the requests of the whole fleet on the wire can never take the budget below the reserve."""
        remain = self._budget.remain(now)
        share = (
            (ESI_ERROR_BUDGET if remain is None else remain) - self.config.error_margin
        ) // self._members()
        if self._on_wire < min(self.config.max_concurrency, max(1, share)):
            self._on_wire += 1
            permit.on_wire = True
            return True
        self._wire_waits += 1
        self._wire.wait(_SLICE)
        waited = self.clock.monotonic() - now
        self._waits[str(Wait.CONCURRENCY)] += waited
        permit.waits[str(Wait.CONCURRENCY)] = permit.waits.get(str(Wait.CONCURRENCY), 0.0) + waited
        return False

    def _group(self, route: str) -> RateLimitGroup | None:
        name = self._route_groups.get(route)
        return None if name is None else self._groups.get(name)

    def _pause_all(self, reason: Wait, now: float, seconds: float) -> tuple[Wait, float, str] | None:
        """Extend the process-wide pause; return what to announce if it is news."""
        news = _is_news(self._paused_until, now, seconds)
        if now + seconds > self._paused_until:
            self._paused_until = now + seconds
            self._pause_reason = reason
        return (reason, seconds, "all requests") if news else None

    def _record(self, permit: Permit, reason: Wait, seconds: float, *, sleep: bool = False) -> None:
        if seconds <= 0:
            return
        if sleep:
            self.clock.sleep(seconds)
        key = str(reason)  # plain strings in statistics
        with self._lock:
            self._waits[key] += seconds
        permit.waits[key] = permit.waits.get(key, 0.0) + seconds

    def _circuit_event(self, reason: str, event: str, seconds: float) -> None:
        if event == "closed":
            logger.info("ESI answers again: resuming all requests after %.0f s (%s)", seconds, reason)
            self._notify(reason, 0.0, circuit=True)
        elif event == "opened":
            logger.warning(
                "ESI circuit open (%s): holding all requests, first probe in %.0f s", reason, seconds
            )
            self._notify(reason, seconds, circuit=True)
        else:
            logger.info("ESI still unavailable (%s): next probe in %.0f s", reason, seconds)
            self._notify(reason, seconds, circuit=True)

    def _announce(self, reason: Wait, seconds: float, scope: str) -> None:
        logger.info("ESI pause (%s, %.1f s): holding %s", reason, seconds, scope)
        self._notify(str(reason), seconds)

    def _notify(self, reason: str, seconds: float, *, circuit: bool = False) -> None:
        """Report to the listeners one at a time. Threads report circuit events after leaving the lock,
        so a "closed" can arrive after the "opened" that followed it: a circuit report that no longer
        matches the circuit is dropped, and the last report always says how the circuit is now."""
        with self._notify_lock:
            with self._lock:
                listeners = list(self._listeners)
                stale = circuit and (self._circuit.reason is not None) != (seconds > 0)
            if stale:
                return
            for listener in listeners:
                try:
                    listener(reason, seconds)
                except Exception as exc:  # noqa: BLE001 - a report must never stop requests
                    logger.warning("could not report an ESI pause (%s): %s", reason, exc)


_shared: dict[str, EsiGovernor] = {}
_shared_lock = threading.Lock()


def _is_news(paused_until: float, now: float, seconds: float) -> bool:
    """Whether a pause is worth announcing: nothing was paused, or it extends the pause noticeably
    (every request in flight during a 420 gets one, and one log line is enough)."""
    return paused_until <= now or now + seconds > paused_until + 1.0


def _limits(config: EsiConfig) -> tuple[object, ...]:
    return (
        config.max_requests_per_second,
        config.max_concurrency,
        config.error_margin,
        config.downtime_start,
        config.downtime_end,
    )


def _downtime_left(now: datetime, start: time, end: time) -> float | None:
    """Seconds until `end` if the UTC time of day of `now` is in [start, end); None otherwise."""
    if start == end:
        return None
    now = now.astimezone(UTC)
    of_day = now.time().replace(tzinfo=None)
    inside = start <= of_day < end if start < end else (of_day >= start or of_day < end)
    if not inside:
        return None
    until = datetime.combine(now.date(), end, tzinfo=UTC)
    if until <= now:
        until += timedelta(days=1)
    return (until - now).total_seconds()
