"""The simulator's ASGI app: ESI's six routes with ESI's headers, caching, limits and failures.

One catch-all endpoint parses the path itself, because ESI answers the same route under many
spellings (`/alliances`, `/alliances/`, `/latest/alliances/`, `/v2/alliances/`) and every request,
even to an unknown path, must go through the same limits and stats. `/_sim/*` is the test/admin API;
it is never counted or limited.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.utils import formatdate, parsedate_to_datetime
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from killreport_assets.simulator import shapes
from killreport_assets.simulator.limits import token_cost
from killreport_assets.simulator.state import (
    ALLIANCE,
    ALLIANCES,
    CORPORATION,
    HISTORY,
    MEMBERS,
    NAMES,
    Body,
    ResourceKey,
    SimulatorState,
)

JSON = "application/json; charset=UTF-8"
MAX_ID = 2**63 - 1
OLDEST_COMPATIBILITY_DATE = date(2020, 1, 1)
ERROR_LIMITED = (
    "This software has exceeded the error limit for ESI. If you are a user, please contact the maintainer of "
    "this software. If you are a developer/maintainer, please make a greater effort in the future to receive "
    "valid responses. Error limit will reset in {} seconds"
)
FAULT_BODIES = {
    "502": (502, {"error": "No reply within 10 seconds"}),
    "503": (503, {"error": "The datasource tranquility is temporarily unavailable"}),
    "504": (504, {"error": "Timeout contacting tranquility", "timeout": 10}),
}
LOAD_BALANCER_504 = (
    b"<html>\r\n<head><title>504 Gateway Time-out</title></head>\r\n<body>\r\n"
    b"<center><h1>504 Gateway Time-out</h1></center>\r\n</body>\r\n</html>\r\n"
)
BUCKET_GROUPS = ("alliance", "corporation", "static-data")


@dataclass(frozen=True, slots=True)
class RouteSpec:
    template: str  # stats key, e.g. "GET /corporations/{id}"
    method: str
    pattern: re.Pattern[str]
    kind: str
    group: str  # rate-limit group in bucket mode (CCP's tentative grouping, esi-docs PR #239)
    not_found: str


ROUTES = (
    RouteSpec("GET /alliances", "GET", re.compile(r"/alliances"), ALLIANCES, "alliance", ""),
    RouteSpec("GET /alliances/{id}", "GET", re.compile(r"/alliances/([^/]+)"), ALLIANCE, "alliance",
              "Alliance not found"),
    RouteSpec("GET /alliances/{id}/corporations", "GET", re.compile(r"/alliances/([^/]+)/corporations"), MEMBERS,
              "alliance", "Alliance not found"),
    RouteSpec("GET /corporations/{id}", "GET", re.compile(r"/corporations/([^/]+)"), CORPORATION, "corporation",
              "Corporation not found"),
    RouteSpec("GET /corporations/{id}/alliancehistory", "GET", re.compile(r"/corporations/([^/]+)/alliancehistory"),
              HISTORY, "corporation", "Corporation not found"),
    RouteSpec("POST /universe/names", "POST", re.compile(r"/universe/names"), NAMES, "static-data", ""),
)  # fmt: skip
_PREFIX = re.compile(r"/(?:latest|dev|legacy|v\d+)(?=/)")
_DIGITS = re.compile(r"[0-9]{1,19}")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def match_route(path: str) -> tuple[RouteSpec | None, str | None]:
    """The route for any accepted spelling of a path, and its raw ID segment."""
    prefix = _PREFIX.match(path)
    if prefix:
        path = path[prefix.end() :]
    if len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    for spec in ROUTES:
        found = spec.pattern.fullmatch(path)
        if found:
            return spec, (found.group(1) if found.groups() else None)
    return None, None


def corporation_shape(value: str | None, now: float) -> tuple[str, str | None]:
    """(shape, error) for an `X-Compatibility-Date`; absent means the oldest date, i.e. the legacy shape."""
    if value is None:
        return shapes.LEGACY, None
    try:
        if not _DATE.fullmatch(value):
            raise ValueError
        requested = date.fromisoformat(value)
    except ValueError:
        return shapes.LEGACY, f"Invalid compatibility date {value!r}: expected YYYY-MM-DD"
    if requested > datetime.fromtimestamp(now, UTC).date() + timedelta(days=1):
        return shapes.LEGACY, f"Invalid compatibility date {value!r}: the date cannot be in the future"
    if requested < OLDEST_COMPATIBILITY_DATE:
        return (
            shapes.LEGACY,
            f"Invalid compatibility date {value!r}: the oldest is {OLDEST_COMPATIBILITY_DATE}",
        )
    return (shapes.NEW if requested >= shapes.NEW_CORPORATION_SHAPE else shapes.LEGACY), None


def etag_matches(header: str, body: Body) -> bool:
    return any(tag.strip().removeprefix("W/") in (body.opaque, "*") for tag in header.split(","))


def not_modified_since(header: str, last_modified: int) -> bool:
    try:
        return parsedate_to_datetime(header).timestamp() >= last_modified
    except (TypeError, ValueError, IndexError):
        return False


@dataclass(slots=True)
class Answer:
    status: int
    content: bytes = b""
    content_type: str | None = JSON
    headers: dict[str, str] | None = None
    limit_headers: bool = True  # a load balancer's own error page carries no ESI headers

    @classmethod
    def error(cls, status: int, message: str, **extra: Any) -> Answer:
        return cls(status, shapes.dumps({"error": message, **extra}))


class EsiEndpoint:
    """The request pipeline: limits, downtime, latency, faults, validation, the resource, caching, stats."""

    def __init__(self, state: SimulatorState) -> None:
        self.state = state
        self._date_second = -1
        self._date_text = ""

    def http_date(self, second: int) -> str:
        if second != self._date_second:
            self._date_second, self._date_text = second, formatdate(second, usegmt=True)
        return self._date_text

    async def __call__(self, request: Request) -> Response:
        state = self.state
        now = state.clock()
        ip = request.client.host if request.client else "unknown"
        spec, raw_id = match_route(request.scope["path"])
        method = "GET" if request.method == "HEAD" else request.method
        headers = request.headers
        compat = headers.get("x-compatibility-date")
        if compat is None and request.scope["query_string"]:
            compat = request.query_params.get("compatibility_date")
        shape, compat_error = corporation_shape(compat, now)
        key: ResourceKey | None = None
        if spec is not None and spec.kind != NAMES and method == spec.method:
            entity_id = int(raw_id) if raw_id is not None and _DIGITS.fullmatch(raw_id) else 0
            key = (spec.kind, entity_id, shape if spec.kind == CORPORATION else "")
        stats = state.stats
        stats.requests += 1
        stats.by_second[int(now)] += 1
        template = spec.template if spec is not None else "other"
        if key is not None and state.is_early(key, now):
            stats.early += 1
            stats.early_by_route[template] += 1
        conditional = "if-none-match" in headers or "if-modified-since" in headers
        if conditional:
            stats.conditional += 1

        answer = await self.answer(request, spec, method, raw_id, compat_error, key, ip, now)
        now, config, stats = state.clock(), state.config, state.stats  # latency may have let these change
        out: dict[str, str] = {"Date": self.http_date(int(now)), "X-Esi-Request-Id": str(uuid.uuid4())}
        if answer.content_type is not None:
            out["Content-Type"] = answer.content_type
        if answer.headers:
            out.update(answer.headers)
        status = answer.status
        if status >= 400 and status != 420:
            stats.errors += 1
            if config.rate_limit_mode == "error-limit":
                state.error_limiter.record_error(ip, now, config.error_window)
                stats.errors_by_window[int(now // config.error_window)] += 1
        if config.rate_limit_mode == "bucket":
            if spec is not None:
                group = spec.group
                cost = token_cost(status)
                state.buckets.spend(group, ip, now, cost)
                out["X-Ratelimit-Group"] = group
                out["X-Ratelimit-Limit"] = config.bucket_limit_header
                out["X-Ratelimit-Remaining"] = str(
                    state.buckets.remaining(group, ip, now, config.bucket_window, config.bucket_tokens)
                )
                out["X-Ratelimit-Used"] = str(cost)
        elif answer.limit_headers:
            limiter = state.error_limiter
            remain = limiter.remaining(ip, now, config.error_window, config.error_limit)
            if stats.lowest_error_remain is None or remain < stats.lowest_error_remain:
                stats.lowest_error_remain = remain
            out["X-Esi-Error-Limit-Remain"] = str(remain)
            out["X-Esi-Error-Limit-Reset"] = str(limiter.reset_in(now, config.error_window))
        stats.by_route[template][str(status)] += 1
        if status == 304:
            stats.not_modified += 1
        return Response(answer.content, status_code=status, headers=out)

    async def answer(
        self,
        request: Request,
        spec: RouteSpec | None,
        method: str,
        raw_id: str | None,
        compat_error: str | None,
        key: ResourceKey | None,
        ip: str,
        now: float,
    ) -> Answer:
        state, config, stats = self.state, self.state.config, self.state.stats
        if config.rate_limit_mode == "error-limit":
            if state.error_limiter.remaining(ip, now, config.error_window, config.error_limit) <= 0:
                stats.error_limited += 1
                return Answer.error(
                    420, ERROR_LIMITED.format(state.error_limiter.reset_in(now, config.error_window))
                )
        elif (
            spec is not None
            and state.buckets.remaining(spec.group, ip, now, config.bucket_window, config.bucket_tokens) <= 0
        ):
            stats.rate_limited += 1
            wait = state.buckets.retry_after(spec.group, ip, now, config.bucket_window, config.bucket_tokens)
            message = f"Too many requests in rate limit group {spec.group}; retry in {wait}s"
            return Answer(429, shapes.dumps({"error": message}), headers={"Retry-After": str(wait)})
        if spec is None:
            return Answer.error(404, "Not found")
        if method != spec.method:
            return Answer.error(405, "Method not allowed")
        if state.in_downtime(now):
            stats.faults["downtime"] += 1
            return Answer(503, shapes.dumps(FAULT_BODIES["503"][1]))
        delay = state.latency()
        if delay:
            await asyncio.sleep(delay)
            config, stats = state.config, state.stats
        fault = state.roll_fault()
        if fault is not None:
            stats.faults[fault] += 1
            if fault == "504-html":
                return Answer(
                    504, LOAD_BALANCER_504, "text/html", {"Server": "awselb/2.0"}, limit_headers=False
                )
            status, body = FAULT_BODIES[fault]
            return Answer(status, shapes.dumps(body))
        if compat_error is not None:
            return Answer.error(400, compat_error)
        if spec.kind == NAMES:
            return self.names(await bounded_body(request, NAMES_BODY_LIMIT))
        if spec.kind == ALLIANCES:
            entity_id = 0
        else:
            if raw_id is None or not _DIGITS.fullmatch(raw_id) or not 1 <= int(raw_id) <= MAX_ID:
                name = "alliance_id" if spec.kind in (ALLIANCE, MEMBERS) else "corporation_id"
                return Answer.error(400, f"Invalid {name}: must be a positive 64-bit integer, got {raw_id!r}")
            entity_id = int(raw_id)
            poisoned = (
                config.poison_alliances if spec.kind in (ALLIANCE, MEMBERS) else config.poison_corporations
            )
            if entity_id in poisoned:
                stats.faults["poison"] += 1
                return Answer.error(500, "Unhandled internal error encountered!")
        assert key is not None
        body = state.body(spec.kind, entity_id, key[2])
        if body is None:
            return Answer.error(404, spec.not_found)
        return self.cached(request, key, body)

    def cached(self, request: Request, key: ResourceKey, body: Body) -> Answer:
        """A 200, or a 304 when the client's ETag or date is current; both announce a fresh Expires."""
        state = self.state
        now = state.clock()
        last_modified = state.last_modified(key, body, now)
        expires = state.announce(key, now)
        headers = {
            "Cache-Control": f"public, max-age={state.config.cache_ttl}",
            "ETag": body.etag,
            "Expires": formatdate(expires, usegmt=True),
            "Last-Modified": formatdate(last_modified, usegmt=True),
        }
        if_none_match = request.headers.get("if-none-match")
        if if_none_match is not None:
            fresh = etag_matches(if_none_match, body)
        else:
            since = request.headers.get("if-modified-since")
            fresh = since is not None and not_modified_since(since, last_modified)
        if fresh:
            return Answer(304, b"", None, headers)
        return Answer(200, body.content, JSON, headers)

    def names(self, raw: bytes) -> Answer:
        try:
            ids = json.loads(raw)
        except ValueError:
            return Answer.error(400, "Invalid body: expected a JSON array of IDs")
        if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            return Answer.error(400, "Invalid body: expected a JSON array of integer IDs")
        if not 1 <= len(ids) <= 1000:
            return Answer.error(400, f"Invalid body: between 1 and 1000 IDs are allowed, got {len(ids)}")
        universe = self.state.universe
        rows = []
        for entity_id in dict.fromkeys(ids):  # duplicates are resolved once (GUESS: ESI is as lenient)
            found = universe.name_of(entity_id)
            if found is None:
                return Answer.error(404, "Ensure all IDs are valid before resolving")
            rows.append({"category": found[0], "id": entity_id, "name": found[1]})
        return Answer(200, shapes.dumps(rows))


class AdminApi:
    """`/_sim/*`: inspect and steer a running simulator from tests (never counted or limited)."""

    def __init__(self, state: SimulatorState) -> None:
        self.state = state

    def routes(self) -> list[Route]:
        return [
            Route("/_sim/stats", self.stats, methods=["GET"]),
            Route("/_sim/reset-stats", self.reset_stats, methods=["POST"]),
            Route("/_sim/day", self.day, methods=["GET", "POST"]),
            Route("/_sim/universe", self.universe, methods=["GET"]),
            Route("/_sim/config", self.config, methods=["GET", "POST"]),
            Route("/_sim/downtime", self.downtime, methods=["POST"]),
            Route("/_sim/exhaust-error-limit", self.exhaust_error_limit, methods=["POST"]),
            Route("/_sim/exhaust-bucket", self.exhaust_bucket, methods=["POST"]),
            Route("/_sim/reset-limits", self.reset_limits, methods=["POST"]),
        ]

    @staticmethod
    async def payload(request: Request) -> dict[str, Any]:
        raw = await bounded_body(request, CONTROL_BODY_LIMIT)
        value = json.loads(raw) if raw.strip() else {}
        if not isinstance(value, dict):
            raise ValueError("expected a JSON object")
        return value

    @staticmethod
    def reply(value: Any, status: int = 200) -> Response:
        return Response(shapes.dumps(value), status_code=status, media_type=JSON)

    async def stats(self, request: Request) -> Response:
        return self.reply({**self.state.stats.to_json(), "day": self.state.universe.day})

    async def reset_stats(self, request: Request) -> Response:
        self.state.reset_stats()
        return self.reply({"ok": True})

    async def day(self, request: Request) -> Response:
        previous = self.state.universe.day
        if request.method == "POST":
            try:
                day = (await self.payload(request))["day"]
                if not isinstance(day, int) or isinstance(day, bool) or day < 0:
                    raise ValueError(f"day must be a non-negative integer, got {day!r}")
                self.state.set_day(day)
            except (KeyError, ValueError) as exc:
                return self.reply({"error": f'expected {{"day": n}}: {exc}'}, 400)
        universe = self.state.universe
        drift: dict[str, int] = {}
        for event in universe.drift_log:
            drift[event.kind] = drift.get(event.kind, 0) + 1
        return self.reply(
            {
                "day": universe.day,
                "previous_day": previous,
                "as_of": universe.as_of.isoformat(),
                "drift": drift,
            }
        )

    async def universe(self, request: Request) -> Response:
        return Response(self.state.universe_json(), media_type=JSON)

    async def config(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                self.state.update_config(await self.payload(request))
            except (TypeError, ValueError) as exc:
                return self.reply({"error": str(exc)}, 400)
        return self.reply(self.state.config.to_json())

    async def downtime(self, request: Request) -> Response:
        try:
            seconds = float((await self.payload(request)).get("seconds", 0))
        except (TypeError, ValueError) as exc:
            return self.reply({"error": f'expected {{"seconds": n}}: {exc}'}, 400)
        until = self.state.force_downtime(seconds)
        return self.reply({"until": until or None})

    async def exhaust_error_limit(self, request: Request) -> Response:
        ip = request.client.host if request.client else "unknown"
        return self.reply({"ip": ip, "reset": self.state.exhaust_error_limit(ip)})

    async def exhaust_bucket(self, request: Request) -> Response:
        ip = request.client.host if request.client else "unknown"
        try:
            group = (await self.payload(request)).get("group")
        except ValueError as exc:
            return self.reply({"error": str(exc)}, 400)
        if group is not None and group not in BUCKET_GROUPS:
            return self.reply({"error": f"group must be one of {BUCKET_GROUPS}"}, 400)
        groups = (group,) if group else BUCKET_GROUPS
        self.state.exhaust_buckets(ip, groups)
        return self.reply({"ip": ip, "groups": list(groups)})

    async def reset_limits(self, request: Request) -> Response:
        self.state.reset_limits()
        return self.reply({"ok": True})


ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def create_app(state: SimulatorState) -> Starlette:
    """The ASGI app serving `state`; `app.state.simulator` gives in-process access to it."""
    esi = EsiEndpoint(state)
    app = Starlette(
        routes=[*AdminApi(state).routes(), Route("/{path:path}", esi.__call__, methods=ALL_METHODS)]
    )
    app.state.simulator = state
    return app


# Request bodies are read only up to these sizes (the control API's are a few settings; ESI's
# POST /universe/names takes at most 1000 IDs), so no client can make the simulator hold a huge body.
CONTROL_BODY_LIMIT = 64 * 1024
NAMES_BODY_LIMIT = 256 * 1024


async def bounded_body(request: Request, limit: int) -> bytes:
    """The request body, or 413 once it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"request body over {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, f"request body over {limit} bytes")
    return bytes(body)
