"""PKCS#11 backend for signer-service: the token session lives in a signing process of its own.

The signer's event loop queues digests; everything queued in one loop turn goes to the
signing process as one frame, and at most two frames are in flight, so the token always has
the next batch waiting while the loop reads the previous answer. No thread of the signer
touches PKCS#11, and the event loop never blocks on the pipe (asyncio pipe transports).

The PIN goes to the signing process in its first request over the pipe, never in argv or
the environment; this class does not keep it. The signing process verifies each signature
against the key's public half before returning it (backends/pkcs11.py, `sign_verified`).

If the signing process exits, every pending and later signature fails with BackendError
(the signer answers UNAVAILABLE and keeps no decision that was not recorded) and `exited`
is set: signer-service then stops, for its supervisor to restart it with the PIN.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from signer_service.backends import BackendError
from signer_service.backends.pkcs11_worker import (
    HEADER,
    MAX_FRAME,
    PipeClosed,
    decode_body,
    encode_frame,
    read_frame,
    write_all,
)
from signer_service.logs import log_event

# Per frame: enough to keep the token busy for tens of milliseconds, small enough that the
# answer to the first signatures of a burst does not wait for the whole burst.
MAX_SIGN_BATCH = 128
MAX_FRAMES_IN_FLIGHT = 2
WORKER_MODULE = "signer_service.backends.pkcs11_worker"

Reply = dict[str, Any]


def child_environment(env: Mapping[str, str], secret_names: Iterable[str]) -> dict[str, str]:
    """The signer's environment without its secrets: the PIN variable, hot-key seed
    variables and anything named PAYOUTS_SIGNER_* / PAYOUT_HOT_* (the module may still need
    its own settings, e.g. SOFTHSM2_CONF)."""
    drop = set(secret_names)
    return {k: v for k, v in env.items()
            if k not in drop and not k.startswith(("PAYOUTS_SIGNER_", "PAYOUT_HOT_"))}


class _Replies(asyncio.Protocol):
    def __init__(self, owner: Pkcs11Process) -> None:
        self._owner = owner
        self._buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= HEADER.size:
            (size,) = HEADER.unpack_from(self._buffer)
            if size > MAX_FRAME:
                self._owner._failed("the signing process sent an oversized frame")
                return
            if len(self._buffer) < HEADER.size + size:
                return
            body = bytes(self._buffer[HEADER.size:HEADER.size + size])
            del self._buffer[:HEADER.size + size]
            try:
                reply = decode_body(body)
            except (ValueError, PipeClosed):
                self._owner._failed("the signing process sent an unreadable frame")
                return
            self._owner._reply(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner._failed("the signing process exited")


class Pkcs11Process:
    """A Backend (signs, keys the audit log, keeps the HSM checkpoint) over the pipe."""

    def __init__(self, module: str, token_label: str, pin: str, labels: Mapping[str, str],
                 audit_label: str, env: Mapping[str, str], secret_env: Iterable[str] = (),
                 instance: str = "") -> None:
        self._proc = subprocess.Popen(  # noqa: S603 - our own module, fixed argv
            [sys.executable, "-m", WORKER_MODULE], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, env=child_environment(env, secret_env), bufsize=0,
            close_fds=True,
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._in, self._out = self._proc.stdin, self._proc.stdout
        self._handlers: deque[Callable[[Reply | BackendError], None]] = deque()
        self._queue: list[tuple[str, bytes, asyncio.Future[bytes]]] = []
        self._writer: asyncio.WriteTransport | None = None
        self._reader: asyncio.ReadTransport | None = None
        self._attaching: asyncio.Future[None] | None = None
        self._send_scheduled = False
        self._dead: str | None = None
        self.exited = asyncio.Event()  # set when the signing process is lost
        try:
            reply = self._call_blocking({
                "op": "open", "module": module, "token_label": token_label, "pin": pin,
                "labels": dict(labels), "audit_label": audit_label, "instance": instance,
            })
        except BaseException:
            self.close()
            raise
        self._public = {k: bytes.fromhex(v) for k, v in reply["public_keys"].items()}
        self._scanned: frozenset[str] = frozenset()  # key ids the last channel-key scan found

    # ------------------------------------------------------------ start-up (blocking)

    def _call_blocking(self, request: dict[str, Any]) -> Reply:
        """One request and its reply, before the event loop takes the pipes over."""
        if self._writer is not None:
            raise RuntimeError("blocking call after the event loop attached the pipes")
        try:
            write_all(self._in.fileno(), encode_frame(request))
            reply = read_frame(self._out.fileno())
        except (OSError, PipeClosed, ValueError):
            raise BackendError("the PKCS#11 signing process did not answer") from None
        if "error" in reply:
            raise BackendError(str(reply["error"]))
        return reply

    def public_key(self, key_id: str) -> bytes:
        try:
            return self._public[key_id]
        except KeyError:
            raise BackendError(f"no PKCS#11 key {key_id!r}") from None

    def audit_chain_key(self, key_id: str) -> bytes:
        return bytes.fromhex(self._call_blocking({"op": "chain_key", "key_id": key_id})["secret"])

    def load_checkpoint(self) -> tuple[int, str] | None:
        stored = self._call_blocking({"op": "load_checkpoint"})["checkpoint"]
        return (int(stored[0]), str(stored[1])) if stored else None

    # ------------------------------------------------------------ event loop

    async def _attach(self) -> None:
        # Once, however many first calls arrive together: one transport per pipe.
        if self._attaching is None:
            self._attaching = asyncio.ensure_future(self._connect_pipes())
        await asyncio.shield(self._attaching)

    async def _connect_pipes(self) -> None:
        if self._dead is not None:
            return
        loop = asyncio.get_running_loop()
        self._reader, _ = await loop.connect_read_pipe(lambda: _Replies(self), self._out)
        self._writer, _ = await loop.connect_write_pipe(asyncio.Protocol, self._in)

    async def _request(self, request: dict[str, Any]) -> Reply:
        await self._attach()
        done: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()

        def settle(outcome: Reply | BackendError) -> None:
            if done.done():
                return
            if isinstance(outcome, BackendError):
                done.set_exception(outcome)
            elif "error" in outcome:
                done.set_exception(BackendError(str(outcome["error"])))
            else:
                done.set_result(outcome)

        self._send(request, settle)
        return await done

    def _send(self, request: dict[str, Any], handler: Callable[[Reply | BackendError], None]
              ) -> None:
        if self._dead is not None or self._writer is None:
            handler(BackendError(self._dead or "the signing process is not attached"))
            return
        self._handlers.append(handler)
        self._writer.write(encode_frame(request))

    async def sign(self, key_id: str, data: bytes) -> bytes:
        await self._attach()
        if self._dead is not None:
            raise BackendError(self._dead)
        done: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._queue.append((key_id, data, done))
        self._schedule_send()
        return await done

    def _schedule_send(self) -> None:
        # Later in this loop turn: every signature queued meanwhile rides in the same frame.
        if self._queue and not self._send_scheduled and \
                len(self._handlers) < MAX_FRAMES_IN_FLIGHT:
            self._send_scheduled = True
            asyncio.get_running_loop().call_soon(self._send_signatures)

    def _send_signatures(self) -> None:
        self._send_scheduled = False
        batch, self._queue = self._queue[:MAX_SIGN_BATCH], self._queue[MAX_SIGN_BATCH:]
        if not batch:
            return

        def deliver(outcome: Reply | BackendError) -> None:
            results: list[Any] = (
                [] if isinstance(outcome, BackendError) else list(outcome.get("results", [])))
            for index, (_, _, done) in enumerate(batch):
                if done.done():
                    continue  # the caller went away (cancelled RPC)
                if isinstance(outcome, BackendError):
                    done.set_exception(outcome)
                elif index >= len(results) or "error" in outcome:
                    done.set_exception(BackendError(str(outcome.get("error", "no result"))))
                elif results[index][0] is None:
                    done.set_exception(BackendError(str(results[index][1])))
                else:
                    done.set_result(bytes.fromhex(results[index][0]))

        self._send({"op": "sign", "items": [[k, d.hex()] for k, d, _ in batch]}, deliver)
        self._schedule_send()

    def _reply(self, reply: Reply) -> None:
        if not self._handlers:
            self._failed("the signing process answered a request it was not sent")
            return
        self._handlers.popleft()(reply)
        self._schedule_send()

    def _failed(self, reason: str) -> None:
        if self._dead is not None:
            return
        self._dead = reason
        log_event("pkcs11 signing process lost", logging.ERROR, reason=reason)
        error = BackendError(reason)
        while self._handlers:
            self._handlers.popleft()(error)
        queued, self._queue = self._queue, []
        for _, _, done in queued:
            if not done.done():
                done.set_exception(error)
        self.exited.set()

    async def store_checkpoint(self, records: int, head: str) -> None:
        await self._request({"op": "store_checkpoint", "records": records, "head": head})

    async def refresh_keys(self, labels: Mapping[str, str]) -> dict[str, bytes]:
        """(Re)load the key pairs `labels` names (key id -> token label) in the signing
        process; returns the raw public key of every key it now holds. The one call a key
        registry makes to pick up keys generated on the token since start."""
        reply = await self._request({"op": "refresh_keys", "labels": dict(labels)})
        self._public = {k: bytes.fromhex(v) for k, v in reply["public_keys"].items()}
        return dict(self._public)

    async def scan_channel_keys(self, prefix: str) -> dict[str, bytes]:
        """[channel_keys]: the signing process re-lists the token's key pairs labelled
        prefix… (backends/pkcs11.py, scan_channel_keys_blocking) and returns them; a key
        gone from the token leaves public_key() here too."""
        reply = await self._request({"op": "scan_channel_keys", "prefix": prefix})
        found = {k: bytes.fromhex(v) for k, v in reply["public_keys"].items()}
        kept = {k: v for k, v in self._public.items() if k not in self._scanned}
        self._public, self._scanned = {**kept, **found}, frozenset(found)
        return found

    def close(self) -> None:
        """Closing the pipe ends the signing process (it closes its session first)."""
        if self._dead is None:
            self._dead = "the signing backend is closed"
        # The pipes first, directly: a transport closes its pipe only in a later loop turn,
        # and the signing process must see end-of-file now.
        for pipe in (self._in, self._out):
            if not pipe.closed:
                pipe.close()
        for transport in (self._writer, self._reader):
            if transport is not None:
                transport.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()

