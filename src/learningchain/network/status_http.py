"""The node's read-only HTTP endpoint: ``GET /status`` as JSON, and whatever else
``routes`` serves (the chain explorer, Prometheus metrics), all read-only.

It is built to survive anyone who
can reach it: it binds to loopback unless told otherwise, gives a client a few
seconds to send its request head (slow-loris connections are closed, not kept
open for ever), reads at most 8 KiB of head, serves one request per connection,
and holds at most ``max_connections`` connections at once, so the P2P listener
never starves of file descriptors: when they are all taken, a new connection
replaces the one that has waited longest for its request head, so slow clients
cannot keep out a prompt one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Callable, Optional
from urllib.parse import parse_qs, urlsplit

__all__ = ["StatusServer", "RateLimitedExceptionHandler"]

log = logging.getLogger("learningchain.status")

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            408: "Request Timeout", 431: "Request Header Fields Too Large", 500: "Internal Server Error",
            503: "Service Unavailable"}


class StatusServer:
    """A minimal HTTP/1.1 responder: one request per connection, GET and HEAD only.

    ``status(evaluate)`` returns the /status document (``evaluate`` is False when
    the query says ``eval=0``: skip the test-error evaluation); None serves no
    /status. ``routes(path, query)`` answers any other path with ``(code,
    content type, body bytes)``, or None for a path it does not serve.
    """

    def __init__(self, status: Optional[Callable[[bool], dict]], *, host: str = "127.0.0.1", port: int = 0,
                 header_timeout: float = 5.0, max_head_bytes: int = 8192, max_connections: int = 32,
                 routes: Optional[Callable[[str, dict], Optional[tuple]]] = None):
        self._status = status
        self._routes = routes
        self.host = host
        self.port = port
        self.header_timeout = header_timeout
        self.max_head_bytes = max_head_bytes
        self.max_connections = max_connections
        self.refused = 0
        self.timed_out = 0
        self._server: Optional[asyncio.base_events.Server] = None
        self._waiting: dict = {}  # connections still reading their request head, oldest first
        self._counted: set = set()  # connections holding a slot

    @property
    def open_connections(self) -> int:
        return len(self._counted)

    async def start(self) -> tuple:
        self._server = await asyncio.start_server(self._serve, self.host, self.port,
                                                  limit=self.max_head_bytes, backlog=64)
        sock = self._server.sockets[0]
        self.port = int(sock.getsockname()[1])
        return self.host, self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            try:
                await asyncio.wait_for(self._server.wait_closed(), timeout=2.0)
            except asyncio.TimeoutError:  # pragma: no cover - a client that will not close
                pass
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.open_connections >= self.max_connections:
            # Full: make room by dropping the connection that has waited longest for
            # its request head (a slow client), so that slow clients cannot keep a
            # prompt one out; refuse only when every slot is answering a request.
            if not self._waiting:
                self.refused += 1
                writer.transport.abort()
                return
            oldest = next(iter(self._waiting))
            del self._waiting[oldest]
            self._release(oldest)  # its slot is the newcomer's now, before its task runs
            self.refused += 1
            oldest.transport.abort()
        self._counted.add(writer)
        self._waiting[writer] = None
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=self.header_timeout)
            except asyncio.TimeoutError:
                self.timed_out += 1
                await self._reply(writer, 408, {"error": "request head not received in time"})
                return
            except asyncio.LimitOverrunError:
                await self._reply(writer, 431, {"error": f"request head over {self.max_head_bytes} bytes"})
                return
            except (asyncio.IncompleteReadError, ConnectionError, OSError):
                return
            finally:
                self._waiting.pop(writer, None)
            method, response = await self._answer(head)
            await self._send(writer, *response, head_only=method == "HEAD")
        except (ConnectionError, OSError):
            pass
        finally:
            self._release(writer)
            try:
                writer.close()
            except Exception:  # pragma: no cover
                pass

    def _release(self, writer) -> None:
        self._counted.discard(writer)

    async def _answer(self, head: bytes) -> tuple:
        """(method, (code, content type, body bytes)). ``routes`` runs in a worker
        thread, so that reading a large block never holds up the node's event loop."""
        try:
            line = head.split(b"\r\n", 1)[0].decode("ascii")
            method, target, version = line.split(" ")
        except (UnicodeDecodeError, ValueError):
            return "GET", _json(400, {"error": "malformed request line"})
        if not version.startswith("HTTP/1."):
            return method, _json(400, {"error": "HTTP/1.x only"})
        if method not in ("GET", "HEAD"):
            return method, _json(405, {"error": "read-only: GET and HEAD only"})
        parts = urlsplit(target)
        query = parse_qs(parts.query)
        try:
            if parts.path == "/status" or (parts.path == "/" and self._routes is None):
                if self._status is None:
                    return method, _json(404, {"error": "no /status here"})
                evaluate = query.get("eval", ["1"])[-1] not in ("0", "false", "no")
                return method, _json(200, self._status(evaluate))
            answer = None
            if self._routes is not None:
                answer = await asyncio.get_running_loop().run_in_executor(None, self._routes, parts.path, query)
        except Exception as exc:  # the node's state is its own concern; the API answers anyway
            log.warning("status API: %s: %s", type(exc).__name__, exc)
            return method, _json(500, {"error": "unavailable"})
        if answer is None:
            return method, _json(404, {"error": f"nothing at {parts.path[:60]}"})
        return method, answer

    async def _reply(self, writer: asyncio.StreamWriter, code: int, body: dict) -> None:
        await self._send(writer, *_json(code, body))

    async def _send(self, writer: asyncio.StreamWriter, code: int, ctype: str, data: bytes, *,
                    head_only: bool = False) -> None:
        head = (f"HTTP/1.1 {code} {_REASONS.get(code, '')}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(data)}\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
                f"Connection: close\r\n\r\n").encode()
        writer.write(head if head_only else head + data)
        try:
            await asyncio.wait_for(writer.drain(), timeout=self.header_timeout)
        except (asyncio.TimeoutError, ConnectionError, OSError):
            pass


def _json(code: int, body) -> tuple:
    return code, "application/json", (json.dumps(body, default=str) + "\n").encode()


class RateLimitedExceptionHandler:
    """An event-loop exception handler that logs at most ``burst`` reports per
    ``window`` seconds (then one line saying how many were dropped), so a storm
    of accept errors (EMFILE) cannot flood stderr or the log with tracebacks."""

    def __init__(self, logger: logging.Logger, *, burst: int = 5, window: float = 60.0,
                 clock: Callable[[], float] = time.monotonic):
        self.logger = logger
        self.burst = burst
        self.window = window
        self.clock = clock
        self._start = clock()
        self._count = 0
        self.dropped = 0

    def __call__(self, loop, context: dict) -> None:
        now = self.clock()
        if now - self._start >= self.window:
            if self.dropped:
                self.logger.warning("event loop: %d more errors in the last %.0f s were not logged",
                                    self.dropped, self.window)
            self._start, self._count, self.dropped = now, 0, 0
        self._count += 1
        if self._count > self.burst:
            self.dropped += 1
            return
        exc = context.get("exception")
        message = context.get("message", "unhandled error in the event loop")
        if exc is not None:
            self.logger.error("event loop: %s: %s: %s", message, type(exc).__name__, exc)
        else:
            self.logger.error("event loop: %s", message)
