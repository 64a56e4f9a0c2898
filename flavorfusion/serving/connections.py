"""The connection layer under the app (uvicorn's HTTP/1.1 protocol, subclassed), where a client can hold a server
without ever reaching a route:

- a request's headers must arrive within `serve.header_timeout_s` of the connection (or of the previous answer);
- at most `serve.max_connections` connections are held: a new one beyond it closes the connection that has been
  idle longest (no request in progress: keep-alive, or never sent one), so idle and slow sockets cannot lock out
  real clients, health checks included. A connection younger than `GRACE_S` that has not sent its first request
  yet is spared (a real client sends at once; a flood's fresh sockets must not push it out). When nothing can be
  closed, the new connection is refused with a JSON 503 and `Retry-After`, written before its request is read;
- a malformed request gets the one JSON error shape (uvicorn answers plain text);
- each of these refusals is counted in `/metrics` under `route="unrouted"`.

uvicorn's own `limit_concurrency` is left off: it answered plain-text 503s to every request, health included,
while idle sockets held the connections, and counted none of them.
"""

from __future__ import annotations

import asyncio
import logging
import re

from flavorfusion.serving.errors import error_body
from flavorfusion.serving.telemetry import UNROUTED, Telemetry

log = logging.getLogger(__name__)

RETRY_AFTER_S = 1
GRACE_S = 0.5  # how long a new connection may take to send its first request before it counts as idle


def raw_response(status: int, reason: str, message: str, retry_after: int | None = None) -> bytes:
    """A whole HTTP/1.1 response with a JSON error body, for answers written below the app."""
    body = error_body(message)
    headers = [b"content-type: application/json", b"content-length: " + str(len(body)).encode(),
               b"connection: close"] + ([b"retry-after: " + str(retry_after).encode()] if retry_after else [])
    return b"\r\n".join([f"HTTP/1.1 {status} {reason}".encode(), *headers, b"", body])


def protocol(header_timeout_s: float, max_connections: int, telemetry: Telemetry | None = None):
    """uvicorn's h11 protocol with the header deadline, the connection cap and the JSON refusals above."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    def count(status: int) -> None:
        if telemetry is not None:
            telemetry.count(UNROUTED, status)

    class GuardedH11Protocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None
        _idle_since: float = 0.0
        _opened: float = 0.0
        _requests: int = 0
        _refused: bool = False

        # -- idle connections and the cap ------------------------------------------------------------------
        @property
        def idle(self) -> bool:
            """No request in progress: between requests, or none sent yet."""
            return self.cycle is None or self.cycle.response_complete

        def evictable(self, now: float) -> bool:
            return (self.idle and not self._refused and not self.transport.is_closing()
                    and (self._requests > 0 or now - self._opened >= GRACE_S))

        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._opened = self._idle_since = self.loop.time()
            self._arm()
            if telemetry is not None:
                telemetry.connections.set(len(self.connections))
            if len(self.connections) > max_connections and not self._make_room():
                self._refuse()

        def _make_room(self) -> bool:
            """Close the longest-idle other connections until the cap holds; False if too few could go."""
            now = self.loop.time()
            idle = sorted((c for c in self.connections if c is not self and getattr(c, "evictable", None)
                           and c.evictable(now)), key=lambda c: c._idle_since)
            excess = len(self.connections) - max_connections
            for connection in idle[:excess]:
                connection.transport.close()
                if telemetry is not None:
                    telemetry.evicted.inc()
            return len(idle) >= excess

        def _refuse(self) -> None:
            """The answer to the request this connection is about to send, written first; the connection closes once
            the request has arrived (closing with it unread would reset the connection before the client reads)."""
            log.warning("client %s: refused, all %d connections are busy (serve.max_connections)", self._client(),
                        max_connections)
            self._refused = True
            self._disarm()
            self.connections.discard(self)  # it holds no place under the cap while it waits to close
            count(503)
            self.transport.write(raw_response(503, "Service Unavailable", "busy: every connection is serving a "
                                              "request; retry in a second", RETRY_AFTER_S))
            self.loop.call_later(RETRY_AFTER_S, self.transport.close)

        def data_received(self, data: bytes) -> None:
            if self._refused:  # its answer was written already
                self.transport.close()
                return
            super().data_received(data)

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)
            if telemetry is not None:
                telemetry.connections.set(len(self.connections))

        # -- the header deadline -----------------------------------------------------------------------------
        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(header_timeout_s, self._headers_timed_out)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_timed_out(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing() and self.idle:
                log.info("client %s: no complete request headers within serve.header_timeout_s=%s; closed",
                         self._client(), header_timeout_s)
                self.transport.close()

        def handle_events(self) -> None:
            cycle = self.cycle
            super().handle_events()
            if self.cycle is not cycle:  # a request's headers arrived
                self._requests += 1
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._idle_since = self.loop.time()
            if not self.transport.is_closing():
                self._arm()

        # -- malformed requests --------------------------------------------------------------------------------
        def send_400_response(self, msg: str) -> None:
            count(400)
            self.transport.write(raw_response(400, "Bad Request", "the request is not valid HTTP/1.1 (its request "
                                              "line or headers could not be parsed)"))
            self.transport.close()

        def _client(self) -> str:
            return f"{self.client[0]}:{self.client[1]}" if self.client else "?"

    return GuardedH11Protocol


class RedactQueryStrings(logging.Filter):
    """Access-log lines without query strings: a key or reviews sent in a URL (`?text=...`) are not logged."""

    _QUERY = re.compile(r"\?.*$")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) >= 3 and isinstance(record.args[2], str):
            record.args = (*record.args[:2], self._QUERY.sub("?<redacted>", record.args[2]), *record.args[3:])
        return True
