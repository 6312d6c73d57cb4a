"""The PKCS#11 signing process: holds the token session, signs what the signer sends it.

Run by `Pkcs11Process` as `python -m signer_service.backends.pkcs11_worker`, talking over its
stdin/stdout pipes in frames (4-byte big-endian length + a JSON object), one reply per request,
in order. The first request opens the token and carries the PIN, so the PIN is never in this
process's argv or environment (the parent drops the PIN's variable from the environment it
passes). Requests are handled one at a time on one thread: SoftHSM via python-pkcs11 must see
no concurrent calls (see backends/pkcs11.py).

Why a process: in the signer's own process the signing thread had to take the GIL back after
every C_SignInit / C_Sign / verify while the event loop thread held it, so the token sat idle
most of the time. Here the token's thread has its interpreter to itself and the signer's event
loop only reads and writes one frame per batch.

SIGINT / SIGTERM are ignored: the process ends when the signer closes the pipe (after storing
its last audit checkpoint on the token, which needs this process alive), or with it.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import struct
import sys
from typing import Any

from signer_service.backends import BackendError

HEADER = struct.Struct(">I")
MAX_FRAME = 16 * 1024 * 1024


class PipeClosed(Exception):
    """The other end closed the pipe (or sent a frame that is not one)."""


def encode_frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode()
    return HEADER.pack(len(body)) + body


def decode_body(body: bytes) -> dict[str, Any]:
    message = json.loads(body)
    if not isinstance(message, dict):
        raise PipeClosed("a frame is not a JSON object")
    return message


def read_exact(fd: int, size: int) -> bytes:
    chunks, missing = [], size
    while missing:
        chunk = os.read(fd, missing)
        if not chunk:
            raise PipeClosed("pipe closed")
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int) -> dict[str, Any]:
    (size,) = HEADER.unpack(read_exact(fd, HEADER.size))
    if size > MAX_FRAME:
        raise PipeClosed(f"frame of {size} bytes")
    return decode_body(read_exact(fd, size))


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class _Token:
    """Dispatches the requests after `open` to the in-process backend."""

    def __init__(self, backend: Any) -> None:
        self._backend = backend

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "sign":
            return {"results": [self._sign(str(key_id), digest)
                                for key_id, digest in request["items"]]}
        if op == "chain_key":
            return {"secret": self._backend.audit_chain_key(str(request["key_id"])).hex()}
        if op == "load_checkpoint":
            return {"checkpoint": self._backend.load_checkpoint()}
        if op == "store_checkpoint":
            self._backend.store_checkpoint_blocking(int(request["records"]),
                                                    str(request["head"]))
            return {}
        if op == "refresh_keys":
            public = self._backend.refresh_keys(dict(request["labels"]))
            return {"public_keys": {k: v.hex() for k, v in public.items()}}
        if op == "scan_channel_keys":
            found = self._backend.scan_channel_keys_blocking(str(request["prefix"]))
            return {"public_keys": {k: v.hex() for k, v in found.items()}}
        return {"error": f"unknown request {str(op)[:32]!r}"}

    def _sign(self, key_id: str, digest: str) -> list[str | None]:
        try:
            return [self._backend.sign_verified(key_id, bytes.fromhex(digest)).hex(), None]
        except BackendError as err:
            return [None, str(err)]
        except Exception as err:  # noqa: BLE001 - one bad item must not end the batch
            return [None, f"signing failed: {type(err).__name__}"]


def _open(request: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    from signer_service.backends.pkcs11 import Pkcs11Backend

    pin = str(request.pop("pin", ""))
    try:
        backend = Pkcs11Backend(str(request["module"]), str(request["token_label"]), pin,
                                dict(request["labels"]), audit_label=str(request["audit_label"]),
                                instance=str(request.get("instance", "")))
    finally:
        del pin
    return backend, {"public_keys": {k: v.hex() for k, v in backend.refresh_keys({}).items()}}


def serve(in_fd: int, out_fd: int) -> int:
    backend: Any = None
    try:
        request = read_frame(in_fd)
        try:
            backend, reply = _open(request)
        except BackendError as err:
            write_all(out_fd, encode_frame({"error": str(err)}))
            return 2
        del request
        write_all(out_fd, encode_frame(reply))
        token = _Token(backend)
        while True:
            request = read_frame(in_fd)
            try:
                reply = token.handle(request)
            except BackendError as err:
                reply = {"error": str(err)}
            except Exception as err:  # noqa: BLE001 - the signer gets an answer, not silence
                reply = {"error": f"{request.get('op')} failed: {type(err).__name__}"}
            write_all(out_fd, encode_frame(reply))
    except PipeClosed:
        return 0  # the signer closed the pipe: stop
    finally:
        if backend is not None:
            backend.close()


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # The pipes become private descriptors; fd 1 points at stderr, so nothing a library
    # prints can corrupt a frame.
    in_fd, out_fd = os.dup(0), os.dup(1)
    os.dup2(2, 1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    try:
        return serve(in_fd, out_fd)
    except Exception as err:  # noqa: BLE001 - one JSON line, no traceback
        from signer_service.logs import log_event, setup_logging

        setup_logging()
        log_event("pkcs11 signing process failed", logging.ERROR, error=type(err).__name__)
        return 1


if __name__ == "__main__":
    sys.exit(main())
