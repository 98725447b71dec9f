"""The peer-to-peer wire format: frames and the records they carry.

A frame on a TCP connection is ``u32 length | u8 kind | payload`` (little-endian,
``length`` counts the kind byte and the payload). Holders' messages and blocks
travel in their canonical consensus encoding (the bytes that are hashed), so a
node can drop a duplicate by hashing the payload before decoding it. The other
records use the same strict :mod:`~learningchain.protocol.codec` (bounded lengths,
no trailing bytes); nothing on the wire is pickled or JSON.

Conversation: both sides send HELLO first (protocol version, genesis hash, node
id, advertised listen address, head); a node of another genesis is told so in an
ERROR frame and disconnected. Then either side may gossip MESSAGE and BLOCK
frames, ask for peers (GET_PEERS / PEERS), and sync: GET_BLOCKS carries a block
locator and is answered by up to ``limit`` SYNC_BLOCK frames along the serving
node's canonical chain, then BLOCKS_END; GET_BLOCK asks for one block by hash.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..crypto import keccak256
from ..errors import DecodeError
from ..protocol.codec import HEADER_MAX, Reader, Writer
from ..protocol.message import message_id_of

__all__ = [
    "PROTOCOL_VERSION",
    "Kind",
    "Hello",
    "encode_frame",
    "FRAME_HEADER",
    "encode_hello",
    "decode_hello",
    "encode_peers",
    "decode_peers",
    "encode_get_blocks",
    "decode_get_blocks",
    "encode_blocks_end",
    "decode_blocks_end",
    "encode_get_block",
    "decode_get_block",
    "encode_pruned",
    "decode_pruned",
    "encode_sync_block",
    "decode_sync_block",
    "encode_error",
    "decode_error",
    "encode_ping",
    "decode_ping",
    "encode_messages",
    "decode_messages",
    "MAX_BATCH",
    "MAX_HELLO",
    "MAX_HANDSHAKE_FRAME",
    "block_hash_of",
    "message_hash_of",
    "MAX_LOCATOR",
    "MAX_PEERS_LISTED",
]

PROTOCOL_VERSION = 3  # 2: HELLO carries a nonce, AUTH binds the node key to the TLS session; 3: PRUNED
FRAME_HEADER = 4  # the u32 length prefix
MAX_LOCATOR = 64
MAX_PEERS_LISTED = 64
MAX_HOST = 255
MAX_WORK_BYTES = 64
MAX_AGENT = 64
MAX_ERROR = 512
MAX_BATCH = 4096  # messages in one MESSAGES frame
#: The largest HELLO payload: version, genesis, node id, host, port, height, head, work, agent, nonce.
MAX_HELLO = 4 + 32 + 20 + (4 + MAX_HOST) + 4 + 8 + 32 + (4 + MAX_WORK_BYTES) + (4 + MAX_AGENT) + 32
#: The frame limit before a peer has authenticated (HELLO, AUTH or ERROR): a few KiB,
#: so that an outsider cannot make a node buffer a large frame.
MAX_HANDSHAKE_FRAME = 4096
assert 1 + max(MAX_HELLO, 4 + MAX_ERROR, 65) <= MAX_HANDSHAKE_FRAME


class Kind(enum.IntEnum):
    HELLO = 1
    ERROR = 2
    AUTH = 7  # the node key's signature over this session (network.secure)
    GET_PEERS = 3
    PEERS = 4
    PING = 5
    PONG = 6
    MESSAGE = 16
    BLOCK = 17
    MESSAGES = 18
    GET_BLOCKS = 32
    SYNC_BLOCK = 33
    BLOCKS_END = 34
    GET_BLOCK = 35
    PRUNED = 36  # the answer to a block request from a pruned node that holds the block only by header


def encode_frame(kind: int, payload: bytes = b"") -> bytes:
    return (len(payload) + 1).to_bytes(4, "little") + bytes([kind]) + payload


@dataclass(frozen=True)
class Hello:
    version: int
    genesis: bytes
    node_id: bytes  # the address of the node key
    host: str  # advertised listen address ("" when the node does not listen)
    port: int
    height: int
    head: bytes
    work: int
    agent: str = ""
    nonce: bytes = b"\x00" * 32  # fresh per connection; signed by the other side's AUTH


def _host(r: Reader, what: str) -> str:
    raw = r.var(MAX_HOST, what)
    try:
        host = raw.decode("ascii")
    except UnicodeDecodeError:
        raise DecodeError(f"{what}: not ASCII") from None
    if any(c.isspace() or not c.isprintable() for c in host):
        raise DecodeError(f"{what}: {host!r} is not a host name")
    return host


def encode_hello(h: Hello) -> bytes:
    work = h.work.to_bytes(max(1, (h.work.bit_length() + 7) // 8), "big")
    return (Writer().u32(h.version).fixed(h.genesis, 32).fixed(h.node_id, 20).var(h.host.encode("ascii"))
            .u32(h.port).u64(h.height).fixed(h.head, 32).var(work).var(h.agent.encode()[:MAX_AGENT]).fixed(h.nonce, 32).bytes())


def decode_hello(payload: bytes) -> Hello:
    r = Reader(payload, "hello")
    version = r.u32()
    genesis = r.fixed(32)
    node_id = r.fixed(20)
    host = _host(r, "hello host")
    port = r.u32()
    if port > 65535:
        raise DecodeError(f"hello: port {port} is out of range")
    height = r.u64()
    head = r.fixed(32)
    work = int.from_bytes(r.var(MAX_WORK_BYTES, "work"), "big")
    try:
        agent = r.var(MAX_AGENT, "agent").decode()
    except UnicodeDecodeError:
        raise DecodeError("hello: agent is not UTF-8") from None
    nonce = r.fixed(32)
    r.finish()
    return Hello(version, genesis, node_id, host, port, height, head, work, agent, nonce)


def encode_peers(addresses) -> bytes:
    addresses = list(addresses)[:MAX_PEERS_LISTED]
    w = Writer().u32(len(addresses))
    for host, port in addresses:
        w.var(host.encode("ascii")).u32(port)
    return w.bytes()


def decode_peers(payload: bytes) -> list[tuple[str, int]]:
    r = Reader(payload, "peers")
    n = r.u32()
    if n > MAX_PEERS_LISTED:
        raise DecodeError(f"peers: {n} addresses exceed the limit of {MAX_PEERS_LISTED}")
    out = []
    for _ in range(n):
        host = _host(r, "peer host")
        port = r.u32()
        if not 0 < port <= 65535:
            raise DecodeError(f"peers: port {port} is out of range")
        out.append((host, port))
    r.finish()
    return out


def encode_get_blocks(request: int, locator, limit: int) -> bytes:
    w = Writer().u32(request).u32(limit).u32(len(locator))
    for h in locator:
        w.fixed(h, 32)
    return w.bytes()


def decode_get_blocks(payload: bytes) -> tuple[int, list[bytes], int]:
    r = Reader(payload, "get-blocks")
    request = r.u32()
    limit = r.u32()
    n = r.u32()
    if n == 0 or n > MAX_LOCATOR:
        raise DecodeError(f"get-blocks: a locator has 1..{MAX_LOCATOR} hashes, got {n}")
    locator = [r.fixed(32) for _ in range(n)]
    r.finish()
    return request, locator, limit


def encode_blocks_end(request: int, count: int, more: bool) -> bytes:
    return Writer().u32(request).u32(count).u8(1 if more else 0).bytes()


def decode_blocks_end(payload: bytes) -> tuple[int, int, bool]:
    r = Reader(payload, "blocks-end")
    request, count, more = r.u32(), r.u32(), r.u8()
    r.finish()
    if more not in (0, 1):
        raise DecodeError(f"blocks-end: flag {more} is not 0 or 1")
    return request, count, bool(more)


def encode_pruned(request: int, holds_from: int) -> bytes:
    """A pruned node's refusal of ``request``: it holds the message bodies of the
    blocks at ``holds_from`` and above only (the rest by header; an archival node
    serves them)."""
    return Writer().u32(request).u64(holds_from).bytes()


def decode_pruned(payload: bytes) -> tuple[int, int]:
    r = Reader(payload, "pruned")
    request, holds_from = r.u32(), r.u64()
    r.finish()
    if holds_from < 2:
        raise DecodeError(f"pruned: a pruned node holds bodies from height 2 at the lowest, it said {holds_from}")
    return request, holds_from


def encode_get_block(request: int, block_hash: bytes) -> bytes:
    return Writer().u32(request).fixed(block_hash, 32).bytes()


def decode_get_block(payload: bytes) -> tuple[int, bytes]:
    r = Reader(payload, "get-block")
    request, h = r.u32(), r.fixed(32)
    r.finish()
    return request, h


def encode_sync_block(request: int, block_raw: bytes) -> bytes:
    return request.to_bytes(4, "little") + block_raw


def decode_sync_block(payload: bytes) -> tuple[int, bytes]:
    if len(payload) < 4:
        raise DecodeError(f"sync-block: {len(payload)} bytes is too short")
    return int.from_bytes(payload[:4], "little"), payload[4:]


def encode_error(text: str) -> bytes:
    return Writer().var(text.encode()[:MAX_ERROR]).bytes()


def decode_error(payload: bytes) -> str:
    r = Reader(payload, "error")
    raw = r.var(MAX_ERROR, "error text")
    r.finish()
    return raw.decode(errors="replace")


def encode_ping(nonce: int) -> bytes:
    return Writer().u64(nonce).bytes()


def decode_ping(payload: bytes) -> int:
    r = Reader(payload, "ping")
    nonce = r.u64()
    r.finish()
    return nonce


def encode_messages(raws) -> bytes:
    w = Writer().u32(len(raws))
    for raw in raws:
        w.var(raw)
    return w.bytes()


def decode_messages(payload: bytes) -> list[bytes]:
    """The raw messages of a MESSAGES frame (each still to be decoded and checked)."""
    r = Reader(payload, "messages")
    n = r.u32()
    if n == 0 or n > MAX_BATCH:
        raise DecodeError(f"messages: a batch holds 1..{MAX_BATCH} messages, got {n}")
    out = [r.var(len(payload), f"message {i}") for i in range(n)]
    r.finish()
    return out


def message_hash_of(raw: bytes) -> bytes:
    """The id of a holder's message (``Message.hash``), computed from its bytes."""
    return message_id_of(raw)


def block_hash_of(raw: bytes) -> bytes:
    """The hash of an encoded block, read from its header without decoding the body."""
    r = Reader(raw, "block")
    header = r.var(HEADER_MAX, "header")
    return keccak256(header)
