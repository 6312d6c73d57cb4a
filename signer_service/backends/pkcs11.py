"""PKCS#11 backend (python-pkcs11): Ed25519 keys that never leave the token (CKM_EDDSA).

PKCS#11 calls block, so they run off the event loop, in ONE dedicated thread. python-pkcs11
calls C_Initialize(NULL), which per the PKCS#11 spec promises the module no concurrent access;
SoftHSM then disables its own locking and crashes when two sessions sign at once (seen here with
a pool of sessions). One thread keeps every call serial; SoftHSM signs ~6,500/s on one core.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pkcs11
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.exceptions import PKCS11Error

from signer_service.backends import BackendError

ED25519_OID = "1.3.101.112"
CHAIN_KEY_CONTEXT = b"stellar-payouts signer audit chain v1"


def checkpoint_label(audit_label: str, instance: str = "") -> str:
    """The token's checkpoint object of one audit log: one per named instance, so instances
    sharing a token never read each other's head."""
    return f"{audit_label}-checkpoint" + (f"-{instance}" if instance else "")


def raw_public_key(ec_point: bytes) -> bytes:
    """EC_POINT of an Ed25519 key is a DER OCTET STRING (0x04 0x20 + 32 bytes) on SoftHSM."""
    if len(ec_point) == 34 and ec_point[:2] == b"\x04\x20":
        return ec_point[2:]
    if len(ec_point) == 32:  # some tokens return the bare point
        return ec_point
    raise BackendError(f"unexpected EC_POINT encoding ({len(ec_point)} bytes)")


def _deliver(results: list[tuple[asyncio.Future[bytes], bytes | BackendError]]) -> None:
    for done, outcome in results:
        if done.done():
            continue  # the caller went away (cancelled RPC)
        if isinstance(outcome, BackendError):
            done.set_exception(outcome)
        else:
            done.set_result(outcome)


def open_token(module: str, token_label: str) -> Any:
    try:
        lib = pkcs11.lib(module)
        return lib.get_token(token_label=token_label)
    except PKCS11Error as err:
        raise BackendError(f"token {token_label!r} not available: {type(err).__name__}") from None


@dataclass
class _Session:
    session: Any
    keys: dict[str, Any] = field(default_factory=dict)


class Pkcs11Backend:
    def __init__(self, module: str, token_label: str, pin: str, labels: dict[str, str],
                 audit_label: str = "signer-audit-hmac", instance: str = "") -> None:
        token = open_token(module, token_label)
        self._labels = dict(labels)
        self._audit_label = audit_label
        self._checkpoint_label = checkpoint_label(audit_label, instance)
        self._free: queue.SimpleQueue[_Session] = queue.SimpleQueue()
        self._sessions: list[_Session] = []
        try:
            # Read-write: the audit checkpoint is a token object the signer rewrites.
            self._sessions.append(_Session(token.open(user_pin=pin, rw=True)))
        except PKCS11Error as err:
            self.close()
            raise BackendError(f"cannot log in to token {token_label!r}: {type(err).__name__}") \
                from None
        self._public: dict[str, bytes] = {}
        self._verifiers: dict[str, VerifyKey] = {}
        self.refresh_keys(labels)
        for s in self._sessions:
            self._free.put(s)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pkcs11")
        self._queue: list[tuple[str, bytes, asyncio.Future[bytes]]] = []
        self._queue_lock = threading.Lock()
        self._draining = False

    def refresh_keys(self, labels: Mapping[str, str]) -> dict[str, bytes]:
        """(Re)load the key pairs `labels` names (key id -> token label) and return the raw
        public key of every key this backend now holds: the one call a key registry makes to
        pick up keys generated on the token since start. A label missing on the token is a
        BackendError and changes nothing."""
        public = {key_id: self._load_public(key_id, label) for key_id, label in labels.items()}
        private = [{key_id: self._private(s.session, key_id, label)
                    for key_id, label in labels.items()} for s in self._sessions]
        for s, found in zip(self._sessions, private, strict=True):
            s.keys.update(found)
        self._verifiers.update({k: VerifyKey(raw) for k, raw in public.items()})
        self._public.update(public)
        self._labels.update(labels)
        return dict(self._public)

    def _load_public(self, key_id: str, label: str) -> bytes:
        session = self._sessions[0].session
        try:
            pub = session.get_key(
                object_class=ObjectClass.PUBLIC_KEY, key_type=KeyType.EC_EDWARDS, label=label
            )
            return raw_public_key(bytes(pub[Attribute.EC_POINT]))
        except PKCS11Error as err:
            raise BackendError(
                f"key {key_id!r}: no Ed25519 public key labelled {label!r} on the token "
                f"({type(err).__name__})"
            ) from None

    @staticmethod
    def _private(session: Any, key_id: str, label: str) -> Any:
        try:
            return session.get_key(
                object_class=ObjectClass.PRIVATE_KEY, key_type=KeyType.EC_EDWARDS, label=label
            )
        except PKCS11Error as err:
            raise BackendError(
                f"key {key_id!r}: no Ed25519 private key labelled {label!r} on the token "
                f"({type(err).__name__})"
            ) from None

    def public_key(self, key_id: str) -> bytes:
        try:
            return self._public[key_id]
        except KeyError:
            raise BackendError(f"no PKCS#11 key {key_id!r}") from None

    def sign_blocking(self, key_id: str, data: bytes) -> bytes:
        s = self._free.get()
        try:
            return bytes(s.keys[key_id].sign(data, mechanism=Mechanism.EDDSA))
        except KeyError:
            raise BackendError(f"no PKCS#11 key {key_id!r}") from None
        except PKCS11Error as err:
            raise BackendError(f"PKCS#11 sign failed: {type(err).__name__}") from None
        finally:
            self._free.put(s)

    def sign_verified(self, key_id: str, data: bytes) -> bytes:
        """sign_blocking, then check the token's answer against the key's public half: a token
        that returns a wrong signature must not have it handed out."""
        signature = self.sign_blocking(key_id, data)
        try:
            self._verifiers[key_id].verify(data, signature)
        except BadSignatureError:
            raise BackendError("the token returned a signature that does not verify") from None
        return signature

    async def sign(self, key_id: str, data: bytes) -> bytes:
        """Queued for the one PKCS#11 thread, which signs everything queued in one pass and
        hands the results back in one loop callback: per signature, no thread hand-off."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[bytes] = loop.create_future()
        with self._queue_lock:
            self._queue.append((key_id, data, done))
            start = not self._draining
            self._draining = True
        if start:
            self._pool.submit(self._drain, loop)
        return await done

    def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        while True:
            with self._queue_lock:
                batch, self._queue = self._queue, []
                if not batch:
                    self._draining = False
                    return
            results: list[tuple[asyncio.Future[bytes], bytes | BackendError]] = []
            for key_id, data, done in batch:
                try:
                    results.append((done, self.sign_verified(key_id, data)))
                except BackendError as err:
                    results.append((done, err))
                except Exception as err:  # noqa: BLE001 - a stuck drain would hang every call
                    results.append((done, BackendError(f"signing failed: {type(err).__name__}")))
            loop.call_soon_threadsafe(_deliver, results)

    def audit_chain_key(self, key_id: str) -> bytes:
        """HMAC-SHA256 (CKM_SHA256_HMAC) of a fixed context under the token's non-extractable
        audit key: the chain key exists only in this process's memory and on no disk."""
        session = self._sessions[0].session
        try:
            key = session.get_key(key_type=KeyType.GENERIC_SECRET, label=self._audit_label)
            return bytes(key.sign(CHAIN_KEY_CONTEXT, mechanism=Mechanism.SHA256_HMAC))
        except PKCS11Error as err:
            raise BackendError(
                f"no audit HMAC key labelled {self._audit_label!r} on the token "
                f"({type(err).__name__}); create it with signerctl audit key-generate"
            ) from None

    def _checkpoint_objects(self) -> list[Any]:
        session = self._sessions[0].session
        return list(session.get_objects({Attribute.CLASS: ObjectClass.DATA,
                                         Attribute.LABEL: self._checkpoint_label}))

    def load_checkpoint(self) -> tuple[int, str] | None:
        best: tuple[int, str] | None = None
        for obj in self._checkpoint_objects():
            records, _, head = bytes(obj[Attribute.VALUE]).decode().partition("|")
            if best is None or int(records) > best[0]:
                best = (int(records), head)
        return best

    def store_checkpoint_blocking(self, records: int, head: str) -> None:
        # SoftHSM keeps CKA_VALUE of data objects read-only: write the new one, then drop the
        # old ones, so a crash in between leaves two (the higher wins), never none.
        old = self._checkpoint_objects()
        self._sessions[0].session.create_object({
            Attribute.CLASS: ObjectClass.DATA, Attribute.TOKEN: True, Attribute.PRIVATE: True,
            Attribute.LABEL: self._checkpoint_label,
            Attribute.VALUE: f"{records}|{head}".encode(),
        })
        for obj in old:
            obj.destroy()

    async def store_checkpoint(self, records: int, head: str) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._pool, self.store_checkpoint_blocking, records, head)

    def clear_checkpoint_blocking(self) -> int:
        objects = self._checkpoint_objects()
        for obj in objects:
            obj.destroy()
        return len(objects)

    # ---- channel keys generated or destroyed while the signer runs ([channel_keys]) ------

    def scan_channel_keys_blocking(self, prefix: str) -> dict[str, bytes]:
        """On the PKCS#11 thread (serial with signing): loads each key pair labelled prefix…
        not yet loaded and unloads the ones no longer on the token. Configured [[keys]]
        are never touched. A pair half written (private key without its public half) is
        skipped until the next scan."""
        session = self._sessions[0].session
        fixed = set(self._labels.values())
        labels = set()
        try:
            for obj in session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY,
                                            Attribute.KEY_TYPE: KeyType.EC_EDWARDS}):
                label = str(obj[Attribute.LABEL])
                if label.startswith(prefix) and label not in fixed:
                    labels.add(label)
        except PKCS11Error as err:
            raise BackendError(f"listing the token's keys failed: {type(err).__name__}") \
                from None
        public, verifiers = dict(self._public), dict(self._verifiers)
        for gone in set(public) - set(self._labels) - labels:
            del public[gone], verifiers[gone]
            for s in self._sessions:
                s.keys.pop(gone, None)
        for label in sorted(labels - set(public)):
            try:
                raw = self._load_public(label, label)
                for s in self._sessions:
                    s.keys[label] = self._private(s.session, label, label)
            except BackendError:
                continue
            public[label], verifiers[label] = raw, VerifyKey(raw)
        # Swapped whole: public_key() reads them from the event loop's thread.
        self._public, self._verifiers = public, verifiers
        return {k: public[k] for k in labels if k in public}

    async def scan_channel_keys(self, prefix: str) -> dict[str, bytes]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self.scan_channel_keys_blocking, prefix)

    def close(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=True)
        for s in reversed(self._sessions):
            try:
                s.session.close()
            except PKCS11Error:
                pass
        self._sessions.clear()
