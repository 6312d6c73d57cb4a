"""Hot key backend: the S... seed lives in this process's memory only (file or env)."""

from __future__ import annotations

import hashlib
import hmac

from stellar_sdk import Keypair

from signer_service.backends import BackendError


class HotKeyBackend:
    def __init__(self, secrets: dict[str, str]) -> None:
        self._keys = {key_id: Keypair.from_secret(s) for key_id, s in secrets.items()}

    def _key(self, key_id: str) -> Keypair:
        try:
            return self._keys[key_id]
        except KeyError:
            raise BackendError(f"no hot key {key_id!r}") from None

    def public_key(self, key_id: str) -> bytes:
        return self._key(key_id).raw_public_key()

    async def sign(self, key_id: str, data: bytes) -> bytes:
        # Ed25519 in libsodium takes tens of microseconds: not worth a thread hop.
        return self._key(key_id).sign(data)

    def audit_chain_key(self, key_id: str) -> bytes:
        # HMAC of a fixed context under the seed: reproducible by whoever holds the seed
        # (signer, signerctl audit verify), unguessable from the audit disk.
        return hmac.new(self._key(key_id).raw_secret_key(), b"stellar-payouts signer audit "
                        b"chain v1", hashlib.sha256).digest()

    def load_checkpoint(self) -> tuple[int, str] | None:
        return None  # a hot key has no tamper-proof store: the checkpoint file and metrics only

    async def store_checkpoint(self, records: int, head: str) -> None:
        return None

    def close(self) -> None:
        self._keys.clear()
