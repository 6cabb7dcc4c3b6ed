"""The instance: connect to the agent, authenticate, serve, reconnect."""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import hmac
import inspect
import logging
import os
import random
import signal as _signal
import sys
import threading
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Coroutine, Dict, Mapping, Optional, Set, Tuple, Union

from . import _proto as pb
from ._auth import NONCE_SIZE, ROLE_AGENT, ROLE_INSTANCE, proof
from ._config import Config
from ._errors import AuthFailed, Code, ConfigError, ProtocolError, SpearError
from ._frame import DEFAULT_MAX_PAYLOAD, VERSION, Closed, Flag, FrameError, Frame, Type, encode, header, read_frame
from ._log import configure as configure_logs
from ._log import logger
from ._request import Request, Result, to_bytes

#: A handler: a function, or an ``async def``, of one Request that returns
#: bytes, str or None. A synchronous handler runs on a worker thread, so it
#: may block; an async one runs on the instance's event loop.
Handler = Callable[[Request], Union[Result, Awaitable[Result]]]

#: What run() and Instance serve: one handler for every method, or a
#: mapping from method name to handler (unknown methods get NOT_FOUND).
Handlers = Union[Handler, Mapping[str, Handler]]


class SignalKind(enum.IntEnum):
    """Kinds of signal from the agent (docs/protocol.md, section 14)."""

    UNSPECIFIED = 0
    TERMINATE = 1
    PAUSE = 2
    RESUME = 3
    CUSTOM = 4


@dataclass(frozen=True)
class Signal:
    """A signal from the agent, as on_signal receives it."""

    kind: SignalKind
    name: str = ""
    data: bytes = b""


#: on_signal: called for pause and resume (after the SDK paused or resumed
#: serving) and for custom signals, which it must handle or answer by
#: raising SpearError(Code.NOT_FOUND). Sync or async.
SignalHandler = Callable[[Signal], Union[None, Awaitable[None]]]

#: How many silent heartbeat intervals mean the agent is gone.
HEARTBEAT_MISSES = 3


def _is_async(fn: Any) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))


class Instance:
    """A function instance's connection to its agent.

    Most functions call :func:`run` instead. Use Instance to serve inside an
    event loop of your own (``await Instance(handler).serve()``), or to send
    the agent one-way messages.

    Args:
        handler: What to serve: a handler, or a mapping from method to
            handler.
        config: Where and as whom to connect; default Config.from_env().
        on_signal: Called for pause, resume and custom signals.
        on_message: Called with the payload of each one-way message from
            the agent, on the event loop; it must not block.
        max_payload: The largest frame payload accepted from the agent.
        handshake_timeout: Seconds to connect and authenticate.
        min_backoff, max_backoff: Seconds between reconnection attempts:
            the wait doubles from min to max, with jitter, and starts again
            from min after a successful handshake.
        max_threads: Worker threads for synchronous handlers.
    """

    def __init__(
        self,
        handler: Handlers,
        *,
        config: Optional[Config] = None,
        on_signal: Optional[SignalHandler] = None,
        on_message: Optional[Callable[[bytes], None]] = None,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        handshake_timeout: float = 10.0,
        min_backoff: float = 0.05,
        max_backoff: float = 5.0,
        max_threads: int = 64,
    ) -> None:
        if handler is None:
            raise ConfigError("a handler is required")
        self.config = config if config is not None else Config.from_env()
        self._handlers = handler
        self.on_signal = on_signal
        self.on_message = on_message
        self.max_payload = max_payload
        self.handshake_timeout = handshake_timeout
        self.min_backoff = min_backoff
        self.max_backoff = max(max_backoff, min_backoff)
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="spear-handler")
        self._busy_threads = 0
        self._busy_lock = threading.Lock()
        self.log = logging.LoggerAdapter(logger, {"instance": self.config.instance_id, "transport": self.config.channel})
        self.paused = False
        self.terminating = False  # a terminate signal arrived: new requests are refused
        self._conn: Optional[_Connection] = None
        self._stop: Optional[asyncio.Event] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None

    @property
    def connected(self) -> bool:
        """Whether an authenticated connection to the agent is up."""
        return self._conn is not None and not self._conn.closed

    def handler_for(self, method: str) -> Optional[Handler]:
        """The handler serving method, or None."""
        if isinstance(self._handlers, Mapping):
            return self._handlers.get(method)
        return self._handlers

    async def serve(self) -> None:
        """Connect, authenticate and serve until the agent terminates the
        instance or stop() is called; reconnect with backoff when the
        connection is lost.

        Raises:
            AuthFailed: The handshake failed; retrying cannot help.
        """
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        backoff = self.min_backoff
        try:
            while True:
                try:
                    conn = await asyncio.wait_for(self._connect(), self.handshake_timeout)
                except AuthFailed as e:
                    self.log.error("authentication failed; not retrying", extra={"err": str(e)})
                    raise
                except ConfigError:
                    raise
                except (OSError, asyncio.TimeoutError, SpearError, Closed) as e:
                    reason: str = str(e) or type(e).__name__
                else:
                    backoff = self.min_backoff
                    self._conn = conn
                    self.log.info("connected to agent", extra={"session": conn.session_id})
                    if self._stop.is_set():  # stop() came while connecting
                        conn.go_away(Code.UNAVAILABLE, "instance shutting down")
                    reason = await conn.run()
                    self._conn = None
                if self.terminating or self._stop.is_set():
                    return
                delay = backoff / 2 + random.random() * backoff / 2
                self.log.info("connection to agent lost; reconnecting", extra={"err": reason, "in_s": round(delay, 3)})
                try:
                    await asyncio.wait_for(self._stop.wait(), delay)
                    return
                except asyncio.TimeoutError:
                    pass
                backoff = min(backoff * 2, self.max_backoff)
        finally:
            self._executor.shutdown(wait=False)

    def stop(self) -> None:
        """Close the connection with a goodbye and make serve() return. Safe
        to call from any thread and from a signal handler."""
        loop = self._loop
        if loop is None:
            return
        if loop.is_closed():
            return
        loop.call_soon_threadsafe(self._stop_now)

    def _stop_now(self) -> None:
        if self._stop is not None:
            self._stop.set()
        if self._conn is not None:
            self._conn.go_away(Code.UNAVAILABLE, "instance shutting down")

    def send_message(self, payload: Union[bytes, str]) -> None:
        """Send a one-way message to the agent (call it on the event loop).

        Raises:
            SpearError: UNAVAILABLE when not connected.
        """
        conn = self._conn
        if conn is None or conn.closed:
            raise SpearError(Code.UNAVAILABLE, "not connected to the agent")
        conn.send(Type.MESSAGE, 0, 0, to_bytes(payload, "message"))

    async def _connect(self) -> "_Connection":
        cfg = self.config
        if cfg.channel == "unix":
            reader, writer = await asyncio.open_unix_connection(cfg.address)
        elif cfg.tls is None:
            host, port = _split_host_port(cfg.address)
            reader, writer = await asyncio.open_connection(host, port)  # TCP_NODELAY is asyncio's default
        else:
            host, port = _split_host_port(cfg.address)
            ctx = cfg.tls.context(cfg.secret.reveal())
            reader, writer = await asyncio.open_connection(host, port, ssl=ctx, server_hostname=cfg.tls.server_hostname(host))
        try:
            if cfg.tls is not None:
                cfg.tls.check_pin(writer.get_extra_info("ssl_object"))
            resp = await self._handshake(reader, writer)
        except BaseException:
            writer.close()
            raise
        return _Connection(self, reader, writer, resp)

    async def _handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> pb.AuthResponse:
        cfg = self.config
        f = await read_frame(reader, self.max_payload)
        _raise_refusal(f)
        if f.type != Type.AUTH_CHALLENGE:
            raise ProtocolError(Code.INVALID_MESSAGE, f"expected AUTH_CHALLENGE, got type {f.type}")
        challenge = pb.decode_auth_challenge(f.payload)
        if len(challenge.nonce) != NONCE_SIZE:
            raise ProtocolError(Code.INVALID_MESSAGE, f"challenge nonce of {len(challenge.nonce)} bytes, want {NONCE_SIZE}")
        if VERSION not in challenge.versions:
            raise ProtocolError(Code.UNSUPPORTED_VERSION, f"the agent speaks versions {challenge.versions}, not {VERSION}")
        client_nonce = os.urandom(NONCE_SIZE)
        secret = cfg.secret.reveal()
        mine = proof(secret, ROLE_INSTANCE, challenge.nonce, client_nonce, cfg.instance_id)
        writer.write(encode(Type.AUTH_REQUEST, 0, 0, pb.encode_auth_request(cfg.instance_id, client_nonce, mine, (pb.FEATURE_SPLIT,))))
        await writer.drain()
        f = await read_frame(reader, self.max_payload)
        _raise_refusal(f)
        if f.type != Type.AUTH_RESPONSE:
            raise ProtocolError(Code.INVALID_MESSAGE, f"expected AUTH_RESPONSE, got type {f.type}")
        resp = pb.decode_auth_response(f.payload)
        theirs = proof(secret, ROLE_AGENT, challenge.nonce, client_nonce, cfg.instance_id)
        if not hmac.compare_digest(theirs, resp.server_proof):
            raise AuthFailed("the agent could not prove it knows the secret")
        return resp

    async def invoke(self, fn: Callable[..., Any], arg: Any) -> Any:
        """Run fn(arg): on the loop when fn is async, else on a worker
        thread; await its result when that is awaitable."""
        if _is_async(fn):
            result = fn(arg)
        else:
            assert self._loop is not None
            result = await self._loop.run_in_executor(self._executor, self._call_sync, fn, arg)
        if inspect.isawaitable(result):
            result = await result
        return result

    def _call_sync(self, fn: Callable[..., Any], arg: Any) -> Any:
        with self._busy_lock:
            self._busy_threads += 1
        try:
            return fn(arg)
        finally:
            with self._busy_lock:
                self._busy_threads -= 1

    @property
    def busy_threads(self) -> int:
        """How many synchronous handlers are running on worker threads."""
        with self._busy_lock:
            return self._busy_threads


def _raise_refusal(f: Frame) -> None:
    """Turn an ERROR frame during the handshake into an exception."""
    if f.type != Type.ERROR:
        return
    code, message = pb.decode_error(f.payload)
    if code == Code.AUTH_FAILED:
        raise AuthFailed(message or "authentication failed")
    raise SpearError(Code.of(code), f"the agent refused the connection: {message}")


def _split_host_port(address: str) -> Tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"tcp address {address!r} is not host:port")
    return host.strip("[]"), int(port)


class _Connection:
    """One authenticated connection: the reading loop, heartbeats, and the
    requests in flight."""

    def __init__(self, instance: Instance, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, auth: pb.AuthResponse) -> None:
        self.instance = instance
        self.log = instance.log
        self.loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self.reader, self.writer = reader, writer
        self.session_id = auth.session_id
        self.peer_max = auth.max_payload  # 0: the agent announced no limit
        self.interval = auth.heartbeat_interval_ms / 1000
        self.frames_in = 0
        self.requests: Dict[int, Request] = {}
        self.tasks: Set["asyncio.Task[Any]"] = set()
        self.closed = False
        self._ending: Optional[str] = None  # why the connection is ending on purpose
        self._idle = asyncio.Event()
        self._idle.set()

    def in_loop(self) -> bool:
        """Whether the caller runs on the connection's event loop."""
        return threading.get_ident() == self._thread

    # Writing. Each frame is written by consecutive write() calls on the
    # loop, so frames never interleave.

    def send(self, type_: int, flags: int, id_: int, payload: bytes = b"") -> None:
        if self.closed:
            raise SpearError(Code.UNAVAILABLE, "the connection to the agent is closed")
        if len(payload) <= _COALESCE:
            self.writer.write(header(type_, flags, id_, len(payload)) + payload)
        else:
            self.writer.write(header(type_, flags, id_, len(payload)))
            self.writer.write(payload)

    def send_chunk(self, id_: int, data: bytes, flags: int = 0) -> None:
        """Send a STREAM_DATA frame, refusing one over the agent's limit."""
        if self.peer_max and len(data) > self.peer_max:
            raise SpearError(Code.TOO_LARGE, f"chunk of {len(data)} bytes is over the agent's limit of {self.peer_max}")
        self.send(Type.STREAM_DATA, flags, id_, data)

    def send_error(self, id_: int, code: Code, message: str) -> None:
        if not self.closed:
            self.send(Type.ERROR, 0, id_, pb.encode_error(code, message))

    async def drain(self) -> None:
        try:
            await self.writer.drain()
        except (ConnectionError, OSError) as e:
            raise SpearError(Code.UNAVAILABLE, f"the connection to the agent was lost: {e}") from None

    def go_away(self, code: Code, reason: str) -> None:
        """Say goodbye with a CLOSE frame and close the connection."""
        if self.closed:
            return
        self._ending = reason
        self.send(Type.CLOSE, 0, 0, pb.encode_error(code, reason))
        self.writer.close()

    def abort(self, reason: str) -> None:
        """Drop the connection without a word."""
        if not self.closed:
            self._ending = reason
            self.writer.transport.abort()

    # Reading.

    async def run(self) -> str:
        """Serve the connection until it ends; return why."""
        beat = self.loop.create_task(self._heartbeat()) if self.interval > 0 else None
        reason = "the agent closed the connection"
        try:
            while True:
                try:
                    f = await read_frame(self.reader, self.instance.max_payload)
                except Closed:
                    break
                except FrameError as e:
                    self.send_error(0, e.code, e.message)
                    reason = f"refused a frame: {e.message}"
                    break
                self.frames_in += 1
                self._dispatch(f)
                if self._ending is not None:
                    break
        except ProtocolError as e:
            reason = e.message
        except (ConnectionError, OSError) as e:
            reason = str(e) or type(e).__name__
        finally:
            if beat is not None:
                beat.cancel()
            self._close()
        return self._ending or reason

    def _close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.writer.close()
        for req in list(self.requests.values()):
            req._interrupt(Code.CANCELED)
        for task in list(self.tasks):
            task.cancel()

    def _dispatch(self, f: Frame) -> None:
        t = f.type
        if t == Type.EXECUTE_REQUEST:
            self._execute(f)
        elif t == Type.CANCEL:
            req = self.requests.get(f.id)
            if req is not None:
                req._interrupt(Code.CANCELED)
        elif t == Type.HEARTBEAT:
            if not f.flags & Flag.ACK:
                self.send(Type.HEARTBEAT, Flag.ACK, f.id, f.payload)
        elif t == Type.SIGNAL:
            self._signal(f)
        elif t == Type.MESSAGE:
            if self.instance.on_message is not None:
                try:
                    self.instance.on_message(f.payload)
                except Exception:
                    self.log.exception("on_message failed")
        elif t == Type.CLOSE:
            code, why = pb.decode_error(f.payload)
            self._ending = f"the agent closed the connection ({Code.of(code).name}: {why})"
        elif t == Type.ERROR and f.id == 0:
            code, why = pb.decode_error(f.payload)
            self._ending = f"the agent ended the connection ({Code.of(code).name}: {why})"
        elif t in (Type.AUTH_CHALLENGE, Type.AUTH_REQUEST, Type.AUTH_RESPONSE):
            self.send_error(0, Code.INVALID_MESSAGE, "authentication frame after the handshake")
            raise ProtocolError(Code.INVALID_MESSAGE, "authentication frame after the handshake")
        # Anything else answers a request this instance never opens: ignored.

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _execute(self, f: Frame) -> None:
        if f.id in self.requests:
            self.send_error(f.id, Code.INVALID_MESSAGE, f"request id {f.id} is already in use")
            return
        try:
            if f.flags & Flag.SPLIT:
                r = pb.decode_execute_request_split(f.payload)
            else:
                r = pb.decode_execute_request(f.payload)
        except ProtocolError as e:
            self.send_error(f.id, Code.INVALID_MESSAGE, f"undecodable EXECUTE_REQUEST: {e.message}")
            return
        inst = self.instance
        if inst.terminating:
            self.send_error(f.id, Code.UNAVAILABLE, "instance is terminating")
            return
        if inst.paused:
            self.send_error(f.id, Code.UNAVAILABLE, "instance is paused")
            return
        handler = inst.handler_for(r.method)
        if handler is None:
            self.send_error(f.id, Code.NOT_FOUND, f"no method {r.method!r}")
            return
        req = Request(self, f.id, r.method, r.payload, r.metadata, bool(f.flags & Flag.STREAM), r.timeout_ms)
        req._split = bool(f.flags & Flag.SPLIT)
        self.requests[f.id] = req
        self._idle.clear()
        self._spawn(self._run(req, handler))

    async def _run(self, req: Request, handler: Handler) -> None:
        # The handler runs inside this task (or, when synchronous, on a
        # worker thread this task awaits), so an interruption is one
        # cancel() of this task: the handler sees CancelledError at its
        # next await, and the caller is answered as soon as it returns.
        req._on_interrupt = asyncio.current_task().cancel  # type: ignore[union-attr]
        timer = None
        if req.deadline is not None:
            timer = self.loop.call_later(req.time_remaining(), req._interrupt, Code.DEADLINE_EXCEEDED)  # type: ignore[arg-type]
        try:
            failure: Optional[SpearError] = None
            try:
                result = await self.instance.invoke(handler, req)
            except asyncio.CancelledError:
                if req._reason is None or self.closed:
                    raise  # the connection is going away: nobody to answer
                result, failure = None, SpearError(req._reason, _interrupted_message(req._reason))
            except SpearError as e:
                result, failure = None, e
            except Exception as e:
                self.log.warning("handler failed", extra={"method": req.method, "err": f"{type(e).__name__}: {e}"})
                result, failure = None, SpearError(Code.INTERNAL, f"{type(e).__name__}: {e}")
            else:
                if req._reason is not None:  # interrupted as it returned
                    failure = SpearError(req._reason, _interrupted_message(req._reason))
            req._end()
            if failure is not None:
                self.send_error(req.id, failure.code, failure.message)
                return
            self._answer(req, result)
            await self.drain()
        except SpearError:
            pass  # the connection is gone: nobody to answer
        finally:
            if timer is not None:
                timer.cancel()
            req._end()
            self.requests.pop(req.id, None)
            if not self.requests:
                self._idle.set()

    def _answer(self, req: Request, result: Result) -> None:
        try:
            data = to_bytes(result)
        except TypeError as e:
            self.send_error(req.id, Code.INTERNAL, str(e))
            return
        if req.streaming:
            try:
                self.send_chunk(req.id, data, Flag.END)
            except SpearError as e:
                self.send_error(req.id, e.code, f"last {e.message}")
            return
        if req._gathered:
            data = b"".join((*req._gathered, data))  # one copy of it all
        flags: int = 0
        if req._split:
            # The result follows a 4-byte empty envelope, never copied into a message.
            flags, lead = Flag.SPLIT, pb.SPLIT_RESPONSE_HEADER
            size = len(lead) + len(data)
        else:
            lead = pb.encode_execute_response_header(len(data))
            size = pb.execute_response_size(len(data))
        if self.peer_max and size > self.peer_max:
            self.send_error(req.id, Code.TOO_LARGE, f"result of {len(data)} bytes is over the agent's limit of {self.peer_max}")
            return
        head = header(Type.EXECUTE_RESPONSE, flags, req.id, size) + lead
        if len(data) <= _COALESCE:
            self.writer.write(head + data)  # one send for a small answer
        else:
            self.writer.write(head)  # no copy of a large one
            self.writer.write(data)

    # Signals.

    def _signal(self, f: Frame) -> None:
        try:
            s = pb.decode_signal(f.payload)
        except ProtocolError as e:
            self._answer_signal(f.id, SpearError(Code.INVALID_MESSAGE, f"undecodable SIGNAL: {e.message}"))
            return
        try:
            kind = SignalKind(s.kind)
        except ValueError:
            kind = SignalKind.UNSPECIFIED
        sig = Signal(kind, s.name, s.data)
        inst = self.instance
        self.log.info("signal from agent", extra={"kind": kind.name.lower(), "name": s.name})
        if kind == SignalKind.TERMINATE:
            # Draining starts before the acknowledgement leaves, so that a
            # request the agent sends once it has the ack is refused.
            inst.terminating = True
            self._answer_signal(f.id, None)
            self._spawn(self._drain_and_close())
            return
        if kind in (SignalKind.PAUSE, SignalKind.RESUME):
            inst.paused = kind == SignalKind.PAUSE
            if inst.on_signal is None:
                self._answer_signal(f.id, None)
                return
        elif inst.on_signal is None:
            self._answer_signal(f.id, SpearError(Code.NOT_FOUND, f"no handler for signal {kind.name.lower()} {s.name!r}"))
            return
        self._spawn(self._run_signal_handler(f.id, sig))

    async def _run_signal_handler(self, id_: int, sig: Signal) -> None:
        assert self.instance.on_signal is not None
        try:
            await self.instance.invoke(self.instance.on_signal, sig)
        except SpearError as e:
            self._answer_signal(id_, e)
            return
        except Exception as e:
            self._answer_signal(id_, SpearError(Code.INTERNAL, f"{type(e).__name__}: {e}"))
            return
        self._answer_signal(id_, None)

    def _answer_signal(self, id_: int, err: Optional[SpearError]) -> None:
        if id_ == 0 or self.closed:
            return  # a one-way signal gets no answer
        if err is None:
            self.send(Type.EXECUTE_RESPONSE, 0, id_)
        else:
            self.send_error(id_, err.code, err.message)

    async def _drain_and_close(self) -> None:
        await self._idle.wait()
        try:
            await self.drain()
        except SpearError:
            return
        self.go_away(Code.UNAVAILABLE, "instance terminated")

    async def _heartbeat(self) -> None:
        last, misses = self.frames_in, 0
        while True:
            await asyncio.sleep(self.interval)
            if self.frames_in != last:
                last, misses = self.frames_in, 0
                continue
            misses += 1
            if misses >= HEARTBEAT_MISSES:
                self.log.warning("agent silent; dropping the connection", extra={"misses": misses})
                self.abort(f"no frame from the agent in {misses} heartbeat intervals")
                return
            self.send(Type.HEARTBEAT, 0, 0)


# Payloads up to this size are copied behind their header and sent in one
# write; larger ones go in a write of their own, uncopied.
_COALESCE = 64 << 10


def _interrupted_message(reason: Code) -> str:
    return "deadline exceeded" if reason == Code.DEADLINE_EXCEEDED else "request cancelled"


async def serve(handler: Handlers, **options: Any) -> None:
    """Serve handler on the running event loop until the agent terminates
    the instance; see Instance for the options."""
    await Instance(handler, **options).serve()


def run(handler: Handlers, **options: Any) -> None:
    """The whole main of an instance: serve handler with the connection
    settings from the environment until the agent terminates the instance
    or the process gets SIGTERM or SIGINT.

    Logs go to stderr as JSON lines. On an error (a bad environment, a
    failed handshake) it logs why and exits with status 1. See Instance for
    the options.
    """
    configure_logs()
    try:
        inst = Instance(handler, **options)
    except ConfigError as e:
        logger.error("spear instance: bad configuration", extra={"err": e.message})
        sys.exit(1)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (_signal.SIGTERM, _signal.SIGINT):
            try:
                loop.add_signal_handler(sig, inst.stop)
            except (NotImplementedError, RuntimeError):
                pass  # not the main thread, or no signals here
        await inst.serve()

    try:
        asyncio.run(main())
    except SpearError as e:
        logger.error("spear instance stopped", extra={"err": str(e)})
        sys.exit(1)
    if inst.busy_threads:
        # A synchronous handler that ignores cancellation would hold the
        # interpreter at exit: the instance is done, so leave now.
        logger.warning("exiting with synchronous handlers still running", extra={"threads": inst.busy_threads})
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
