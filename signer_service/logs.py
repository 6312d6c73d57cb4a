"""One JSON object per log line. Callers pass ids and outcomes only, never key material."""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import UTC, datetime
from typing import Any

LOGGER = logging.getLogger("signer_service")


# LogRecord attributes that are not "extra" fields.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def rfc3339_utc(created: float) -> str:
    """2026-01-31T12:00:00.123Z: RFC 3339, UTC, milliseconds (the payout service's match)."""
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


class JsonFormatter(logging.Formatter):
    """One JSON object a line: timestamp, level, logger, message, service, then the record's
    fields (log_event's, or `extra=`) flat at the top level. The payout service writes the same
    shape with a formatter of its own: the signer imports nothing from it."""

    def __init__(self, service: str = "signer-service") -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "timestamp": rfc3339_utc(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "service": self.service,
        }
        extra = {k: v for k, v in vars(record).items()
                 if k not in _STANDARD and not k.startswith("_")}
        fields = extra.pop("fields", None)
        if isinstance(fields, dict):
            extra.update(fields)
        for key, value in extra.items():
            line.setdefault(key, value)
        if record.exc_info and record.exc_info[0] is not None:
            # The exception type only: messages of third-party errors are not vetted for secrets.
            line["error"] = record.exc_info[0].__name__
        return json.dumps(line, separators=(",", ":"), default=str)


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def log_event(msg: str, level: int = logging.INFO, **fields: Any) -> None:
    LOGGER.log(level, msg, extra={"fields": fields})


def now() -> float:
    return time.time()
