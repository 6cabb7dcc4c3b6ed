"""Spear's instance SDK for Python: serve a function to a Spear agent.

The smallest function::

    import spear

    def handler(req: spear.Request) -> bytes:
        return b"hello, " + req.payload

    spear.run(handler)

Handlers may be ``async def`` too, stream output with ``req.write(chunk)``,
and see ``req.cancelled`` (async handlers are also cancelled as tasks) when
the caller gives up or the deadline passes. run() reads the instance's
identity, secret and address from the SPEAR_* environment the agent sets,
reconnects with backoff when the connection drops, and logs JSON lines to
stderr. The protocol is docs/protocol.md of the Spear repository; this
package uses the standard library only.
"""

from ._config import Config, Secret
from ._errors import AuthFailed, Code, ConfigError, ProtocolError, SpearError
from ._instance import Handler, Handlers, Instance, Signal, SignalHandler, SignalKind, run, serve
from ._log import JSONFormatter
from ._request import Request, Result
from ._tls import TLS

__version__ = "0.1.0"

__all__ = [
    "AuthFailed",
    "Code",
    "Config",
    "ConfigError",
    "Handler",
    "Handlers",
    "Instance",
    "JSONFormatter",
    "ProtocolError",
    "Request",
    "Result",
    "Secret",
    "Signal",
    "SignalHandler",
    "SignalKind",
    "SpearError",
    "run",
    "serve",
]
