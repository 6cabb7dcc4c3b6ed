"""A minimal agent for the SDK's tests: it listens on a unix socket, runs
the agent's side of the handshake, and lets a test send and read frames."""

from __future__ import annotations

import asyncio
import os
import tempfile
from typing import List, Optional

from spear import _proto as pb
from spear._auth import ROLE_AGENT, ROLE_INSTANCE, proof
from spear._config import Config, Secret
from spear._frame import Closed, Flag, Frame, Type, encode, read_frame
import hmac

INSTANCE_ID = "process:test-1"
TIMEOUT = 10.0


class AgentConn:
    """One accepted, authenticated connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.next_id = 1

    def send(self, type_: int, flags: int = 0, id_: int = 0, payload: bytes = b"") -> None:
        self.writer.write(encode(type_, flags, id_, payload))

    async def recv(self, timeout: float = TIMEOUT, skip_probes: bool = True) -> Frame:
        """Read the next frame, answering (and skipping) the instance's
        heartbeat probes unless told not to."""
        while True:
            f = await asyncio.wait_for(read_frame(self.reader, 64 << 20), timeout)
            if skip_probes and f.type == Type.HEARTBEAT and not f.flags & Flag.ACK:
                self.send(Type.HEARTBEAT, Flag.ACK, f.id, f.payload)
                continue
            return f

    def execute(self, method: str, payload: bytes = b"", flags: int = 0, timeout_ms: int = 0) -> int:
        id_ = self.next_id
        self.next_id += 2
        self.send(Type.EXECUTE_REQUEST, flags, id_, pb.encode_execute_request(method, payload, timeout_ms))
        return id_

    def signal(self, kind: int, name: str = "", data: bytes = b"") -> int:
        id_ = self.next_id
        self.next_id += 2
        self.send(Type.SIGNAL, 0, id_, pb.encode_signal(kind, name, data))
        return id_

    async def answer(self, id_: int) -> Frame:
        """The next frame answering request id_ (others are dropped)."""
        while True:
            f = await self.recv()
            if f.id == id_:
                return f

    async def call(self, method: str, payload: bytes = b"", timeout_ms: int = 0) -> bytes:
        f = await self.answer(self.execute(method, payload, timeout_ms=timeout_ms))
        if f.type == Type.ERROR:
            code, msg = pb.decode_error(f.payload)
            raise AssertionError(f"ERROR {code}: {msg}")
        assert f.type == Type.EXECUTE_RESPONSE, f.type
        return pb.decode_execute_response(f.payload)[0]

    async def closed(self, timeout: float = TIMEOUT, answer_probes: bool = True) -> List[Frame]:
        """Wait for the instance to close the connection; the frames it
        sent (its heartbeat probes are answered, unless told otherwise, and
        left out)."""
        seen = []
        while True:
            try:
                seen.append(await self.recv(timeout, skip_probes=answer_probes))
            except (Closed, ConnectionError):
                return seen

    def close(self) -> None:
        self.writer.close()


class FakeAgent:
    """Listens for one instance's connections."""

    def __init__(self, secret: bytes = b"\x07" * 32, heartbeat_ms: int = 0, max_payload: int = 16 << 20, forge: bool = False) -> None:
        self.secret = secret
        self.heartbeat_ms = heartbeat_ms
        self.max_payload = max_payload
        self.forge = forge
        self.dir = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.dir.name, "agent.sock")
        self.conns: "asyncio.Queue[AgentConn]" = asyncio.Queue()
        self.failures: "asyncio.Queue[str]" = asyncio.Queue()
        self.server: Optional[asyncio.AbstractServer] = None
        self.writers: List[asyncio.StreamWriter] = []

    def config(self, secret: Optional[bytes] = None) -> Config:
        return Config(instance_id=INSTANCE_ID, secret=Secret(secret or self.secret), channel="unix", address=self.path)

    async def __aenter__(self) -> "FakeAgent":
        self.server = await asyncio.start_unix_server(self._accept, self.path)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        for w in self.writers:
            w.close()
        self.server.close()
        await self.server.wait_closed()
        self.dir.cleanup()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        nonce = os.urandom(32)
        writer.write(encode(Type.AUTH_CHALLENGE, 0, 0, _challenge(nonce)))
        try:
            f = await asyncio.wait_for(read_frame(reader, 1 << 20), TIMEOUT)
        except (Closed, asyncio.TimeoutError, ConnectionError):
            writer.close()
            return
        req = _decode_auth_request(f.payload)
        want = proof(self.secret, ROLE_INSTANCE, nonce, req[1], req[0])
        if req[0] != INSTANCE_ID or not hmac.compare_digest(want, req[2]):
            writer.write(encode(Type.ERROR, 0, 0, pb.encode_error(3, "authentication failed")))
            writer.close()
            await self.failures.put(req[0])
            return
        server_proof = proof(self.secret, ROLE_AGENT, nonce, req[1], req[0])
        if self.forge:
            server_proof = bytes(b ^ 0xFF for b in server_proof)
        writer.write(encode(Type.AUTH_RESPONSE, 0, 0, _auth_response("s-test", server_proof, self.heartbeat_ms, self.max_payload)))
        conn = AgentConn(reader, writer)
        conn.features = req[3]
        await self.conns.put(conn)

    async def accept(self, timeout: float = TIMEOUT) -> AgentConn:
        return await asyncio.wait_for(self.conns.get(), timeout)


def _challenge(nonce: bytes) -> bytes:
    return pb._bytes_field(1, nonce) + pb._bytes_field(2, b"\x01")


def _decode_auth_request(b: bytes):
    id_, cn, pr, features = "", b"", b"", []
    for num, _t, v in pb.fields(b):
        if num == 1:
            id_ = bytes(v).decode()
        elif num == 2:
            cn = bytes(v)
        elif num == 3:
            pr = bytes(v)
        elif num == 6:
            features.append(bytes(v).decode())
    return id_, cn, pr, features


def _auth_response(session: str, server_proof: bytes, heartbeat_ms: int, max_payload: int) -> bytes:
    out = pb._bytes_field(1, session.encode()) + pb._bytes_field(3, server_proof)
    if heartbeat_ms:
        out += pb._varint_field(4, heartbeat_ms)
    if max_payload:
        out += pb._varint_field(5, max_payload)
    return out
