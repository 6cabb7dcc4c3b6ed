"""Framing (docs/protocol.md, section 4): a 16-byte big-endian header, then
the payload."""

from __future__ import annotations

import asyncio
import enum
import struct
from typing import NamedTuple

from ._errors import Code, ProtocolError

VERSION = 1
HEADER_SIZE = 16
DEFAULT_MAX_PAYLOAD = 16 << 20

_HEADER = struct.Struct(">IBBHQ")


class Type(enum.IntEnum):
    """Message types (section 6)."""

    AUTH_CHALLENGE = 1
    AUTH_REQUEST = 2
    AUTH_RESPONSE = 3
    EXECUTE_REQUEST = 4
    EXECUTE_RESPONSE = 5
    STREAM_DATA = 6
    SIGNAL = 7
    HEARTBEAT = 8
    ERROR = 9
    CANCEL = 10
    CLOSE = 11
    MESSAGE = 12


class Flag(enum.IntFlag):
    """Flag bits (section 7)."""

    END = 0x0001
    ACK = 0x0002
    STREAM = 0x0004
    SPLIT = 0x0008


class Frame(NamedTuple):
    """One frame."""

    type: int
    flags: int
    id: int
    payload: bytes


def header(type_: int, flags: int, id_: int, length: int) -> bytes:
    """Encode a frame header."""
    return _HEADER.pack(length, VERSION, type_, flags, id_)


def encode(type_: int, flags: int, id_: int, payload: bytes = b"") -> bytes:
    """Encode a whole frame."""
    return header(type_, flags, id_, len(payload)) + payload


class FrameError(ProtocolError):
    """A frame the receiver must refuse: code says which ERROR to send
    before closing (section 17)."""


def parse_header(h: bytes, max_payload: int) -> "tuple[int, int, int, int]":
    """Check and decode a header: (type, flags, id, length). The checks run
    in the protocol's order, version first, and before any payload is read."""
    length, version, type_, flags, id_ = _HEADER.unpack(h)
    if version != VERSION:
        raise FrameError(Code.UNSUPPORTED_VERSION, f"protocol version {version} is not supported; this instance speaks {VERSION}")
    if length > max_payload:
        raise FrameError(Code.TOO_LARGE, f"frame payload of {length} bytes exceeds the limit of {max_payload}")
    if not Type.AUTH_CHALLENGE <= type_ <= Type.MESSAGE:
        raise FrameError(Code.INVALID_MESSAGE, f"unknown message type {type_}")
    return type_, flags, id_, length


class Closed(Exception):
    """The stream ended cleanly, between two frames."""


async def read_frame(reader: asyncio.StreamReader, max_payload: int) -> Frame:
    """Read one frame. Raises Closed at a clean end of the stream, FrameError
    for a frame to refuse, and ProtocolError for a truncated one."""
    try:
        h = await reader.readexactly(HEADER_SIZE)
    except asyncio.IncompleteReadError as e:
        if not e.partial:
            raise Closed() from None
        raise ProtocolError(Code.INVALID_MESSAGE, "truncated frame header") from None
    type_, flags, id_, length = parse_header(h, max_payload)
    try:
        payload = await reader.readexactly(length) if length else b""
    except asyncio.IncompleteReadError:
        raise ProtocolError(Code.INVALID_MESSAGE, "truncated frame payload") from None
    return Frame(type_, flags, id_, payload)
