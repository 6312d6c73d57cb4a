"""Append-only audit log, keyed: one JSON line per signing decision.

Each record carries `prev_hash` (the previous record's `hash`) and its own `hash`, the
HMAC-SHA256 of its canonical JSON (without `hash`) under the *chain key*. The chain key comes
from the signing backend (derived by the HSM from a non-extractable HMAC key, or from the hot
key's seed), never from anything on the audit disk: whoever can write the file cannot recompute
a valid chain, so edits, rechaining, deleted first records and forged appends all show.

Truncation cannot be seen in a chain, so the head is checkpointed outside the log:
- a checkpoint file beside it (`<log>.checkpoint`: records, head, MAC), rewritten after a
  flushed batch at most every 0.1 s and on close; a log shorter than its checkpoint, or
  different at the checkpoint, is refused;
- for PKCS#11, the same checkpoint on the token every few seconds (survives deleting both files);
- published: the `signer_audit_records` / `signer_audit_head_prefix` metrics and the
  GetAuditCheckpoint RPC (with its MAC), for a monitor to keep and compare later.

A torn final line (a write cut short: no newline) is moved aside on open with a `repair`
record; anything else that does not verify fails closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GENESIS = "0" * 64
# The checkpoint file is rewritten (write, fsync, rename) at most this often; between two
# writes it lags the log by less than this, which weakens no check: a log may be longer than
# its checkpoint, never shorter.
CHECKPOINT_EVERY_SECONDS = 0.1
CHAIN_KEY_CONTEXT = b"stellar-payouts signer audit chain v1"


class AuditError(Exception):
    """The log on disk does not verify; the message names the first bad line and why."""


class ChainKey:
    """HMAC-SHA256 under the audit chain key. Held in memory by the signer process only."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 32:
            raise ValueError("audit chain key must be at least 32 bytes")
        self._secret = secret

    def mac(self, data: bytes) -> str:
        return hmac.new(self._secret, data, hashlib.sha256).hexdigest()

    @property
    def key_id(self) -> str:
        """A fingerprint that names the key without revealing it."""
        return self.mac(b"audit key id")[:16]


def canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def record_hash(key: ChainKey, record: dict[str, Any]) -> str:
    return key.mac(canonical({k: v for k, v in record.items() if k != "hash"}))


@dataclass(frozen=True)
class Checkpoint:
    records: int
    head: str

    def mac(self, key: ChainKey) -> str:
        return key.mac(f"checkpoint|{self.records}|{self.head}".encode())

    def to_json(self, key: ChainKey) -> bytes:
        return canonical({"records": self.records, "head": self.head, "mac": self.mac(key)})

    @classmethod
    def from_json(cls, raw: bytes, key: ChainKey) -> Checkpoint:
        try:
            body = json.loads(raw)
            cp = cls(int(body["records"]), str(body["head"]))
            valid = hmac.compare_digest(str(body["mac"]), cp.mac(key))
        except (ValueError, KeyError, TypeError):
            raise AuditError("audit checkpoint is not readable") from None
        if not valid:
            raise AuditError("audit checkpoint MAC does not verify (edited, or another key)")
        return cp


def checkpoint_path(log: Path) -> Path:
    return log.with_name(log.name + ".checkpoint")


@dataclass
class VerifyResult:
    records: int
    first_bad_line: int | None
    reason: str
    last_hash: str
    good_bytes: int = 0  # length of the verified prefix (whole lines)
    torn_tail: bytes = b""  # a final fragment without newline, not counted
    verified: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.first_bad_line is None


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def read_records(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    """(line number, record or None, reason) for every complete line of the log."""
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.endswith(b"\n"):
                return  # a torn final record is not a record
            record = _parse(raw)
            yield number, record, "" if record is not None else "not a JSON object"


def verify_bytes(
    data: bytes, key: ChainKey | None, checkpoints: list[Checkpoint]
) -> VerifyResult:
    """The chain, line by line, then each checkpoint against it. Without the key only the
    links and the sequence are checked (anyone can recompute those: not tamper evidence)."""
    lines = data.split(b"\n")
    torn = lines.pop()  # b"" when the data ends with a newline
    prev, count, offset = GENESIS, 0, 0
    heads: dict[int, str] = {0: GENESIS}
    verified: list[dict[str, Any]] = []
    wanted = {cp.records for cp in checkpoints}

    def bad(number: int, reason: str) -> VerifyResult:
        return VerifyResult(count, number, reason, prev, offset, b"", verified)

    for number, raw in enumerate(lines, start=1):
        record = _parse(raw)
        if record is None:
            return bad(number, "not a JSON object")
        if record.get("prev_hash") != prev:
            return bad(number, "prev_hash does not match the line before")
        if record.get("seq") != count + 1:
            return bad(number, f"seq is {str(record.get('seq'))[:20]}, expected {count + 1}")
        if key is not None and \
                not hmac.compare_digest(str(record.get("hash")), record_hash(key, record)):
            return bad(number, "hash is not this log's keyed MAC of the record "
                               "(edited, rechained or forged)")
        prev, count, offset = record["hash"], count + 1, offset + len(raw) + 1
        verified.append(record)
        if count in wanted:
            heads[count] = prev
    for cp in checkpoints:
        if cp.records > count:
            return VerifyResult(count, count + 1, f"truncated: the checkpoint counts {cp.records}"
                                f" records, the log has {count}", prev, offset, torn, verified)
        if heads.get(cp.records) != cp.head:
            return VerifyResult(count, cp.records, f"record {cp.records} is not the "
                                "checkpointed head (rewritten)", prev, offset, torn, verified)
    return VerifyResult(count, None, "ok", prev, offset, torn, verified)


def read_checkpoint(log: Path, key: ChainKey) -> Checkpoint | None:
    try:
        raw = checkpoint_path(log).read_bytes()
    except FileNotFoundError:
        return None
    return Checkpoint.from_json(raw, key)


def verify_log(
    path: Path, key: ChainKey | None = None, extra: list[Checkpoint] | None = None
) -> VerifyResult:
    """What `signerctl audit verify` and the signer's start both run (with the key; without
    it, structure only)."""
    data = path.read_bytes() if path.exists() else b""
    checkpoints = list(extra or [])
    if key is None:
        return verify_bytes(data, None, [])
    file_cp = read_checkpoint(path, key)
    if file_cp is not None:
        checkpoints.append(file_cp)
    elif b"\n" in data:  # a complete record exists, so a checkpoint was written after it
        return VerifyResult(0, 1, f"checkpoint file {checkpoint_path(path).name} is missing "
                                  "beside a non-empty log", GENESIS)
    return verify_bytes(data, key, checkpoints)


# Called with the new checkpoint after every durable batch (metrics, HSM copy).
CheckpointListener = Callable[[Checkpoint], None]


class AuditLog:
    """The signer's writer. A record is fsync'd before `append` returns, so before the caller
    may hand out a signature. Concurrent appends share one write + fsync (group commit).
    Records are chained when written, so a failed write leaves no gap: the file is cut back to
    its last good length and the next batch continues the chain from there."""

    def __init__(self, path: Path, key: ChainKey,
                 on_checkpoint: CheckpointListener | None = None) -> None:
        self.path = path
        self.key = key
        self._on_checkpoint = on_checkpoint
        self._prev = GENESIS
        self._seq = 0
        self._size = 0
        self._fd = -1
        self._pending: list[tuple[dict[str, Any], asyncio.Future[dict[str, Any]]]] = []
        self._writer: asyncio.Task[None] | None = None
        self.repairs: list[str] = []
        self._checkpoint_at = 0.0
        self._checkpoint_lock = threading.Lock()

    def open(self, anchor: Checkpoint | None = None) -> list[dict[str, Any]]:
        """Verify the existing log against its checkpoints (file, and `anchor` from the HSM),
        repair a torn final line, open for appending; return the verified records."""
        result = verify_log(self.path, self.key, [anchor] if anchor else [])
        if not result.ok:
            raise AuditError(f"audit log {self.path} does not verify at line "
                             f"{result.first_bad_line}: {result.reason}")
        self._prev, self._seq, self._size = result.last_hash, result.records, result.good_bytes
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        records = result.verified
        if result.torn_tail:
            aside = self.path.with_name(f"{self.path.name}.torn-{int(time.time())}")
            aside.write_bytes(result.torn_tail)
            os.ftruncate(self._fd, result.good_bytes)
            records.append(self._write_now({
                "kind": "repair", "decision": "repair", "rule": "torn_record",
                "detail": f"{len(result.torn_tail)} bytes without newline moved to {aside.name}",
            }))
            self.repairs.append(aside.name)
        self._publish()
        return records

    @property
    def last_hash(self) -> str:
        return self._prev

    @property
    def seq(self) -> int:
        return self._seq

    @property
    def checkpoint(self) -> Checkpoint:
        return Checkpoint(self._seq, self._prev)

    def _chain(self, fields: dict[str, Any], seq: int, prev: str) -> dict[str, Any]:
        record = {"time": time.time(), **fields, "seq": seq, "prev_hash": prev}
        record["hash"] = record_hash(self.key, record)
        return record

    def _write_now(self, fields: dict[str, Any]) -> dict[str, Any]:
        record = self._chain(fields, self._seq + 1, self._prev)
        self._write_batch([record])
        self._store_checkpoint()
        return record

    async def append(self, fields: dict[str, Any]) -> dict[str, Any]:
        done: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending.append(({"time": time.time(), **fields}, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._flush())
        return await done

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                records = await asyncio.to_thread(self._chain_and_write,
                                                  [f for f, _ in batch])
            except Exception as err:  # noqa: BLE001 - no caller may wait forever
                errno = err.errno if isinstance(err, OSError) else None
                for _, done in batch:
                    if not done.done():
                        done.set_exception(OSError(errno, "audit write failed"))
                continue
            for (_, done), record in zip(batch, records, strict=True):
                if not done.done():
                    done.set_result(record)
            self._publish()
            if time.monotonic() - self._checkpoint_at >= CHECKPOINT_EVERY_SECONDS:
                # After the callers have their records: the checkpoint may lag, never lead.
                await asyncio.to_thread(self._store_checkpoint)

    def _chain_and_write(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        records, seq, prev = [], self._seq, self._prev
        for fields in batch:
            seq += 1
            record = self._chain(fields, seq, prev)
            prev = record["hash"]
            records.append(record)
        self._write_batch(records)
        return records

    def _write_batch(self, records: list[dict[str, Any]]) -> None:
        """Write, fsync, then advance the chain; on any failure cut the file back to the last
        good length (also retried first thing next time) and leave the chain where it was."""
        data = b"".join(canonical(r) + b"\n" for r in records)
        try:
            if os.fstat(self._fd).st_size != self._size:
                os.ftruncate(self._fd, self._size)  # a cut left over from a failed write
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            os.fsync(self._fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._size)
            raise
        self._size += len(data)
        self._seq, self._prev = records[-1]["seq"], records[-1]["hash"]

    def _store_checkpoint(self) -> None:
        # Best effort: a checkpoint that lags the log is still a sound lower bound. One writer
        # at a time (the flush task's thread and close() may meet).
        self._checkpoint_at = time.monotonic()
        target = checkpoint_path(self.path)
        tmp = target.with_name(target.name + ".tmp")
        with self._checkpoint_lock, contextlib.suppress(OSError):
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
            try:
                os.write(fd, self.checkpoint.to_json(self.key))
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, target)

    def _publish(self) -> None:
        if self._on_checkpoint is not None:
            self._on_checkpoint(self.checkpoint)

    def close(self) -> None:
        if self._fd >= 0 and self._seq:
            self._store_checkpoint()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
