"""Errors the ESI client raises.

A 420 (error limit) or 429 (rate limit) is never raised: the governor pauses and the client
retries; only when that keeps happening does it surface as `EsiUnavailable`.
"""

from __future__ import annotations


class EsiError(Exception):
    """ESI gave no usable answer. `status` is the HTTP status when there was one."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class EsiBadRequest(EsiError):
    """ESI answered 400: the request itself is wrong, so retrying cannot help."""


class EsiUnavailable(EsiError):
    """Retries ran out on 5xx, timeouts, connection errors or repeated throttling."""

    def __init__(
        self,
        route: str,
        entity_id: int | None,
        attempts: int,
        last_status: int | None,
        last_error: str | None,
    ) -> None:
        last = f"HTTP {last_status}" if last_status is not None else (last_error or "no response")
        target = route if entity_id is None else f"{route} ({entity_id})"
        super().__init__(
            f"ESI {target} unavailable after {attempts} attempt(s); last: {last}", status=last_status
        )
        self.route = route
        self.entity_id = entity_id
        self.attempts = attempts
        self.last_status = last_status
        self.last_error = last_error


class EsiResponseInvalid(EsiError):
    """A 200 body that does not match the schema; nothing from it is cached or returned."""

    def __init__(self, route: str, entity_id: int | None, field: str, message: str) -> None:
        target = route if entity_id is None else f"{route} ({entity_id})"
        super().__init__(f"invalid ESI response for {target}: field {field!r}: {message}", status=200)
        self.route = route
        self.entity_id = entity_id
        self.field = field
        self.message = message


class EsiPaused(Exception):
    """ESI requests are paused (an outage or the daily downtime) for longer than one job should wait,
    or the client was closed: hand the job back to be tried later, without spending an attempt.
    Not an `EsiError`: no request was sent, so nothing about the entity is known."""
