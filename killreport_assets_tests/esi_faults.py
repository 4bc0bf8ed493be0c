"""What real ESI does that the simulator's universe does not: a wrapper in front of the simulator's
app that edits chosen answers (player text with NUL, a date without offset, values the database
cannot hold), truncates the alliance list, answers a stray 404, a path that keeps failing, or an
outage of every route, and counts requests per path.

Written here, beside the tests that need it, so the simulator stays an independent model of ESI.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Edit = Callable[[Any], Any]  # parsed JSON body → the body to send instead


@dataclass
class Faults:
    edits: dict[str, Edit] = field(default_factory=dict)  # path → how to change its 200 body
    not_found: dict[str, int] = field(default_factory=dict)  # path → how many more 404s to answer
    truncate_alliances: int | None = None  # keep only this many IDs of /alliances
    failing: dict[str, int] = field(default_factory=dict)  # path → the 5xx it always answers
    raw: dict[str, bytes] = field(default_factory=dict)  # path → a 200 with exactly this body
    outage: int | None = None  # every ESI route answers this 5xx while set
    requests: Counter[str] = field(default_factory=Counter)  # path → requests seen

    def clear(self) -> None:
        self.edits.clear()
        self.not_found.clear()
        self.failing.clear()
        self.raw.clear()
        self.truncate_alliances = None
        self.outage = None


_VERSION = re.compile(r"^/(latest|legacy|dev|v\d+)(?=/)")


def normalise(path: str) -> str:
    path = _VERSION.sub("", path)
    return path.rstrip("/") or "/"


class FaultyEsi:
    """An ASGI app: `inner` (the simulator), with `faults` applied."""

    def __init__(self, inner: Any, faults: Faults) -> None:
        self.inner = inner
        self.faults = faults

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_sim"):
            await self.inner(scope, receive, send)
            return
        path = normalise(scope["path"])
        self.faults.requests[path] += 1
        if path in self.faults.raw:
            headers = [(b"content-type", b"application/json"), (b"cache-control", b"public, max-age=300")]
            await _send(send, 200, headers, self.faults.raw[path])
            return
        status = self.faults.outage or self.faults.failing.get(path)
        if status is not None:
            body = b'{"error":"The datasource tranquility is temporarily unavailable"}'
            await _send(send, status, [(b"content-type", b"application/json")], body)
            return
        if self.faults.not_found.get(path, 0) > 0:
            self.faults.not_found[path] -= 1
            await _send(send, 404, [(b"content-type", b"application/json")], b'{"error":"Not found"}')
            return
        edit = self.faults.edits.get(path)
        if path == "/alliances" and self.faults.truncate_alliances is not None:
            keep = self.faults.truncate_alliances
            edit = lambda ids: ids[:keep]  # noqa: E731
        if edit is None:
            await self.inner(scope, receive, send)
            return
        # An edited body has its own validators: the simulator's 304 would not apply to it.
        conditional = (b"if-none-match", b"if-modified-since")
        scope = {**scope, "headers": [(k, v) for k, v in scope["headers"] if k.lower() not in conditional]}
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def capture(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.inner(scope, receive, capture)
        body = b"".join(chunks)
        headers = [(k, v) for k, v in start["headers"] if k.lower() not in (b"content-length", b"etag")]
        if start["status"] == 200:
            body = json.dumps(edit(json.loads(body))).encode()
            headers.append((b"etag", b'"edited-%d"' % (hash(body) & 0xFFFFFFFF)))
        await _send(send, start["status"], headers, body)


async def _send(send: Any, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
