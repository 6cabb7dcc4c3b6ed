"""The Python SDK's conformance fixture: an instance serving the
conformance handler contract (docs/conformance.md), with async handlers for
some methods and synchronous ones for others, so that both paths are
checked. Run it under the conformance runner:

    spearlet conformance --env PYTHONPATH=sdk/python -- python3 sdk/python/tests/conformance_instance.py
"""

import asyncio
import threading

import spear

WAITING = b"waiting"
MAX_WAIT = 60.0

_interrupted = 0
_lock = threading.Lock()


def _count() -> None:
    global _interrupted
    with _lock:
        _interrupted += 1


def _number(req: spear.Request) -> int:
    try:
        n = int(req.payload)
    except ValueError:
        raise spear.SpearError(spear.Code.INVALID_MESSAGE, f"want a decimal count, not {req.payload!r}") from None
    if n < 0:
        raise spear.SpearError(spear.Code.INVALID_MESSAGE, "want a count of at least 0")
    return n


async def echo(req: spear.Request) -> bytes:
    return req.payload


def stream(req: spear.Request) -> str:
    """Synchronous: writes block until sent."""
    for i in range(_number(req)):
        req.write(str(i))
    return "done"


async def sleep(req: spear.Request) -> str:
    ms = _number(req)
    try:
        await asyncio.sleep(ms / 1000)
    except asyncio.CancelledError:
        _count()
        raise
    return f"slept {ms}"


def wait_cancel(req: spear.Request) -> None:
    """Synchronous: waits on the cancelled flag."""
    req.write(WAITING)
    if req.wait_cancelled(MAX_WAIT):
        _count()
        raise spear.SpearError(req.cancel_reason or spear.Code.CANCELED, "cancelled")
    raise spear.SpearError(spear.Code.INTERNAL, "wait-cancel was never cancelled")


async def interrupted(req: spear.Request) -> str:
    with _lock:
        return str(_interrupted)


async def big(req: spear.Request) -> bytes:
    return b"x" * _number(req)


if __name__ == "__main__":
    spear.run({
        "echo": echo,
        "stream": stream,
        "sleep": sleep,
        "wait-cancel": wait_cancel,
        "interrupted": interrupted,
        "big": big,
    })
