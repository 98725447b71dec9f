"""One TCP connection to another node: framing, limits and a send queue.

Reading is strict: a length prefix above the frame limit is refused before any
of its bytes are read (and the connection closed, since the stream cannot be
trusted to resynchronise), an empty frame or a truncated one is malformed.
What one peer may send unasked is bounded by two token buckets (frames and
bytes per second); blocks it sends in answer to our own sync request are not
counted. Sending goes through a bounded queue drained by one writer task, so a
slow peer never stalls the node: gossip to it is dropped when its queue is full,
while sync answers wait for room (back-pressure on the request being served).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import Optional

from ..errors import LearningChainError
from ..types import hexstr
from .wire import FRAME_HEADER, Hello, Kind, encode_frame

__all__ = ["Peer", "RateLimit", "FrameError", "PeerClosed", "KnownSet"]


class FrameError(LearningChainError):
    """A frame that breaks the framing rules. ``fatal``: the stream cannot go on."""

    def __init__(self, reason: str, detail: str, *, fatal: bool):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.fatal = fatal


class PeerClosed(LearningChainError):
    """The connection ended (EOF, reset, or we closed it)."""


class RateLimit:
    """A token bucket: ``rate`` tokens per second, at most ``burst`` saved up."""

    def __init__(self, rate: float, burst: float):
        self.rate = float(rate)
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def take(self, n: float = 1.0) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= n:
            self.tokens -= n
            return True
        return False


class KnownSet:
    """Hashes a peer is known to have (sent us, or we sent it), oldest dropped first."""

    def __init__(self, limit: int = 16384):
        self._items: "OrderedDict[bytes, None]" = OrderedDict()
        self.limit = limit

    def add(self, h: bytes) -> None:
        self._items[h] = None
        self._items.move_to_end(h)
        while len(self._items) > self.limit:
            self._items.popitem(last=False)

    def __contains__(self, h: bytes) -> bool:
        return h in self._items

    def clear(self) -> None:
        self._items.clear()


class Peer:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, outbound: bool,
                 max_frame: int, rate_frames: float, burst_frames: int, rate_bytes: float, burst_bytes: int,
                 queue_frames: int = 4096, dialed: Optional[tuple] = None):
        self.reader = reader
        self.writer = writer
        self.outbound = outbound
        self.dialed = dialed  # the address we dialed, for an outbound connection
        peer = writer.get_extra_info("peername") or ("?", 0)
        self.remote = (str(peer[0]), int(peer[1]))
        self.max_frame = max_frame
        self.frames = RateLimit(rate_frames, burst_frames)
        self.bytes = RateLimit(rate_bytes, burst_bytes)
        self.hello: Optional[Hello] = None
        self.known = KnownSet()
        self.score = 0
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=queue_frames)
        self.requests: dict[int, int] = {}  # our open sync requests to this peer: id -> blocks still allowed
        self.closed = asyncio.Event()
        self.close_reason = ""
        self.last_heard = time.monotonic()
        self.last_useful = time.monotonic()  # last frame the node itself used (not liveness or peer exchange)
        self.connected_at = time.monotonic()
        self.sent_frames = 0
        self.received_frames = 0
        self.dropped = 0
        self.nonce = b""  # ours for this connection's handshake
        self.synced = False  # a sync from this peer ran to its end
        self.sync_failed = False  # a sync from it stalled or fell short of its claimed work: never again
        self.sync_after = 0.0  # no sync from it before this time.monotonic() (its blocks were ahead of our clock)
        # a sync from it ended with no block new to this node: its orphans no longer start
        # syncs from it (until it delivers a new block)
        self.fruitless = False
        self.fetches: set = set()  # open GET_BLOCK request ids (a subset of ``requests``)
        # a pruned peer refused a sync (PRUNED): it holds bodies from this height, and our head then
        self.holds_from = 0
        self.refused_at: Optional[bytes] = None
        self._writer_task: Optional[asyncio.Task] = None

    # -- identity -------------------------------------------------------------------
    @property
    def node_id(self) -> bytes:
        return self.hello.node_id if self.hello else b""

    @property
    def address(self) -> Optional[tuple[str, int]]:
        """The address the peer listens on (as it advertised it), if it listens."""
        if self.hello is None or not self.hello.port:
            return None
        host = self.hello.host
        if host in ("", "0.0.0.0", "::"):
            host = self.remote[0]
        return host, self.hello.port

    def label(self) -> str:
        who = hexstr(self.node_id)[:10] if self.hello else "?"
        addr = self.address or self.remote
        return f"{who}@{addr[0]}:{addr[1]}"

    # -- reading ----------------------------------------------------------------------
    async def read_frame(self, limit: Optional[int] = None) -> tuple[int, bytes]:
        """The next frame; a length prefix above ``limit`` (default: the frame limit) is
        refused before any of its bytes are read."""
        limit = self.max_frame if limit is None else limit
        try:
            prefix = await self.reader.readexactly(FRAME_HEADER)
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise FrameError("truncated", f"connection ended inside a frame header "
                                 f"({len(exc.partial)} of 4 bytes)", fatal=True) from None
            raise PeerClosed("end of stream") from None
        except (ConnectionError, OSError) as exc:
            raise PeerClosed(str(exc) or type(exc).__name__) from None
        length = int.from_bytes(prefix, "little")
        if length > limit:
            raise FrameError("oversized", f"frame of {length} bytes exceeds the limit of {limit}", fatal=True)
        if length == 0:
            raise FrameError("malformed", "empty frame (no kind byte)", fatal=False)
        try:
            body = await self.reader.readexactly(length)
        except asyncio.IncompleteReadError as exc:
            raise FrameError("truncated", f"connection ended after {len(exc.partial)} of {length} frame bytes",
                             fatal=True) from None
        except (ConnectionError, OSError) as exc:
            raise PeerClosed(str(exc) or type(exc).__name__) from None
        self.last_heard = time.monotonic()
        self.received_frames += 1
        return body[0], body[1:]

    def solicited(self, kind: int, payload: bytes) -> bool:
        """True for an answer to one of our open requests (exempt from rate limits)."""
        if kind not in (Kind.SYNC_BLOCK, Kind.BLOCKS_END) or len(payload) < 4:
            return False
        request = int.from_bytes(payload[:4], "little")
        left = self.requests.get(request)
        if left is None:
            return False
        if kind == Kind.SYNC_BLOCK:
            if left <= 0:
                return False
            self.requests[request] = left - 1
        return True

    def within_limits(self, size: int) -> bool:
        return self.frames.take(1.0) and self.bytes.take(float(size))

    # -- writing ----------------------------------------------------------------------
    def start_writer(self) -> None:
        self._writer_task = asyncio.get_running_loop().create_task(self._write_loop())

    async def _write_loop(self) -> None:
        try:
            while True:
                frame = await self.queue.get()
                if frame is None:
                    break
                self.writer.write(frame)
                self.sent_frames += 1
                if self.queue.empty() or self.writer.transport.get_write_buffer_size() > (1 << 20):
                    await self.writer.drain()
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            self.closed.set()
            try:
                self.writer.close()
            except Exception:  # pragma: no cover - already closed
                pass

    def send(self, kind: int, payload: bytes = b"") -> bool:
        """Queue a frame; False (and counted) when the peer's queue is full or closed."""
        if self.closed.is_set():
            return False
        try:
            self.queue.put_nowait(encode_frame(kind, payload))
            return True
        except asyncio.QueueFull:
            self.dropped += 1
            return False

    async def send_wait(self, kind: int, payload: bytes = b"") -> None:
        """Queue a frame, waiting for room (raises PeerClosed when the peer is gone)."""
        if self.closed.is_set():
            raise PeerClosed(self.close_reason or "closed")
        frame = encode_frame(kind, payload)
        while True:
            try:
                self.queue.put_nowait(frame)
                return
            except asyncio.QueueFull:
                if self.closed.is_set():
                    raise PeerClosed(self.close_reason or "closed") from None
                await asyncio.sleep(0.005)

    def write_now(self, kind: int, payload: bytes = b"") -> None:
        """Write directly (used before the writer task starts, e.g. a refusal)."""
        try:
            self.writer.write(encode_frame(kind, payload))
        except (ConnectionError, OSError):  # pragma: no cover
            pass

    def close(self, reason: str = "") -> None:
        """Stop the connection: frames already queued (e.g. an ERROR) still go out."""
        if not self.close_reason:
            self.close_reason = reason
        if self._writer_task is None or self._writer_task.done():
            self.closed.set()
            try:
                self.writer.close()
            except Exception:  # pragma: no cover - already closed
                pass
            return
        try:
            self.queue.put_nowait(None)
        except asyncio.QueueFull:
            self._writer_task.cancel()

    async def wait_closed(self, timeout: float = 2.0) -> None:
        if self._writer_task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._writer_task), timeout)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                self._writer_task.cancel()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), timeout)
        except Exception:
            pass
