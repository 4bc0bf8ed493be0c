"""Pacing one process on the fleet's shared ESI budget.

`KILLREPORT_ESI_MAX_RPS` is the budget of every process behind one egress IP together. The
processes book their send slots on one shared timeline (`SharedBudget.book`, a row in the
database), a tenth of a second at a time, so N processes started with the same settings never
exceed it together and the budget is never split by hand: a busy process takes what an idle one
leaves. A process that dies loses only the slots it had booked (a tenth of a second's worth).

Each booking also says "this process is sending" (at most once a second), and the number of
processes that said so in the last `MEMBER_TTL` seconds is how many share ESI's error budget (see
`EsiGovernor`): one that stops or dies drops out within seconds.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from typing import Protocol

from .clock import Clock
from .limits import Pacer

logger = logging.getLogger("killreport_assets.esi")

# Seconds of requests one booking takes: ~10 bookings a second for the whole fleet, and a late slot
# is given up after this long, so no 10 s window sees more than ~1% above the budget.
SLICE_SECONDS = 0.1
# A process that has not booked for this long no longer shares the error budget.
MEMBER_TTL = 3.0
_HEARTBEAT = 1.0


class SharedBudget(Protocol):
    """The fleet's shared timeline and membership (`storage.fleet.SharedEsiBudget`)."""

    def book(self, count: int, interval: float, now: float) -> float:
        """Book `count` slots `interval` apart, none before epoch second `now`; the first one."""
        ...

    def heartbeat(self, now: float, within: float) -> int:
        """Say this process is sending; how many processes did in the last `within` seconds."""
        ...

    def leave(self) -> None: ...


class FleetPacer:
    """Hands this process's threads the slots it booked on the shared timeline, in order.

    Thread-safe, with its own lock: the database is asked here, never under the governor's lock.
    While the database cannot be reached the process paces itself at its share of the budget
    (the budget divided by the members it last saw), so an outage of the database never lets the
    fleet exceed the budget.
    """

    def __init__(self, budget: SharedBudget, clock: Clock, most: int) -> None:
        self._budget = budget
        self._most = most  # slots per booking at most: more than the process can send at once go late
        self._clock = clock
        self._lock = threading.Lock()
        self._slots: deque[float] = deque()  # booked send times, on the monotonic clock
        self._fallback = Pacer()
        self._beat = float("-inf")
        self._failing = False
        self.members = 1

    def reserve(self, now: float, rate: float) -> float:
        """Take the next booked slot at `rate` requests per second (booking more when none is left
        in time); return how long to wait for it."""
        interval = 1.0 / rate
        with self._lock:
            late = now - max(SLICE_SECONDS, interval)
            while self._slots and self._slots[0] < late:
                self._slots.popleft()  # nobody was ready to use it: given up, never sent late
            if not self._slots:
                try:
                    self._book(now, interval, max(1, min(self._most, math.floor(rate * SLICE_SECONDS))))
                except Exception as exc:  # noqa: BLE001 - the database may be away: keep to our share
                    if not self._failing:
                        logger.warning(
                            "cannot book ESI slots in the database (%s): pacing this process at "
                            "1/%d of the budget until it answers",
                            exc,
                            self.members,
                        )
                    self._failing = True
                    return self._fallback.reserve(now, rate / self.members)
                if self._failing:
                    logger.info("booking ESI slots in the database again")
                    self._failing = False
            return max(0.0, self._slots.popleft() - now)

    def _book(self, now: float, interval: float, count: int) -> None:
        epoch = self._clock.now().timestamp()
        if now - self._beat >= _HEARTBEAT:
            self.members = self._budget.heartbeat(epoch, MEMBER_TTL)
            self._beat = now
        first = now + (self._budget.book(count, interval, epoch) - epoch)
        self._slots.extend(first + i * interval for i in range(count))

    def leave(self) -> None:
        """This process stops sending: it no longer counts as a member."""
        try:
            self._budget.leave()
        except Exception as exc:  # noqa: BLE001 - it drops out after MEMBER_TTL anyway
            logger.debug("could not leave the ESI fleet: %s", exc)
