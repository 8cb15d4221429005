"""Log formats: one line per event, as text or as JSON with the event's fields.

Either way a message is one line and holds no password: :func:`driver.domain.text.shown` escapes
the control characters a name from outside may carry and hides database passwords.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from driver.domain.text import mask_secrets, shown

TEXT_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"
# What the use cases pass as ``extra=``: the state change and what it concerns.
EVENT_FIELDS = ("event", "pool", "subnet", "address", "kind", "mac", "endpoint")


class TextFormatter(logging.Formatter):
    """:data:`TEXT_FORMAT`, with the message on one line and without passwords (a traceback,
    which only ipledger's own code writes, keeps its lines)."""

    def __init__(self, fmt: str = TEXT_FORMAT) -> None:
        super().__init__(fmt)

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = shown(record.message)
        return super().formatMessage(record)


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "pid", "message", "event", "pool", ...}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": mask_secrets(record.getMessage()),
        }
        for key in EVENT_FIELDS:
            value = record.__dict__.get(key)
            if value is not None:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line)


def logging_config(level: str, fmt: str = "text") -> dict[str, Any]:
    """One format, on stdout, for ipledger's and gunicorn's own messages alike.

    stdout because Docker logs everything a managed plugin writes to stderr as an error.
    """
    formatter: dict[str, Any] = {"()": JsonFormatter if fmt == "json" else TextFormatter}
    handler = {"class": "logging.StreamHandler", "stream": "ext://sys.stdout", "formatter": "main"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"main": formatter},
        "handlers": {"stdout": handler},
        "root": {"level": level.upper(), "handlers": ["stdout"]},
        "loggers": {
            "gunicorn.error": {"level": level.upper(), "handlers": [], "propagate": True},
            # one access line per call only when debugging: the state changes are logged anyway
            "gunicorn.access": {
                "level": "DEBUG" if level == "debug" else "WARNING",
                "handlers": [],
                "propagate": True,
            },
        },
    }
