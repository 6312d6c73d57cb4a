"""Append-only, hash-chained audit log: one JSON line per signing decision.

Each record carries `prev_hash` (the previous record's `hash`) and its own `hash`, the SHA-256 of
its canonical JSON without the `hash` field. Editing, deleting, inserting or reordering a line
breaks the chain at that line. Cutting lines off the end cannot be seen from the file alone; the
`seq` counter and the last hash (logged at start-up) let an operator compare with a copy.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GENESIS = "0" * 64


class AuditError(Exception):
    """The log on disk is not a valid chain; the message names the first bad line."""


def canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def record_hash(record: dict[str, Any]) -> str:
    return hashlib.sha256(canonical({k: v for k, v in record.items() if k != "hash"})).hexdigest()


@dataclass(frozen=True)
class VerifyResult:
    records: int
    first_bad_line: int | None
    reason: str
    last_hash: str

    @property
    def ok(self) -> bool:
        return self.first_bad_line is None


def read_records(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    """(line number, record or None, reason) for every line of the log."""
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                record = json.loads(raw)
            except ValueError:
                yield number, None, "not a JSON object"
                continue
            if not isinstance(record, dict):
                yield number, None, "not a JSON object"
                continue
            yield number, record, ""


def verify_log(path: Path) -> VerifyResult:
    prev, count = GENESIS, 0
    for number, record, reason in read_records(path):
        if record is None:
            return VerifyResult(count, number, reason, prev)
        if record.get("prev_hash") != prev:
            return VerifyResult(count, number, "prev_hash does not match the line before", prev)
        if record.get("seq") != count + 1:
            reason = f"seq is {record.get('seq')}, expected {count + 1}"
            return VerifyResult(count, number, reason, prev)
        if record.get("hash") != record_hash(record):
            return VerifyResult(count, number, "hash does not match the record's content", prev)
        prev, count = record["hash"], count + 1
    return VerifyResult(count, None, "ok", prev)


class AuditLog:
    """The signer's writer. A record is fsync'd before `append` returns, so before the caller
    may hand out a signature. Concurrent appends share one write + fsync (group commit)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._prev = GENESIS
        self._seq = 0
        self._fd = -1
        self._pending: list[tuple[bytes, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._failed = False

    def open(self) -> list[dict[str, Any]]:
        """Verify the existing chain, open for appending, return the existing records."""
        records: list[dict[str, Any]] = []
        if self.path.exists():
            result = verify_log(self.path)
            if not result.ok:
                raise AuditError(
                    f"audit log {self.path} is broken at line {result.first_bad_line}: "
                    f"{result.reason}"
                )
            records = [r for _, r, _ in read_records(self.path) if r is not None]
            self._prev, self._seq = result.last_hash, result.records
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        return records

    @property
    def last_hash(self) -> str:
        return self._prev

    @property
    def seq(self) -> int:
        return self._seq

    async def append(self, fields: dict[str, Any]) -> dict[str, Any]:
        if self._failed:
            # A record that never reached the disk sits in the chain: fail closed from now on.
            raise OSError("audit log failed earlier; restart the signer")
        # No await between chaining and queueing: queue order is chain order.
        record = {**fields, "seq": self._seq + 1, "time": time.time(), "prev_hash": self._prev}
        record["hash"] = record_hash(record)
        self._prev, self._seq = record["hash"], record["seq"]
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((canonical(record) + b"\n", done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._flush())
        await done
        return record

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await asyncio.to_thread(self._write, b"".join(line for line, _ in batch))
            except OSError as err:
                self._failed = True
                for _, done in batch:
                    done.set_exception(OSError(err.errno, "audit write failed"))
                continue
            for _, done in batch:
                done.set_result(None)

    def _write(self, data: bytes) -> None:
        written = os.write(self._fd, data)
        if written != len(data):
            raise OSError(f"short write to audit log ({written} of {len(data)} bytes)")
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
