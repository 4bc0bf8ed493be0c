"""The job message format and what a finished job hands to storage.

A job names one entity to refresh within one refresh (a Dagster run). The same job can be delivered
twice (RabbitMQ redelivery, a retried step): everything downstream is an idempotent upsert keyed by
(refresh, step, entity), so a repeat is harmless.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from killreport_assets.esi import CacheEntry, EsiModel
from killreport_assets.registry import REGISTRY, EntityKind
from killreport_assets.storage import REFRESH_ID_LENGTH, LedgerEntry, LedgerStatus, Store

SCHEMA_VERSION = 1


class JobDecodeError(ValueError):
    """A message body is not a job this program understands."""


@dataclass(frozen=True)
class Job:
    refresh_id: str
    kind: EntityKind
    entity_id: int

    def encode(self) -> bytes:
        body = {
            "v": SCHEMA_VERSION,
            "refresh_id": self.refresh_id,
            "kind": self.kind.name,
            "id": self.entity_id,
        }
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, body: bytes) -> Job:
        """Parse a message; unknown extra keys are ignored, anything missing or mistyped is an error."""
        try:
            data = json.loads(body)
            if not isinstance(data, dict):
                raise TypeError("not a JSON object")
            if data.get("v") != SCHEMA_VERSION:
                raise ValueError(f"unsupported schema version {data.get('v')!r} (expected {SCHEMA_VERSION})")
            entity_id, refresh_id, kind = data["id"], data["refresh_id"], data["kind"]
            if type(entity_id) is not int or not 0 < entity_id < 2**63:
                raise ValueError(f"id must be a positive 64-bit integer, got {entity_id!r}")
            if not isinstance(refresh_id, str) or not refresh_id:
                raise ValueError("refresh_id must be a non-empty string")
            if len(refresh_id) > REFRESH_ID_LENGTH:
                raise ValueError(f"refresh_id longer than {REFRESH_ID_LENGTH} characters")
            if not isinstance(kind, str):
                raise TypeError(f"kind must be a string, got {kind!r}")
            return cls(refresh_id=refresh_id, kind=REGISTRY.get(kind), entity_id=entity_id)
        except KeyError as exc:
            raise JobDecodeError(f"undecodable job message: missing or unknown {exc}") from None
        except (ValueError, TypeError, UnicodeDecodeError) as exc:
            raise JobDecodeError(f"undecodable job message: {exc}") from None


@dataclass(frozen=True)
class Outcome:
    """What one job produced: its ledger status, the entity (None when gone or failed), and the ESI
    response to keep with it. Storage writes it as one `storage.Finished`."""

    job: Job
    status: LedgerStatus
    value: EsiModel | None = None
    http_status: int | None = None
    attempts: int = 1
    error: str | None = None
    response: tuple[str, CacheEntry] | None = None

    @property
    def entry(self) -> LedgerEntry:
        job = self.job
        return LedgerEntry(
            job.refresh_id,
            job.kind.name,
            job.entity_id,
            self.status,
            self.attempts,
            self.http_status,
            self.error,
        )

    @property
    def store(self) -> Store:
        return self.job.kind.store

    @property
    def gone(self) -> bool:
        return self.status is LedgerStatus.GONE
