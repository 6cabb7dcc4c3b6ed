"""The instance against a minimal agent (tests/agent.py)."""

import asyncio
import threading
import unittest

import spear
from spear import Code, Instance, SignalKind, SpearError
from spear import _proto as pb
from spear._frame import Flag, Type

from .agent import FakeAgent


async def echo(req: spear.Request) -> bytes:
    return req.method.encode() + b":" + req.payload


def sync_echo(req: spear.Request) -> str:
    return "sync:" + req.text


async def chunks(req: spear.Request) -> str:
    for word in req.text.split():
        req.write(word)
        await req.drain()
    return "end"


cancelled_tasks = []


async def wait_for_cancel(req: spear.Request) -> None:
    req.write("started")
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        cancelled_tasks.append(req.cancel_reason)
        raise


def sync_wait(req: spear.Request) -> str:
    req.write("started")
    return "cancelled" if req.wait_cancelled(60) else "timed out"


def fails(req: spear.Request) -> None:
    raise ValueError("broken handler")


async def refuses(req: spear.Request) -> None:
    raise SpearError(Code.NOT_FOUND, "no such thing")


async def big(req: spear.Request) -> bytes:
    return b"x" * int(req.payload)


def bad_result(req: spear.Request) -> int:
    return 42


HANDLERS = {
    "echo": echo,
    "sync": sync_echo,
    "chunks": chunks,
    "wait": wait_for_cancel,
    "sync-wait": sync_wait,
    "fails": fails,
    "refuses": refuses,
    "big": big,
    "bad-result": bad_result,
}


class InstanceTest(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self):
        self.agent = FakeAgent()
        await self.agent.__aenter__()
        self.served = []

    async def asyncTearDown(self):
        for inst, task in self.served:
            inst.stop()
            try:
                await asyncio.wait_for(task, 10)
            except (SpearError, asyncio.CancelledError):
                pass
        await self.agent.__aexit__()

    def start(self, handler=None, agent=None, **options):
        agent = agent or self.agent
        options.setdefault("min_backoff", 0.01)
        options.setdefault("max_backoff", 0.05)
        inst = Instance(handler or HANDLERS, config=agent.config(), **options)
        task = asyncio.ensure_future(inst.serve())
        self.served.append((inst, task))
        return inst, task

    async def test_requests(self):
        self.start()
        conn = await self.agent.accept()
        self.assertEqual(await conn.call("echo", b"hi"), b"echo:hi")
        self.assertEqual(await conn.call("sync", b"hi"), b"sync:hi")
        # Errors keep their code; other exceptions are INTERNAL.
        for method, code, text in (("refuses", Code.NOT_FOUND, "no such thing"), ("fails", Code.INTERNAL, "ValueError: broken handler"),
                                   ("nope", Code.NOT_FOUND, "no method 'nope'"), ("bad-result", Code.INTERNAL, "not int")):
            f = await conn.answer(conn.execute(method))
            self.assertEqual(f.type, Type.ERROR, method)
            got_code, msg = pb.decode_error(f.payload)
            self.assertEqual(got_code, code, method)
            self.assertIn(text, msg)
        # A request id in use is refused; the first request is unaffected.
        conn.send(Type.EXECUTE_REQUEST, 0, 101, pb.encode_execute_request("sync-wait"))
        conn.send(Type.EXECUTE_REQUEST, 0, 101, pb.encode_execute_request("echo"))
        f = await conn.answer(101)
        self.assertEqual(pb.decode_error(f.payload)[0], Code.INVALID_MESSAGE)
        conn.send(Type.CANCEL, 0, 101)
        f = await conn.answer(101)
        self.assertEqual(pb.decode_error(f.payload)[0], Code.CANCELED)

    async def test_split_layout(self):
        # The SDK announces the split layout, reads split requests, and
        # answers them split: the payload after a 4-byte envelope length.
        self.start()
        conn = await self.agent.accept()
        self.assertEqual(conn.features, [pb.FEATURE_SPLIT])
        id_ = conn.next_id
        conn.next_id += 2
        conn.send(Type.EXECUTE_REQUEST, Flag.SPLIT, id_, pb.encode_execute_request_split("echo", b"\x00hi\xff", 5000))
        f = await conn.answer(id_)
        self.assertEqual((f.type, f.flags & Flag.SPLIT), (Type.EXECUTE_RESPONSE, Flag.SPLIT))
        self.assertEqual(pb.decode_execute_response_split(f.payload), (b"echo:\x00hi\xff", {}))
        # An unsplit request still gets an unsplit answer.
        f = await conn.answer(conn.execute("echo", b"old"))
        self.assertEqual(f.flags & Flag.SPLIT, 0)
        self.assertEqual(pb.decode_execute_response(f.payload)[0], b"echo:old")

    async def test_concurrent_requests_answered_by_id(self):
        slow_started = threading.Event()

        async def slow(req):
            slow_started.set()
            await asyncio.sleep(0.2)
            return b"slow"

        self.start({"slow": slow, "echo": echo})
        conn = await self.agent.accept()
        first = conn.execute("slow")
        second = conn.execute("echo", b"fast")
        f = await conn.recv()
        self.assertEqual((f.id, pb.decode_execute_response(f.payload)[0]), (second, b"echo:fast"))
        f = await conn.recv()
        self.assertEqual((f.id, pb.decode_execute_response(f.payload)[0]), (first, b"slow"))

    async def test_streaming(self):
        self.start()
        conn = await self.agent.accept()
        id_ = conn.execute("chunks", b"a b c", flags=Flag.STREAM)
        got = []
        while True:
            f = await conn.answer(id_)
            self.assertEqual(f.type, Type.STREAM_DATA)
            got.append(f.payload)
            if f.flags & Flag.END:
                break
        self.assertEqual(got, [b"a", b"b", b"c", b"end"])
        # Without STREAM, the chunks are gathered ahead of the result.
        self.assertEqual(await conn.call("chunks", b"a b c"), b"abcend")

    async def test_cancel_and_deadline(self):
        self.start()
        conn = await self.agent.accept()
        for method in ("wait", "sync-wait"):
            id_ = conn.execute(method, flags=Flag.STREAM)
            self.assertEqual((await conn.answer(id_)).payload, b"started")
            conn.send(Type.CANCEL, 0, id_)
            f = await conn.answer(id_)
            self.assertEqual(pb.decode_error(f.payload)[0], Code.CANCELED, method)
        for method in ("wait", "sync-wait"):
            id_ = conn.execute(method, timeout_ms=50)
            f = await conn.answer(id_)
            self.assertEqual(pb.decode_error(f.payload)[0], Code.DEADLINE_EXCEEDED, method)
        # The async handler's task was cancelled, seeing why.
        await asyncio.sleep(0.05)
        self.assertEqual(cancelled_tasks[-2:], [Code.CANCELED, Code.DEADLINE_EXCEEDED])
        # A CANCEL for an id that is not running is ignored.
        conn.send(Type.CANCEL, 0, 999)
        self.assertEqual(await conn.call("echo", b"after"), b"echo:after")

    async def test_payload_limit(self):
        agent = FakeAgent(max_payload=1000)
        async with agent:
            self.start(agent=agent)
            conn = await agent.accept()
            # 997 bytes: a 1000-byte EXECUTE_RESPONSE, exactly the limit.
            self.assertEqual(len(await conn.call("big", b"997")), 997)
            f = await conn.answer(conn.execute("big", b"998"))
            code, msg = pb.decode_error(f.payload)
            self.assertEqual(code, Code.TOO_LARGE)
            self.assertIn("over the agent's limit of 1000", msg)
            f = await conn.answer(conn.execute("big", b"1001", flags=Flag.STREAM))
            self.assertEqual(pb.decode_error(f.payload)[0], Code.TOO_LARGE)
            self.assertEqual(await conn.call("echo", b"still here"), b"echo:still here")

    async def test_oversized_frame_from_agent_closes_connection(self):
        self.start(max_payload=100)
        conn = await self.agent.accept()
        conn.send(Type.EXECUTE_REQUEST, 0, 1, b"x" * 101)
        seen = await conn.closed()
        self.assertEqual([(f.type, pb.decode_error(f.payload)[0]) for f in seen], [(Type.ERROR, Code.TOO_LARGE)])
        # ...and the instance reconnects.
        conn = await self.agent.accept()
        self.assertEqual(await conn.call("echo", b"again"), b"echo:again")

    async def test_bad_frames(self):
        self.start()
        for raw, code in ((b"\x00\x00\x00\x00\x02\x04" + b"\x00" * 10, Code.UNSUPPORTED_VERSION),
                          (b"\x00\x00\x00\x00\x01\x63" + b"\x00" * 10, Code.INVALID_MESSAGE),
                          (b"\x00\x00\x00\x00\x01\x01" + b"\x00" * 10, Code.INVALID_MESSAGE)):
            conn = await self.agent.accept()
            conn.writer.write(raw)
            seen = await conn.closed()
            self.assertEqual([pb.decode_error(f.payload)[0] for f in seen if f.type == Type.ERROR], [code])

    async def test_heartbeats(self):
        agent = FakeAgent(heartbeat_ms=50)
        async with agent:
            self.start(agent=agent)
            conn = await agent.accept()
            conn.send(Type.HEARTBEAT, 0, 7, b"ping")
            f = await conn.recv(skip_probes=False)
            self.assertEqual((f.type, f.flags, f.id, f.payload), (Type.HEARTBEAT, Flag.ACK, 7, b"ping"))
            # An idle agent is probed; an agent that never answers is left.
            f = await conn.recv(skip_probes=False)
            self.assertEqual((f.type, f.flags), (Type.HEARTBEAT, 0))
            await conn.closed(answer_probes=False)
            conn = await agent.accept()
            self.assertEqual(await conn.call("echo", b"back"), b"echo:back")

    async def test_signals(self):
        seen = []

        def on_signal(sig):
            seen.append(sig)
            if sig.kind == SignalKind.CUSTOM and sig.name != "reload":
                raise SpearError(Code.NOT_FOUND, "unknown signal")

        self.start(on_signal=on_signal)
        conn = await self.agent.accept()
        self.assertEqual((await conn.answer(conn.signal(SignalKind.PAUSE))).type, Type.EXECUTE_RESPONSE)
        f = await conn.answer(conn.execute("echo"))
        self.assertEqual(pb.decode_error(f.payload)[0], Code.UNAVAILABLE)
        self.assertEqual((await conn.answer(conn.signal(SignalKind.RESUME))).type, Type.EXECUTE_RESPONSE)
        self.assertEqual(await conn.call("echo", b"x"), b"echo:x")
        self.assertEqual((await conn.answer(conn.signal(SignalKind.CUSTOM, "reload", b"d"))).type, Type.EXECUTE_RESPONSE)
        f = await conn.answer(conn.signal(SignalKind.CUSTOM, "other"))
        self.assertEqual(pb.decode_error(f.payload)[0], Code.NOT_FOUND)
        self.assertEqual([(s.kind, s.name) for s in seen],
                         [(SignalKind.PAUSE, ""), (SignalKind.RESUME, ""), (SignalKind.CUSTOM, "reload"), (SignalKind.CUSTOM, "other")])

    async def test_unhandled_custom_signal(self):
        self.start()
        conn = await self.agent.accept()
        f = await conn.answer(conn.signal(SignalKind.CUSTOM, "x"))
        self.assertEqual(pb.decode_error(f.payload)[0], Code.NOT_FOUND)

    async def test_terminate_drains_then_closes(self):
        inst, task = self.start()
        conn = await self.agent.accept()
        running = conn.execute("wait", flags=Flag.STREAM)
        self.assertEqual((await conn.answer(running)).payload, b"started")
        sig = conn.signal(SignalKind.TERMINATE)
        self.assertEqual((await conn.answer(sig)).type, Type.EXECUTE_RESPONSE)
        f = await conn.answer(conn.execute("echo"))
        self.assertEqual(pb.decode_error(f.payload)[0], Code.UNAVAILABLE)
        self.assertFalse(task.done())  # the running request holds it open
        conn.send(Type.CANCEL, 0, running)
        seen = await conn.closed()
        self.assertEqual(seen[-1].type, Type.CLOSE)
        await asyncio.wait_for(task, 10)  # serve returns: no reconnecting

    async def test_reconnects_after_drop_and_close(self):
        self.start()
        conn = await self.agent.accept()
        conn.close()
        conn = await self.agent.accept()
        self.assertEqual(await conn.call("echo", b"1"), b"echo:1")
        conn.send(Type.CLOSE, 0, 0, pb.encode_error(Code.UNAVAILABLE, "bye"))
        conn.close()
        conn = await self.agent.accept()
        self.assertEqual(await conn.call("echo", b"2"), b"echo:2")

    async def test_wrong_agent_proof_is_final(self):
        agent = FakeAgent(forge=True)
        async with agent:
            inst, task = self.start(agent=agent)
            conn = await agent.accept()
            conn.execute("echo", b"must not be served")
            self.assertEqual(await conn.closed(), [])
            with self.assertRaises(spear.AuthFailed):
                await asyncio.wait_for(task, 10)
            self.served.clear()

    async def test_wrong_secret_is_final(self):
        inst = Instance(HANDLERS, config=self.agent.config(secret=b"\x01" * 32), min_backoff=0.01)
        with self.assertRaises(spear.AuthFailed):
            await asyncio.wait_for(inst.serve(), 10)
        self.assertEqual(self.agent.failures.qsize(), 1)

    async def test_stop_says_goodbye(self):
        inst, task = self.start()
        conn = await self.agent.accept()
        inst.stop()
        seen = await conn.closed()
        self.assertEqual([(f.type, pb.decode_error(f.payload)) for f in seen], [(Type.CLOSE, (Code.UNAVAILABLE, "instance shutting down"))])
        await asyncio.wait_for(task, 10)

    async def test_messages(self):
        got = []
        inst, _ = self.start(on_message=got.append)
        conn = await self.agent.accept()
        while not inst.connected:  # the instance checks the agent's proof first
            await asyncio.sleep(0.01)
        conn.send(Type.MESSAGE, 0, 0, b"to instance")
        inst.send_message("to agent")
        f = await conn.recv()
        self.assertEqual((f.type, f.payload), (Type.MESSAGE, b"to agent"))
        await conn.call("echo")  # the message was read before this
        self.assertEqual(got, [b"to instance"])


if __name__ == "__main__":
    unittest.main()
