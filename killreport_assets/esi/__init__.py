"""The ESI HTTP client: the six public routes this project reads, done the way ESI asks.

Every GET goes through the cache (never re-requested before it expires, then revalidated with
If-None-Match / If-Modified-Since), bodies are validated into typed models, failures are retried
with bounded backoff, and a process-wide `EsiGovernor` keeps the request rate, the concurrency
and ESI's error budget in check so that the process never gets 420'd.

Design note — threads, not asyncio: the callers are synchronous (Dagster assets, a thread pool
of job handlers, pika's thread-bound BlockingConnection consumers), and the throughput ceiling is
ESI's own limits (tens of requests per second), not the number of sockets; a blocking
`httpx.Client` shared by ~20 threads saturates that. A thread-based client needs no event loop
bridged into every worker thread, and the governor's shared state is plain locks. Waits go
through an injectable `Clock` so tests can make them instant.
"""

from .cache import CacheEntry, HttpCache, MemoryCache, WritableCache
from .client import EsiClient
from .clock import Clock, SystemClock
from .config import EsiConfig
from .errors import EsiBadRequest, EsiError, EsiPaused, EsiResponseInvalid, EsiUnavailable
from .governor import EsiGovernor
from .models import Alliance, AllianceHistoryEntry, AllianceMembers, Corporation, EsiModel, UniverseName
from .result import Answer, EsiResult

__all__ = [
    "Alliance",
    "AllianceMembers",
    "Answer",
    "AllianceHistoryEntry",
    "CacheEntry",
    "Clock",
    "Corporation",
    "EsiBadRequest",
    "EsiClient",
    "EsiConfig",
    "EsiError",
    "EsiGovernor",
    "EsiModel",
    "EsiPaused",
    "EsiResponseInvalid",
    "EsiResult",
    "EsiUnavailable",
    "HttpCache",
    "MemoryCache",
    "SystemClock",
    "UniverseName",
    "WritableCache",
]
