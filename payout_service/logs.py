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


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value if isinstance(value, int | float | bool | None) else str(value)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, separators=(",", ":"))


class ServiceField(logging.Filter):
    """Stamps every record with the service name, for logs shipped from several services."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        return True


def quiet_grpc_core() -> None:
    """gRPC core (C++, absl logging) writes plain-text lines such as "I1129 ... Handshake
    failed" straight to stderr, into the JSON stream. Off unless GRPC_VERBOSITY is set (set
    it to ERROR or DEBUG to debug gRPC itself); the outcome of every call is logged and
    counted here anyway. gRPC reads it when it is first imported: payout_service/__init__
    calls this before any module imports grpc."""
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")


def configure_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ServiceField(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("asyncio").setLevel(logging.WARNING)
