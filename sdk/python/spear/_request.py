"""One execute request, as a handler sees it."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Union

from ._errors import Code, SpearError

if TYPE_CHECKING:
    from ._instance import _Connection

# Guards the lazy creation of a request's threading.Event against the loop
# setting the reason at the same time.
_event_lock = threading.Lock()

#: What a handler may return: bytes-like, text (sent as UTF-8) or None
#: (nothing).
Result = Union[bytes, bytearray, memoryview, str, None]


def to_bytes(value: Result, what: str = "result") -> bytes:
    """Convert a handler's result or chunk to bytes."""
    if value is None:
        return b""
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"a handler's {what} must be bytes, str or None, not {type(value).__name__}")


class Request:
    """One execute request.

    Attributes:
        method: The method the caller asked for; "" means the default.
        payload: The caller's input.
        metadata: The caller's key-value pairs.
        id: The request id on the connection (for logs).
        streaming: Whether the caller asked for streamed output.
        deadline: When the caller stops waiting, as a time.monotonic()
            value, or None when it gave no timeout.
    """

    def __init__(
        self,
        conn: "_Connection",
        id: int,
        method: str,
        payload: bytes,
        metadata: Dict[str, str],
        streaming: bool,
        timeout_ms: int,
    ) -> None:
        self.method = method
        self.payload = payload
        self.metadata = metadata
        self.id = id
        self.streaming = streaming
        self.deadline: Optional[float] = time.monotonic() + timeout_ms / 1000 if timeout_ms else None
        self._conn = conn
        self._gathered: List[bytes] = []
        self._split = False  # the request came in the split layout; so goes the answer
        self._reason: Optional[Code] = None
        self._event: Optional[threading.Event] = None  # made by wait_cancelled
        self._on_interrupt: Optional[Callable[[], Any]] = None
        self._ended = False

    @property
    def text(self) -> str:
        """The payload decoded as UTF-8."""
        return self.payload.decode("utf-8")

    @property
    def cancelled(self) -> bool:
        """Whether the request was cancelled or its deadline passed: the
        caller no longer waits, and the handler should stop."""
        return self._reason is not None

    @property
    def cancel_reason(self) -> Optional[Code]:
        """Code.CANCELED or Code.DEADLINE_EXCEEDED once cancelled, else None."""
        return self._reason

    def time_remaining(self) -> Optional[float]:
        """Seconds until the deadline (0 once passed), or None without one."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())

    def wait_cancelled(self, timeout: Optional[float] = None) -> bool:
        """Block until the request is cancelled or timeout seconds pass;
        return whether it was cancelled. For synchronous handlers: a sleep
        that ends early when the caller gives up."""
        with _event_lock:
            if self._event is None:
                self._event = threading.Event()
                if self._reason is not None:
                    self._event.set()
        return self._event.wait(timeout)

    def write(self, chunk: Result) -> None:
        """Send one chunk of output: at once to a streaming caller, or
        gathered ahead of the result for a unary one.

        It may be called from an async handler (the chunk is queued on the
        connection; ``await req.drain()`` waits for it to be sent) or from a
        synchronous handler's thread (it blocks until the chunk is sent).

        Raises:
            SpearError: TOO_LARGE for a chunk over the agent's payload
                limit; CANCELED or DEADLINE_EXCEEDED once the request was
                cancelled; UNAVAILABLE when the connection is gone.
        """
        data = to_bytes(chunk, "chunk")
        self._check_open()
        if not self.streaming:
            self._gathered.append(data)
            return
        conn = self._conn
        if conn.in_loop():
            conn.send_chunk(self.id, data)
            return
        future = asyncio.run_coroutine_threadsafe(self._write_drained(data), conn.loop)
        future.result()

    async def drain(self) -> None:
        """Wait until the connection's write buffer has room again."""
        await self._conn.drain()

    async def _write_drained(self, data: bytes) -> None:
        self._check_open()
        self._conn.send_chunk(self.id, data)
        await self._conn.drain()

    def _check_open(self) -> None:
        if self._reason is not None:
            raise SpearError(self._reason, "the request was cancelled")
        if self._ended:
            raise SpearError(Code.CANCELED, "the request has ended")

    def _interrupt(self, reason: Code) -> None:
        """Mark the request cancelled (runs on the event loop)."""
        if self._ended or self._reason is not None:
            return
        with _event_lock:
            self._reason = reason
            if self._event is not None:
                self._event.set()
        if self._on_interrupt is not None:
            self._on_interrupt()

    def _end(self) -> None:
        self._ended = True

    def __repr__(self) -> str:
        return f"Request(id={self.id}, method={self.method!r}, payload={len(self.payload)} bytes, streaming={self.streaming})"
