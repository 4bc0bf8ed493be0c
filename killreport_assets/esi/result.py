"""What a GET returns: the value plus how it was obtained and how long it stays fresh."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Generic, TypeVar

from .cache import CacheEntry

T = TypeVar("T")


class Answer(StrEnum):
    FETCHED = "fetched"  # 200 with a new body
    UNCHANGED = "unchanged"  # 304 to a conditional request; the stored body, re-parsed
    CACHED = "cached"  # still fresh in the cache; no request made
    GONE = "gone"  # 404


@dataclass(frozen=True)
class EsiResult(Generic[T]):
    """`value` is None only when GONE. `status` is None when CACHED (no request was made);
    `attempts` counts the HTTP attempts this result took (0 when CACHED; pauses not counted).
    `entry` is what the cache should now hold for `url` (a new body, or new freshness after a 304);
    None when nothing changed or the answer is not cacheable."""

    value: T | None
    answer: Answer
    url: str
    status: int | None = None
    expires_at: datetime | None = None
    etag: str | None = None
    attempts: int = 0
    entry: CacheEntry | None = None
