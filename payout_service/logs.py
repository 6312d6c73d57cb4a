"""Structured logs: one JSON object a line, with ids, never secrets."""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any

# LogRecord attributes that are not "extra" fields.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def rfc3339_utc(created: float) -> str:
    """2026-01-31T12:00:00.123Z: RFC 3339, UTC, milliseconds (the signer's logs match)."""
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


class JsonFormatter(logging.Formatter):
    """One JSON object a line: timestamp, level, logger, message, service, then the record's
    extra fields flat at the top level. signer_service/logs.py writes the same shape."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": rfc3339_utc(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "service": self.service,
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and key not in entry:
                entry[key] = value if isinstance(value, int | float | bool | None) else str(value)
        if record.exc_info and record.exc_info[0] is not None:
            # A caller's short "error" field stays searchable; the stack goes beside it.
            entry.setdefault("error", record.exc_info[0].__name__)
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, separators=(",", ":"))


def quiet_grpc_core() -> None:
    """gRPC core (C++, absl logging) writes plain-text lines such as "I1129 ... Handshake
    failed" straight to stderr, into the JSON stream. Off unless GRPC_VERBOSITY is set (set
    it to ERROR or DEBUG to debug gRPC itself); the outcome of every call is logged and
    counted here anyway. gRPC reads it when it is first imported: payout_service/__init__
    calls this before any module imports grpc."""
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")


def configure_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("asyncio").setLevel(logging.WARNING)
