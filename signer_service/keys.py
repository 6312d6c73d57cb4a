"""The key registry: configured [[keys]] and the token's channel keys, with their public halves."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

import grpc
from stellar_sdk import Keypair

from signer_service.backends import BackendError, ChannelKeySource, SigningBackend
from signer_service.config import ChannelKeysConfig, KeyConfig
from signer_service.logs import log_event
from signer_service.policy import served_payers
from signer_service.rpc import RpcFailure, bad_request, echo

# One token listing per second at most, whatever asks for a refresh of the channel keys.
MIN_REFRESH_SECONDS = 1.0


@dataclass
class KeyHandle:
    config: KeyConfig
    backend: SigningBackend
    keypair: Keypair  # public half only
    lock: asyncio.Lock
    address: str = ""  # G..., computed once (StrKey encoding is not free)
    hint: bytes = b""

    def __post_init__(self) -> None:
        self.address = self.keypair.public_key
        self.hint = self.keypair.signature_hint()

    @property
    def key_id(self) -> str:
        return self.config.key_id


class KeyRegistry:
    def __init__(self, keys: tuple[KeyConfig, ...], backends: Mapping[str, SigningBackend],
                 channel_config: ChannelKeysConfig | None,
                 channel_source: ChannelKeySource | None) -> None:
        self._keys: dict[str, KeyHandle] = {}
        for key in keys:
            backend = backends[key.key_id]
            public = Keypair.from_raw_ed25519_public_key(backend.public_key(key.key_id))
            self._keys[key.key_id] = KeyHandle(key, backend, public, asyncio.Lock())
        self._index()
        # [channel_keys]: the token's channel keys, re-listed by refresh().
        self._channel_config = channel_config
        self._channel_source = channel_source
        self._found: frozenset[str] = frozenset()  # key ids refresh() manages
        self._refresh_lock = asyncio.Lock()
        self._refreshed_at = float("-inf")

    def _index(self) -> None:
        # A funding key's only destinations: the accounts of this signer's channel keys.
        self.channel_accounts = frozenset(
            h.address for h in self._keys.values() if h.config.role == "channel")
        # Whose money a channel key may move, besides the accounts its policy names.
        self.payout_accounts = frozenset(
            h.address for h in self._keys.values() if h.config.role == "payout")

    def channel_payers(self, handle: KeyHandle) -> frozenset[str] | None:
        """For a channel key, the payers it serves; None for any other key."""
        if handle.config.role != "channel":
            return None
        return served_payers(handle.config.policy, self.payout_accounts)

    def get(self, key_id: str) -> KeyHandle:
        if not key_id:
            raise bad_request("key_id", "is required")
        handle = self._keys.get(key_id)
        if handle is None:
            raise RpcFailure(grpc.StatusCode.NOT_FOUND, f"key {echo(key_id)} is not configured")
        return handle

    def known(self, key_id: str) -> bool:
        return key_id in self._keys

    def handles(self) -> list[KeyHandle]:
        return list(self._keys.values())

    def public_keys(self) -> dict[str, str]:
        return {k: h.address for k, h in self._keys.items()}

    async def refresh(self, *, wait: bool = False) -> None:
        """The key registry follows the token: a channel key generated on it (`signerctl
        channel-keys generate`) signs from the next refresh on, one destroyed on it stops
        signing (its handle leaves the registry; the backend has dropped it). Called by the
        periodic refresh, ListKeys and a GetPublicKey of an unknown key id; one token listing
        per second at most, whoever asks (`wait`: list once that second has passed, for a
        caller that must see a key generated just now). Configured [[keys]] are never
        touched."""
        config, source = self._channel_config, self._channel_source
        if config is None or source is None:
            return
        async with self._refresh_lock:
            early = MIN_REFRESH_SECONDS - (time.monotonic() - self._refreshed_at)
            if early > 0 and not wait:
                return
            if early > 0:
                await asyncio.sleep(early)
            try:
                found = await source.scan_channel_keys(config.label_prefix)
            except BackendError as err:
                # The registry stays as it was; the next refresh tries again.
                log_event("channel key refresh failed", logging.WARNING, error=str(err))
                return
            finally:
                self._refreshed_at = time.monotonic()
            keys = {k: h for k, h in self._keys.items() if k not in self._found}
            for key_id, raw in sorted(found.items()):
                handle = self._keys.get(key_id)
                if handle is None or key_id not in self._found or \
                        handle.keypair.raw_public_key() != raw:
                    public = Keypair.from_raw_ed25519_public_key(raw)
                    handle = KeyHandle(config.key(key_id), source, public, asyncio.Lock())
                keys[key_id] = handle
            added, removed = set(found) - self._found, self._found - set(found)
            # Swapped whole: a call already holding a handle finishes with it.
            self._keys, self._found = keys, frozenset(found)
            self._index()
        if added or removed:
            log_event("channel keys refreshed", added=sorted(added)[:50],
                      removed=sorted(removed)[:50], channel_keys=len(found))

    async def keep_fresh(self) -> None:
        """The periodic refresh: catches keys destroyed on the token (no call names them)."""
        if self._channel_config is None:
            return
        while True:
            await asyncio.sleep(self._channel_config.refresh_seconds)
            await self.refresh()
