"""Structured logs: JSON lines on stderr, which the agent captures."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Dict

#: The SDK's logger. run() gives it a JSON-lines handler on stderr unless
#: it has handlers already.
logger = logging.getLogger("spear")

# Attributes every LogRecord has; anything else came from ``extra``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


class JSONFormatter(logging.Formatter):
    """Formats a record as one JSON object per line: time, level, msg,
    logger, the fields given as ``extra``, and the exception, if any."""

    def format(self, record: logging.LogRecord) -> str:
        out: Dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "msg": record.getMessage(),
            "logger": record.name,
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def configure() -> None:
    """Send the SDK's logs to stderr as JSON lines, at the level named by
    SPEAR_LOG_LEVEL (default info), unless the application set up the
    "spear" logger itself."""
    if logger.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter())
    logger.addHandler(handler)
    logger.setLevel(os.environ.get("SPEAR_LOG_LEVEL", "INFO").upper())
    logger.propagate = False
