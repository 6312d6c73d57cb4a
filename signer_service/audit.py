"""Append-only audit log, keyed: one line per signing decision (format: audit_format.py).

Each record carries `prev_hash` (the previous record's `hash`) and its own `hash`, a MAC of
its line under the *chain key*. The chain key comes from the signing backend (derived by
the HSM from a non-extractable HMAC key, or from the hot key's seed), never from anything on
the audit disk: whoever can write the file cannot recompute a valid chain, so edits,
rechaining, deleted first records and forged appends all show.

Truncation cannot be seen in a chain, so the head is checkpointed outside the log:
- a checkpoint file beside it (`<log>.checkpoint`: records, head, MAC), rewritten in place
  with every durable append, after the log's fsync and before any caller has its answer:
  it matches the log's head whenever nothing is being written;
- for PKCS#11, the same checkpoint on the token every few seconds (survives deleting both files);
- published: the `signer_audit_records` / `signer_audit_head_prefix` metrics and the
  GetAuditCheckpoint RPC (with its MAC), for a monitor to keep and compare later.

Every file is opened through audit_files.AuditDir (no symbolic or hard links, no FIFOs,
fresh names created exclusively). A torn final line (a write cut short: no newline) is
moved aside on open with a `repair` record; anything else that does not verify fails closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from signer_service.audit_files import AuditDir, AuditFileError
from signer_service.audit_format import (
    CHECKPOINT_SIZE,
    GENESIS,
    ChainKey,
    Checkpoint,
    CheckpointUnreadable,
    read_line,
    seal,
)

__all__ = ["GENESIS", "AuditError", "AuditLog", "ChainKey", "Checkpoint", "VerifyResult",
           "checkpoint_path", "read_records", "verify_bytes", "verify_log"]


class AuditError(Exception):
    """The log on disk does not verify; the message names the first bad line and why."""


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


def read_records(path: Path) -> list[tuple[int, dict[str, Any] | None, str]]:
    """(line number, record or None, reason) for every complete line of the log, MACs not
    checked (no key): for tests and tools that read what the signer decided."""
    data = AuditDir(path.parent, check_owner=False).read(path.name) or b""
    lines = data.split(b"\n")[:-1]
    out = []
    for number, raw in enumerate(lines, start=1):
        line = read_line(raw, None)
        out.append((number, line.record, line.reason))
    return out


def verify_bytes(
    data: bytes, key: ChainKey | None, checkpoints: list[Checkpoint]
) -> VerifyResult:
    """The chain, line by line, then each checkpoint against it. Without the key only the
    form, the links and the sequence are checked (anyone can recompute those: not tamper
    evidence)."""
    lines = data.split(b"\n")
    torn = lines.pop()  # b"" when the data ends with a newline
    prev, count, offset, upgraded = GENESIS, 0, 0, False
    heads: dict[int, str] = {0: GENESIS}
    verified: list[dict[str, Any]] = []
    wanted = {cp.records for cp in checkpoints}

    def bad(number: int, reason: str) -> VerifyResult:
        return VerifyResult(count, number, reason, prev, offset, b"", verified)

    for number, raw in enumerate(lines, start=1):
        line = read_line(raw, key)
        record = line.record
        if record is None:
            return bad(number, line.reason)
        if line.legacy and upgraded:
            return bad(number, "a line of the older format after the current one")
        upgraded = upgraded or not line.legacy
        if record.get("prev_hash") != prev:
            return bad(number, "prev_hash does not match the line before")
        if record.get("seq") != count + 1:
            return bad(number, f"seq is {str(record.get('seq'))[:20]}, expected {count + 1}")
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


def _verify_in(folder: AuditDir, name: str, key: ChainKey | None,
               extra: list[Checkpoint]) -> VerifyResult:
    try:
        data = folder.read(name) or b""
        checkpoints = list(extra)
        if key is None:
            return verify_bytes(data, None, [])
        raw = folder.read(checkpoint_path(Path(name)).name)
        if raw is not None:
            checkpoints.append(Checkpoint.from_json(raw, key))
        elif b"\n" in data:  # a complete record exists, so a checkpoint was written after it
            return VerifyResult(0, 1, f"checkpoint file {checkpoint_path(Path(name)).name} is "
                                      "missing beside a non-empty log", GENESIS)
    except (AuditFileError, CheckpointUnreadable) as err:
        raise AuditError(str(err)) from None
    return verify_bytes(data, key, checkpoints)


def verify_log(
    path: Path, key: ChainKey | None = None, extra: list[Checkpoint] | None = None
) -> VerifyResult:
    """What `signerctl audit verify` and the signer's start both run (with the key; without
    it, structure only). Reads copies anywhere: no ownership check of the folder."""
    folder = AuditDir(path.parent, check_owner=False)
    try:
        return _verify_in(folder, path.name, key, list(extra or []))
    finally:
        folder.close()


# Called with the new checkpoint after every durable batch (metrics, HSM copy).
CheckpointListener = Callable[[Checkpoint], None]


class AuditLog:
    """The signer's writer. A record is fsync'd, and the checkpoint file rewritten to count
    it, before `append` returns, so before the caller may hand out a signature. Concurrent
    appends share one write + fsync (group commit). Records are chained when written, so a
    failed write leaves no gap: the file is cut back to its last good length and the next
    batch continues the chain from there."""

    def __init__(self, path: Path, key: ChainKey,
                 on_checkpoint: CheckpointListener | None = None) -> None:
        self.path = path
        self.key = key
        self._on_checkpoint = on_checkpoint
        self._prev = GENESIS
        self._seq = 0
        self._size = 0
        self._fd = -1
        self._checkpoint_fd = -1
        self._dir: AuditDir | None = None
        self._pending: list[tuple[dict[str, Any], asyncio.Future[dict[str, Any]]]] = []
        self._writer: asyncio.Task[None] | None = None
        self.repairs: list[str] = []
        self._io_lock = threading.Lock()

    def open(self, anchor: Checkpoint | None = None) -> list[dict[str, Any]]:
        """Check the audit directory, verify the existing log against its checkpoints (file,
        and `anchor` from the HSM), repair a torn final line, open for appending; return the
        verified records. AuditDirectoryError: the directory is unsafe; AuditError: the files
        do not verify."""
        self._dir = AuditDir(self.path.parent, check_owner=True)
        result = _verify_in(self._dir, self.path.name, self.key, [anchor] if anchor else [])
        if not result.ok:
            raise AuditError(f"audit log {self.path} does not verify at line "
                             f"{result.first_bad_line}: {result.reason}")
        self._prev, self._seq, self._size = result.last_hash, result.records, result.good_bytes
        try:
            self._fd = self._dir.open_for_writing(self.path.name, append=True)
            self._checkpoint_fd = self._dir.open_for_writing(
                checkpoint_path(self.path).name, append=False)
        except AuditFileError as err:
            raise AuditError(str(err)) from None
        records = result.verified
        if result.torn_tail:
            aside = self._dir.create_new(f"{self.path.name}.torn-{int(time.time())}",
                                         result.torn_tail)
            os.ftruncate(self._fd, result.good_bytes)
            records.append(self._write_now({
                "kind": "repair", "decision": "repair", "rule": "torn_record",
                "detail": f"{len(result.torn_tail)} bytes without newline moved to {aside}",
            }))
            self.repairs.append(aside)
        with self._io_lock:
            self._store_checkpoint()
            os.ftruncate(self._checkpoint_fd, CHECKPOINT_SIZE)  # nothing after the slot
            os.fsync(self._checkpoint_fd)
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

    def _chain(self, fields: dict[str, Any], seq: int, prev: str
               ) -> tuple[dict[str, Any], bytes]:
        return seal(self.key, {"time": time.time(), **fields, "seq": seq, "prev_hash": prev})

    def _write_now(self, fields: dict[str, Any]) -> dict[str, Any]:
        return self._chain_and_write([fields])[0]

    async def append(self, fields: dict[str, Any]) -> dict[str, Any]:
        return await self.submit(fields)

    def submit(self, fields: dict[str, Any]) -> asyncio.Future[dict[str, Any]]:
        """Queue a record: the future is its written record (or the write's OSError). It is
        written whether or not anyone still waits for it."""
        done: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending.append(({"time": time.time(), **fields}, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._flush())
        return done

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

    def _chain_and_write(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        records, lines, seq, prev = [], [], self._seq, self._prev
        for fields in batch:
            seq += 1
            record, line = self._chain(fields, seq, prev)
            prev = record["hash"]
            records.append(record)
            lines.append(line)
        with self._io_lock:
            self._write_batch(b"".join(lines), seq, prev)
        return records

    def _write_batch(self, data: bytes, seq: int, head: str) -> None:
        """Write, fsync, advance the chain, then the checkpoint (so it never leads the log);
        on a failed log write cut the file back to the last good length (also retried first
        thing next time) and leave the chain where it was."""
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
        self._seq, self._prev = seq, head
        # The records are durable: a failure here still fails the callers (no answer before
        # the checkpoint counts them); the next batch rewrites the checkpoint.
        self._store_checkpoint()

    def _store_checkpoint(self) -> None:
        slot = self.checkpoint.to_slot(self.key)
        if os.pwrite(self._checkpoint_fd, slot, 0) != len(slot):
            raise OSError("short checkpoint write")
        os.fdatasync(self._checkpoint_fd)

    def _publish(self) -> None:
        if self._on_checkpoint is not None:
            self._on_checkpoint(self.checkpoint)

    def close(self) -> None:
        with self._io_lock:
            for fd in (self._fd, self._checkpoint_fd):
                if fd >= 0:
                    os.close(fd)
            self._fd = self._checkpoint_fd = -1
            if self._dir is not None:
                self._dir.close()
