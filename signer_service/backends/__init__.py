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
