"""What every transport is to a step, and how it fails; independent of any one transport.

A step records its jobs in the ledger, calls `submit`, then polls the ledger and calls `check` on
every poll; completion is read from the ledger only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, Self

from killreport_assets.jobs import Job


class TransportError(RuntimeError):
    """The transport cannot make progress; the message says why. Retrying the step may help."""


class NoWorkerError(TransportError):
    """Nothing would run the jobs (no worker consumes a queue the step needs): retrying the step
    straight away cannot help; an operator must start a worker."""


class Transport(Protocol):
    def submit(self, jobs: Sequence[Job]) -> None:
        """Hand `jobs` to whatever runs them; returns once they are safely accepted."""

    def check(self) -> None:
        """Raise `TransportError` when the submitted jobs cannot progress."""

    def wait(self, seconds: float) -> None:
        """Sleep until the step's next poll: `seconds`, or less when the transport sees every job it
        was given finished (the ledger still decides)."""

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...
