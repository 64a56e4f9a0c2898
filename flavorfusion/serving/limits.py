"""Connection and request limits, below the routes (pure ASGI, so they see every request, refused or not):

- `Observe`: counts every response by route and status, with its latency, in /metrics (5xx included); an
  exception no handler took becomes a one-line JSON 500 and one log line, never a traceback to the client.
- `SecurityHeaders`: CSP, nosniff and a frame policy on every response.
- `BodyReader`: reads a POST body before the app sees it: JSON only (`text/plain` would skip the browser's CORS
  preflight), at most `max_body_bytes`, within `body_timeout_s` (a slow sender gets 408); a client that goes
  away mid-body is one info line.
- `h11_protocol(header_timeout_s)`: uvicorn's HTTP/1.1 protocol with a deadline for a request's headers (uvicorn
  has none: a connection that never finishes its headers would be held forever).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

JSON_TYPES = ("application/json",)


async def send_error(send: Send, status: int, message: str, headers: list | None = None) -> None:
    body = json.dumps({"error": " ".join(str(message).split())}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class Observe:
    def __init__(self, app: ASGIApp, metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status: int | None = None

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed)
        except Exception as err:  # no handler took it: one line, one JSON 500, the connection kept
            log.error("internal error on %s %s: %s: %s", scope["method"], scope["path"], type(err).__name__,
                      " ".join(str(err).split())[:300])
            if status is None:
                await send_error(observed, 500, f"internal error ({type(err).__name__})")
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            label = str(status) if status is not None else "499"  # 499: the client left before an answer
            self.metrics.requests.labels(route, label).inc()
            self.metrics.latency.labels(route, label).observe(time.perf_counter() - start)


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
            return await send_error(send, 415, f"the body must be application/json, not {content_type or 'untyped'}")
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
                return
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


def h11_protocol(header_timeout_s: float):
    """uvicorn's h11 protocol, closing a connection whose request headers are not complete within
    `header_timeout_s` of its opening (or of the previous response)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimeoutH11Protocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(header_timeout_s, self._headers_timed_out)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_timed_out(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
                log.info("client %s: no complete request headers within serve.header_timeout_s=%s; closed",
                         f"{self.client[0]}:{self.client[1]}" if self.client else "?", header_timeout_s)
                self.transport.close()

        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def handle_events(self) -> None:
            cycle = self.cycle
            super().handle_events()
            if self.cycle is not cycle:  # a request's headers arrived
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

    return HeaderTimeoutH11Protocol
