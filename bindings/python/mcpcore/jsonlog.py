"""mcpcore.jsonlog - JSON-lines logging for Python processes, in the same
form as the C processes' (shm/mc_log.h):

    {"time":"2026-11-25T04:03:10.123456Z","level":"info","component":"learner",
     "pid":123,"correlation_id":"9f2c...","event":"model_updated",
     "message":"model ranker v7 saved", ...extra fields...}

    log = mcpcore.jsonlog.get_logger("learner")
    log.info("model ranker v%d saved", 7, extra={"event": "model_updated", "version": 7})
    with mcpcore.jsonlog.correlation(msg.metadata["correlation_id"]):
        handle(msg)                     # every line logged here carries the id

Level: MCPCORE_LOG_LEVEL (debug, info, warn, error) overrides the level
given to get_logger(), as it does for the C processes.  correlation_id is
carried by a contextvar, so it follows the code handling one message
across threads and asyncio tasks that inherit the context.  A record's
"event" defaults to "log"; any other `extra` field is written as is (when
JSON can represent it; else as its repr).
"""

import contextlib
import contextvars
import datetime
import json
import logging
import os
import sys

__all__ = ["JsonFormatter", "get_logger", "correlation", "correlation_id", "LEVELS"]

#: mcpcore level names -> logging levels.
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
          "error": logging.ERROR}
_NAMES = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn",
          logging.ERROR: "error", logging.CRITICAL: "error"}

_correlation = contextvars.ContextVar("mcpcore_correlation_id", default=None)

# attributes every LogRecord has: not "extra" fields
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def correlation_id():
    """The correlation id of the current context, or None."""
    return _correlation.get()


@contextlib.contextmanager
def correlation(cid):
    """Log lines inside the with-block carry correlation_id=cid."""
    token = _correlation.set(cid)
    try:
        yield cid
    finally:
        _correlation.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, component, pid, correlation_id
    (when one applies), event, message, then the record's extra fields."""

    def __init__(self, component="python"):
        super().__init__()
        self.component = component

    def format(self, record):
        when = datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
        line = {
            "time": when.strftime("%Y-%m-%dT%H:%M:%S.") + "%06dZ" % when.microsecond,
            "level": _NAMES.get(record.levelno, "info"),
            "component": getattr(record, "component", None) or self.component,
            "pid": os.getpid(),
        }
        cid = getattr(record, "correlation_id", None) or _correlation.get()
        if cid is not None:
            line["correlation_id"] = str(cid)
        line["event"] = getattr(record, "event", None) or "log"
        line["message"] = record.getMessage()
        for key, value in vars(record).items():
            if key in _STANDARD or key in line or key in ("event", "component"):
                continue
            try:
                json.dumps(value)
            except (TypeError, ValueError):
                value = repr(value)
            line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, separators=(",", ":"), ensure_ascii=False)


def get_logger(component="python", level="info", stream=None):
    """A logger named mcpcore.<component> writing JSON lines to stderr.

    Idempotent per component.  MCPCORE_LOG_LEVEL overrides `level`.
    """
    logger = logging.getLogger("mcpcore." + component)
    env = os.environ.get("MCPCORE_LOG_LEVEL", "")
    logger.setLevel(LEVELS.get(env or level, logging.INFO))
    if not any(getattr(h, "_mcpcore", False) for h in logger.handlers):
        handler = logging.StreamHandler(stream or sys.stderr)
        handler.setFormatter(JsonFormatter(component))
        handler._mcpcore = True
        logger.addHandler(handler)
        logger.propagate = False
    return logger
