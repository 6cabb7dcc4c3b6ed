"""The few protocol buffers messages of proto/spear/v1/spear.proto, by hand.

Only proto3 wire types 0 (varint) and 2 (length-delimited) occur in these
messages; fields of other types are skipped, as proto3 requires of unknown
fields. Encoders write fields in field-number order and omit defaults,
exactly as the Go implementation does, so the bytes match its test vectors.
"""

from __future__ import annotations

from typing import Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

from ._errors import Code, ProtocolError

Buffer = Union[bytes, bytearray, memoryview]


def varint(n: int) -> bytes:
    """Encode a non-negative integer as a protobuf varint."""
    if n < 0:
        raise ValueError("varints here are unsigned")
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def varint_size(n: int) -> int:
    """Return the encoded size of a varint."""
    size = 1
    while n > 0x7F:
        n >>= 7
        size += 1
    return size


def _read_varint(b: memoryview, i: int) -> Tuple[int, int]:
    n = shift = 0
    while True:
        if i >= len(b) or shift > 63:
            raise ProtocolError(Code.INVALID_MESSAGE, "truncated or overlong varint")
        c = b[i]
        i += 1
        n |= (c & 0x7F) << shift
        if c < 0x80:
            return n, i
        shift += 7


def fields(data: Buffer) -> Iterator[Tuple[int, int, Union[int, memoryview]]]:
    """Yield (field number, wire type, value) for each field of a message:
    an int for varints, a memoryview for length-delimited fields."""
    b = memoryview(data)
    i = 0
    while i < len(b):
        key, i = _read_varint(b, i)
        num, typ = key >> 3, key & 7
        if num == 0:
            raise ProtocolError(Code.INVALID_MESSAGE, "field number 0")
        if typ == 0:
            v, i = _read_varint(b, i)
            yield num, typ, v
        elif typ == 2:
            n, i = _read_varint(b, i)
            if n > len(b) - i:
                raise ProtocolError(Code.INVALID_MESSAGE, "truncated field")
            yield num, typ, b[i : i + n]
            i += n
        elif typ == 1:
            i += 8
        elif typ == 5:
            i += 4
        else:
            raise ProtocolError(Code.INVALID_MESSAGE, f"unsupported wire type {typ}")
        if i > len(b):
            raise ProtocolError(Code.INVALID_MESSAGE, "truncated field")


def _bytes_field(num: int, value: Buffer) -> bytes:
    return varint(num << 3 | 2) + varint(len(value)) + bytes(value)


def _varint_field(num: int, value: int) -> bytes:
    return varint(num << 3) + varint(value)


def _text(v: Union[int, memoryview]) -> str:
    if isinstance(v, int):
        raise ProtocolError(Code.INVALID_MESSAGE, "expected a string field")
    try:
        return bytes(v).decode("utf-8")
    except UnicodeDecodeError as e:
        raise ProtocolError(Code.INVALID_MESSAGE, "string field is not UTF-8") from e


def _blob(v: Union[int, memoryview]) -> bytes:
    if isinstance(v, int):
        raise ProtocolError(Code.INVALID_MESSAGE, "expected a bytes field")
    return bytes(v)


def _number(v: Union[int, memoryview]) -> int:
    if not isinstance(v, int):
        raise ProtocolError(Code.INVALID_MESSAGE, "expected a varint field")
    return v


class AuthChallenge(NamedTuple):
    """spear.v1.AuthChallenge."""

    nonce: bytes
    versions: List[int]


def decode_auth_challenge(b: Buffer) -> AuthChallenge:
    nonce, versions = b"", []
    for num, typ, v in fields(b):
        if num == 1:
            nonce = _blob(v)
        elif num == 2 and typ == 0:
            versions.append(_number(v))
        elif num == 2:  # packed
            pb = _blob(v)
            view, i = memoryview(pb), 0
            while i < len(view):
                n, i = _read_varint(view, i)
                versions.append(n)
    return AuthChallenge(nonce, versions)


# The optional protocol features this SDK announces in its AUTH_REQUEST:
# it reads execute requests in the split layout (docs/protocol.md, "Execute").
FEATURE_SPLIT = "split"


def encode_auth_request(instance_id: str, client_nonce: bytes, proof: bytes, features: Sequence[str] = ()) -> bytes:
    """spear.v1.AuthRequest."""
    return (
        _bytes_field(1, instance_id.encode("utf-8"))
        + _bytes_field(2, client_nonce)
        + _bytes_field(3, proof)
        + b"".join(_bytes_field(6, f.encode("utf-8")) for f in features)
    )


class AuthResponse(NamedTuple):
    """spear.v1.AuthResponse."""

    session_id: str
    features: List[str]
    server_proof: bytes
    heartbeat_interval_ms: int
    max_payload: int


def decode_auth_response(b: Buffer) -> AuthResponse:
    session_id, features, proof, interval, max_payload = "", [], b"", 0, 0
    for num, _typ, v in fields(b):
        if num == 1:
            session_id = _text(v)
        elif num == 2:
            features.append(_text(v))
        elif num == 3:
            proof = _blob(v)
        elif num == 4:
            interval = _number(v)
        elif num == 5:
            max_payload = _number(v)
    return AuthResponse(session_id, features, proof, interval, max_payload)


class ExecuteRequest(NamedTuple):
    """spear.v1.ExecuteRequest."""

    method: str
    payload: bytes
    timeout_ms: int
    metadata: Dict[str, str]


def _map_entry(v: Union[int, memoryview]) -> Tuple[str, str]:
    key = value = ""
    for num, _typ, ev in fields(_blob(v)):
        if num == 1:
            key = _text(ev)
        elif num == 2:
            value = _text(ev)
    return key, value


def _encode_map(num: int, m: Optional[Dict[str, str]]) -> bytes:
    # Entries carry key and value even when empty, as Go's encoder writes
    # them; sorted, so that the bytes are deterministic.
    out = b""
    for key, value in sorted((m or {}).items()):
        entry = _bytes_field(1, key.encode("utf-8")) + _bytes_field(2, value.encode("utf-8"))
        out += _bytes_field(num, entry)
    return out


def decode_execute_request(b: Buffer) -> ExecuteRequest:
    return _decode_execute_request(b, None)


def _decode_execute_request(b: Buffer, body: Optional[memoryview]) -> ExecuteRequest:
    # body is the payload of the split layout, whose envelope b must then
    # have no payload field: one pass checks that and decodes the rest.
    method, payload, timeout, metadata = "", b"", 0, {}
    if body is not None:
        payload = bytes(body)
    for num, _typ, v in fields(b):
        if num == 1:
            method = _text(v)
        elif num == 2:
            if body is not None:
                raise ProtocolError(Code.INVALID_MESSAGE, "split envelope has a payload field")
            payload = _blob(v)
        elif num == 3:
            timeout = _number(v)
        elif num == 4:
            key, value = _map_entry(v)
            metadata[key] = value
    return ExecuteRequest(method, payload, timeout, metadata)


def encode_execute_request(
    method: str = "", payload: Buffer = b"", timeout_ms: int = 0, metadata: Optional[Dict[str, str]] = None
) -> bytes:
    """spear.v1.ExecuteRequest (for tests and tools acting as the agent)."""
    out = b""
    if method:
        out += _bytes_field(1, method.encode("utf-8"))
    if len(payload):
        out += _bytes_field(2, payload)
    if timeout_ms:
        out += _varint_field(3, timeout_ms)
    return out + _encode_map(4, metadata)


def split_payload(b: Buffer) -> Tuple[memoryview, memoryview]:
    """Cuts the payload of a SPLIT execute frame into its envelope (a
    protobuf message without its payload field) and the payload's bytes."""
    view = memoryview(b)
    if len(view) < 4:
        raise ProtocolError(Code.INVALID_MESSAGE, "split payload shorter than its envelope length")
    n = int.from_bytes(view[:4], "big")
    if n > len(view) - 4:
        raise ProtocolError(Code.INVALID_MESSAGE, "split payload shorter than its envelope length")
    return view[4 : 4 + n], view[4 + n :]


def decode_execute_request_split(b: Buffer) -> ExecuteRequest:
    """An ExecuteRequest in the split layout; its payload is the bytes after
    the envelope (copied once, as the unsplit layout's is)."""
    envelope, body = split_payload(b)
    return _decode_execute_request(envelope, body)


def encode_execute_request_split(
    method: str = "", payload: Buffer = b"", timeout_ms: int = 0, metadata: Optional[Dict[str, str]] = None
) -> bytes:
    """spear.v1.ExecuteRequest in the split layout (for tests and tools
    acting as the agent)."""
    envelope = encode_execute_request(method, b"", timeout_ms, metadata)
    return len(envelope).to_bytes(4, "big") + envelope + bytes(payload)


# The envelope of a split ExecuteResponse without metadata: its length, 0.
SPLIT_RESPONSE_HEADER = bytes(4)


def execute_response_size(payload_len: int) -> int:
    """The size of an ExecuteResponse carrying payload_len bytes and no
    metadata."""
    return 1 + varint_size(payload_len) + payload_len if payload_len else 0


def encode_execute_response_header(payload_len: int) -> bytes:
    """The bytes of an ExecuteResponse without metadata that precede its
    payload: writing them and the payload apart spares copying a large
    payload into one buffer."""
    return varint(1 << 3 | 2) + varint(payload_len) if payload_len else b""


def encode_execute_response(payload: Buffer, metadata: Optional[Dict[str, str]] = None) -> bytes:
    """spear.v1.ExecuteResponse."""
    return encode_execute_response_header(len(payload)) + bytes(payload) + _encode_map(2, metadata)


def encode_execute_response_split(payload: Buffer, metadata: Optional[Dict[str, str]] = None) -> bytes:
    """spear.v1.ExecuteResponse in the split layout."""
    envelope = _encode_map(2, metadata)
    return len(envelope).to_bytes(4, "big") + envelope + bytes(payload)


def decode_execute_response_split(b: Buffer) -> Tuple[bytes, Dict[str, str]]:
    """An ExecuteResponse in the split layout."""
    envelope, body = split_payload(b)
    payload, metadata = decode_execute_response(envelope)
    if payload:
        raise ProtocolError(Code.INVALID_MESSAGE, "split envelope has a payload field")
    return bytes(body), metadata


def decode_execute_response(b: Buffer) -> Tuple[bytes, Dict[str, str]]:
    payload, metadata = b"", {}
    for num, _typ, v in fields(b):
        if num == 1:
            payload = _blob(v)
        elif num == 2:
            key, value = _map_entry(v)
            metadata[key] = value
    return payload, metadata


class SignalMessage(NamedTuple):
    """spear.v1.Signal."""

    kind: int
    name: str
    data: bytes


def decode_signal(b: Buffer) -> SignalMessage:
    kind, name, data = 0, "", b""
    for num, _typ, v in fields(b):
        if num == 1:
            kind = _number(v)
        elif num == 2:
            name = _text(v)
        elif num == 3:
            data = _blob(v)
    return SignalMessage(kind, name, data)


def encode_signal(kind: int, name: str = "", data: bytes = b"") -> bytes:
    out = _varint_field(1, kind) if kind else b""
    if name:
        out += _bytes_field(2, name.encode("utf-8"))
    if data:
        out += _bytes_field(3, data)
    return out


def encode_error(code: int, message: str) -> bytes:
    """spear.v1.Error (and spear.v1.Close, which has the same shape)."""
    out = _varint_field(1, int(code)) if code else b""
    if message:
        out += _bytes_field(2, message.encode("utf-8"))
    return out


def decode_error(b: Buffer) -> Tuple[int, str]:
    """Decode spear.v1.Error or spear.v1.Close: (code, message or reason)."""
    code, message = 0, ""
    for num, _typ, v in fields(b):
        if num == 1:
            code = _number(v)
        elif num == 2:
            message = _text(v)
    return code, message
