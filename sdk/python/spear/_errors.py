"""Error codes of the protocol and the exception that carries one."""

from __future__ import annotations

import enum


class Code(enum.IntEnum):
    """An error code carried in an ERROR frame (docs/protocol.md, section 17)."""

    UNKNOWN = 0
    INVALID_MESSAGE = 1
    UNSUPPORTED_VERSION = 2
    AUTH_FAILED = 3
    NOT_FOUND = 4
    DEADLINE_EXCEEDED = 5
    CANCELED = 6
    TOO_LARGE = 7
    UNAVAILABLE = 8
    INTERNAL = 9
    RESOURCE_EXHAUSTED = 10

    @classmethod
    def of(cls, value: int) -> "Code":
        """Return the code for a wire value; unknown values are UNKNOWN."""
        try:
            return cls(value)
        except ValueError:
            return cls.UNKNOWN


class SpearError(Exception):
    """An error with a protocol error code.

    Raise it from a handler to choose the code the caller sees, for example
    ``raise SpearError(Code.NOT_FOUND, "no such method")``. The SDK raises it
    too, for instance from :meth:`spear.Request.write` when a chunk is over
    the agent's payload limit.
    """

    def __init__(self, code: Code, message: str = "") -> None:
        super().__init__(message)
        self.code = Code.of(int(code))
        self.message = message

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}" if self.message else self.code.name


class ConfigError(SpearError):
    """The instance's configuration (its SPEAR_* environment) is unusable."""

    def __init__(self, message: str) -> None:
        super().__init__(Code.INVALID_MESSAGE, message)


class AuthFailed(SpearError):
    """The handshake failed: wrong credentials, or an agent that could not
    prove it knows the secret. It is final: the instance does not retry."""

    def __init__(self, message: str) -> None:
        super().__init__(Code.AUTH_FAILED, message)


class ProtocolError(SpearError):
    """The peer broke the protocol; the connection is closed."""
