"""Signing backends: the only code that touches key material. One small interface for all."""

from __future__ import annotations

from typing import Protocol


class BackendError(Exception):
    """The backend could not sign. Messages never include key material or PINs."""


class SigningBackend(Protocol):
    def public_key(self, key_id: str) -> bytes:
        """Raw 32-byte Ed25519 public key."""
        ...

    async def sign(self, key_id: str, data: bytes) -> bytes:
        """64-byte Ed25519 signature of `data` (a 32-byte Stellar hash)."""
        ...

    def close(self) -> None: ...


class AuditAnchor(Protocol):
    """What keys the audit log: a chain key the audit disk never holds, and (on an HSM) a copy
    of the log's head checkpoint that no file edit can roll back."""

    def audit_chain_key(self, key_id: str) -> bytes:
        """32+ secret bytes, derived from key material of `key_id`'s backend."""
        ...

    def load_checkpoint(self) -> tuple[int, str] | None:
        """(records, head hash) last stored, or None when the backend keeps none."""
        ...

    async def store_checkpoint(self, records: int, head: str) -> None: ...


class ChannelKeySource(SigningBackend, Protocol):
    """A backend that finds channel keys while the signer runs (PKCS#11: by label prefix)."""

    async def scan_channel_keys(self, prefix: str) -> dict[str, bytes]:
        """key id (= label) -> raw public key of every key pair labelled `prefix`…; keys gone
        from the token can no longer sign."""
        ...


class Backend(SigningBackend, AuditAnchor, Protocol):
    """Every backend signs and keys the audit log."""
