"""The ASGI middleware around the routes (pure ASGI, so they see every request, refused or not):

- `Observe`: counts every response by its route and status, with its latency, in /metrics (refusals and 5xx
  included; `route="unrouted"` when no route matches); an exception no handler took becomes a one-line JSON 500
  and one log line, never a traceback to the client; a request's line and headers beyond `serve.max_header_bytes`
  are refused with 431.
- `SecurityHeaders`: CSP, nosniff and a frame policy on every response.
- `BodyReader`: reads a POST body before the app sees it: JSON only (`text/plain` would skip the browser's CORS
  preflight), at most `max_body_bytes`, within `body_timeout_s` (a slow sender gets 408); a client that goes
  away mid-body is one info line and a 499.
"""

from __future__ import annotations

import asyncio
import logging
import time

from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flavorfusion.serving.errors import error_body
from flavorfusion.serving.telemetry import UNROUTED

log = logging.getLogger(__name__)

JSON_TYPES = ("application/json",)


async def send_error(send: Send, status: int, message: str, headers: list | None = None) -> None:
    body = error_body(message)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


def leaf_routes(routes) -> list:
    """Every route with a path, with included routers (FastAPI's `include_router`, no prefix) opened up."""
    found = []
    for route in routes:
        if hasattr(route, "path"):
            found.append(route)
        elif hasattr(route, "original_router"):
            found += leaf_routes(route.original_router.routes)
    return found


def route_of(app, scope: Scope) -> str:
    """The path of the route a request is for (its template, e.g. `/api/restaurants/{business_id:path}`), also when
    it is refused before reaching it; `unrouted` when no route matches the path."""
    for route in leaf_routes(app.router.routes):
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            return route.path
    return UNROUTED


def header_bytes(scope: Scope) -> int:
    """The size of a request's line and headers as sent (CRLFs and separators included)."""
    line = len(scope["method"]) + len(scope.get("raw_path", b"")) + len(scope.get("query_string", b"")) + 12
    return line + sum(len(name) + len(value) + 4 for name, value in scope["headers"]) + 2


class Observe:
    def __init__(self, app: ASGIApp, telemetry, routed_app, max_header_bytes: int):
        self.app, self.telemetry, self.routed_app, self.max_header_bytes = app, telemetry, routed_app, max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status: int | None = None
        route = route_of(self.routed_app, scope)

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if header_bytes(scope) > self.max_header_bytes:
                return await send_error(observed, 431, f"the request line and headers are more than "
                                                       f"{self.max_header_bytes} bytes (serve.max_header_bytes)",
                                        [(b"connection", b"close")])
            await self.app(scope, receive, observed)
        except Exception as err:  # no handler took it: one line, one JSON 500, the connection kept
            log.error("internal error on %s %s: %s: %s", scope["method"], scope["path"], type(err).__name__,
                      " ".join(str(err).split())[:300])
            if status is None:
                await send_error(observed, 500, f"internal error ({type(err).__name__})")
        finally:
            # 499: the client left before an answer (nginx's code)
            self.telemetry.count(route, status if status is not None else 499, time.perf_counter() - start)


class SecurityHeaders:
    def __init__(self, app: ASGIApp, csp: str):
        self.app = app
        self.headers = [(b"content-security-policy", csp.encode()), (b"x-content-type-options", b"nosniff"),
                        (b"x-frame-options", b"DENY"), (b"referrer-policy", b"no-referrer")]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.headers]}
            await send(message)

        await self.app(scope, receive, with_headers)


class BodyReader:
    def __init__(self, app: ASGIApp, max_body_bytes: int, body_timeout_s: float):
        self.app, self.max_body_bytes, self.timeout = app, max_body_bytes, body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        content_type = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
        if content_type not in JSON_TYPES:
            return await send_error(send, 415, f"the body must be JSON: send the header Content-Type: "
                                               f"application/json (this request sent {content_type or 'none'})")
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_body_bytes:
            # an oversized body is read to its end (and dropped) up to 8x the limit, so that the client, still
            # sending, gets to read the 413 instead of a broken pipe; beyond that the connection is cut
            if int(length) <= 8 * self.max_body_bytes and not await self._drain(receive):
                return
            return await send_error(send, 413, f"the body is {int(length)} bytes, more than {self.max_body_bytes}",
                                    [(b"connection", b"close")])
        chunks, size = [], 0
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:  # noqa: UP041  (not TimeoutError on Python 3.10)
                log.info("client %s: body not received within serve.body_timeout_s=%s; answered 408",
                         _client(scope), self.timeout)
                return await send_error(send, 408, f"the body did not arrive within {self.timeout} s",
                                        [(b"connection", b"close")])
            if message["type"] == "http.disconnect":
                log.info("client %s disconnected before its body was received (%s %s)", _client(scope),
                         scope["method"], scope["path"])
                return  # nothing answered: counted as 499
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_body_bytes:
                return await send_error(send, 413, f"the body is more than {self.max_body_bytes} bytes",
                                        [(b"connection", b"close")])
            if not message.get("more_body", False):
                break
        body, sent = b"".join(chunks), False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _drain(self, receive: Receive) -> bool:
        """Read and drop the body; False when the client went away or stalled."""
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:  # noqa: UP041
                return False
            if message["type"] == "http.disconnect":
                return False
            if not message.get("more_body", False):
                return True


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "?"
