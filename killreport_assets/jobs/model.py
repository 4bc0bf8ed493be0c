"""The job message format and the result a handler hands to storage.

A job names one entity to refresh within one refresh (a Dagster run). The same job can be delivered
twice (RabbitMQ redelivery, a retried step): everything downstream is an idempotent upsert keyed by
(refresh, step, entity), so a repeat is harmless.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

SCHEMA_VERSION = 1


class JobKind(StrEnum):
    ALLIANCE = "alliance"
    ALLIANCE_CORPORATIONS = "alliance_corporations"
    CORPORATION = "corporation"

    @property
    def step(self) -> str:
        """The ledger step (and asset) this kind of job belongs to."""
        return _STEPS[self]


_STEPS = {
    JobKind.ALLIANCE: "alliances",
    JobKind.ALLIANCE_CORPORATIONS: "alliance_corporations",
    JobKind.CORPORATION: "corporations",
}


class LedgerStatus(StrEnum):
    PENDING = "pending"
    DONE = "done"  # fetched (200) and written
    UNCHANGED = "unchanged"  # 304, or still fresh in the HTTP cache
    GONE = "gone"  # 404: the entity no longer exists
    FAILED = "failed"  # permanent failure after bounded attempts

    @classmethod
    def finished(cls) -> tuple[LedgerStatus, ...]:
        return (cls.DONE, cls.UNCHANGED, cls.GONE, cls.FAILED)


class JobDecodeError(ValueError):
    """A message body is not a job this program understands."""


@dataclass(frozen=True)
class Job:
    refresh_id: str
    kind: JobKind
    entity_id: int

    @property
    def step(self) -> str:
        return self.kind.step

    def encode(self) -> bytes:
        return json.dumps(
            {
                "v": SCHEMA_VERSION,
                "refresh_id": self.refresh_id,
                "kind": self.kind.value,
                "id": self.entity_id,
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def decode(cls, body: bytes) -> Job:
        """Parse a message; unknown extra keys are ignored, anything missing or mistyped is an error."""
        try:
            data = json.loads(body)
            if not isinstance(data, dict):
                raise TypeError("not a JSON object")
            if data.get("v") != SCHEMA_VERSION:
                raise ValueError(f"unsupported schema version {data.get('v')!r} (expected {SCHEMA_VERSION})")
            entity_id = data["id"]
            refresh_id = data["refresh_id"]
            if type(entity_id) is not int or entity_id <= 0:
                raise ValueError(f"id must be a positive integer, got {entity_id!r}")
            if not isinstance(refresh_id, str) or not refresh_id:
                raise ValueError("refresh_id must be a non-empty string")
            return cls(refresh_id=refresh_id, kind=JobKind(data["kind"]), entity_id=entity_id)
        except (ValueError, TypeError, KeyError, UnicodeDecodeError) as exc:
            raise JobDecodeError(f"undecodable job message: {exc}") from None


@dataclass(frozen=True)
class Outcome:
    """What one job produced: the ledger status plus the data to write (if any)."""

    job: Job
    status: LedgerStatus
    value: Any = None  # Alliance | Corporation | list[int] | None
    http_status: int | None = None
    attempts: int = 1
    error: str | None = None
