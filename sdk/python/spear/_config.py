"""The bootstrap environment (docs/protocol.md, section 2) and the secret
hand-off."""

from __future__ import annotations

import ctypes
import os
import sys
from dataclasses import dataclass
from typing import MutableMapping, Optional

from ._errors import ConfigError
from ._tls import TLS

ENV_INSTANCE_ID = "SPEAR_INSTANCE_ID"
ENV_SECRET = "SPEAR_SECRET"
ENV_SECRET_FILE = "SPEAR_SECRET_FILE"
ENV_SECRET_FD = "SPEAR_SECRET_FD"
ENV_CHANNEL = "SPEAR_CHANNEL"
ENV_ADDRESS = "SPEAR_ADDRESS"

#: The transports this SDK can dial.
TRANSPORTS = ("unix", "tcp")


class Secret:
    """The instance's secret. It never prints: its repr and str are
    redacted, so it cannot end up in a log by accident."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        self._value = bytes(value)

    def reveal(self) -> bytes:
        """Return the secret's bytes."""
        return self._value

    def __repr__(self) -> str:
        return "Secret([redacted])"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        import hmac

        return isinstance(other, Secret) and hmac.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return id(self)


@dataclass(frozen=True)
class Config:
    """Where and as whom an instance connects."""

    instance_id: str
    secret: Secret
    channel: str
    address: str
    #: TLS on a tcp channel, from the SPEAR_TLS_* variables; None: none.
    tls: Optional[TLS] = None

    @classmethod
    def from_env(cls, environ: Optional[MutableMapping[str, str]] = None) -> "Config":
        """Read the configuration from the SPEAR_* variables.

        The secret comes from, in order of preference: the inherited file
        descriptor named by SPEAR_SECRET_FD (read to EOF, then closed), the
        file named by SPEAR_SECRET_FILE, or SPEAR_SECRET. Each holds it
        hex-encoded; surrounding whitespace is ignored. SPEAR_SECRET and
        SPEAR_SECRET_FD are removed from the environment once read, so that
        processes the function starts do not inherit them. Reading this
        process's own environment (environ None) first makes the process
        non-dumpable on Linux, so that other processes of its user cannot
        read the secret out of it (docs/security.md).
        """
        if environ is None:
            protect_process()
        env = os.environ if environ is None else environ
        instance_id = env.get(ENV_INSTANCE_ID, "")
        if not instance_id:
            raise ConfigError(f"{ENV_INSTANCE_ID} is not set")
        secret = read_secret(env)
        channel = env.get(ENV_CHANNEL, "") or "unix"
        address = env.get(ENV_ADDRESS, "")
        if not address:
            raise ConfigError(f"{ENV_ADDRESS} is not set")
        if channel not in TRANSPORTS:
            raise ConfigError(
                f"channel type {channel!r} is not supported by the Python SDK, which speaks unix and tcp; "
                "give the function channel type tcp (the agent's grpc strategy falls back to it)"
            )
        tls = TLS.from_env(env)
        if tls is not None and channel != "tcp":
            raise ConfigError(f"SPEAR_TLS_* is set for a {channel} channel, which has no TLS")
        return cls(instance_id=instance_id, secret=secret, channel=channel, address=address, tls=tls)


#: prctl's option that sets whether the process is dumpable.
PR_SET_DUMPABLE = 4


def protect_process() -> None:
    """Make the process non-dumpable (Linux): other processes of the same
    user can then no longer ptrace it, read its memory or environment, or
    open its descriptors through /proc. It also means no core dumps."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise ConfigError(f"cannot make the process non-dumpable: {os.strerror(err)}")


def read_secret(env: MutableMapping[str, str]) -> Secret:
    """Read the secret as Config.from_env documents."""
    fd = env.get(ENV_SECRET_FD, "")
    path = env.get(ENV_SECRET_FILE, "")
    if fd:
        raw, source = _read_fd(fd), ENV_SECRET_FD
    elif path:
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError as e:
            raise ConfigError(f"{ENV_SECRET_FILE}: {e.strerror}: {path}") from None
        source = ENV_SECRET_FILE
    elif env.get(ENV_SECRET):
        raw, source = env[ENV_SECRET].encode("ascii", "replace"), ENV_SECRET
    else:
        raise ConfigError(f"no secret: set {ENV_SECRET_FD}, {ENV_SECRET_FILE} or {ENV_SECRET}")
    for name in (ENV_SECRET, ENV_SECRET_FD):
        env.pop(name, None)
    try:
        value = bytes.fromhex(raw.strip().decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        # The value itself is never quoted: it may be the secret.
        raise ConfigError(f"{source} does not hold a hex-encoded secret") from None
    if not value:
        raise ConfigError(f"{source} holds an empty secret")
    return Secret(value)


def _read_fd(value: str) -> bytes:
    try:
        fd = int(value)
    except ValueError:
        raise ConfigError(f"{ENV_SECRET_FD} is not a file descriptor number: {value!r}") from None
    chunks = []
    try:
        while True:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            chunks.append(chunk)
    except OSError as e:
        raise ConfigError(f"{ENV_SECRET_FD}: descriptor {fd}: {e.strerror}") from None
    finally:
        try:
            os.close(fd)
        except OSError:
            pass
    return b"".join(chunks)

