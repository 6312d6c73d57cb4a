"""The pipeline in batch mode as a process of its own, so SIGKILL is a real crash.

Configured like payout-service (load_config from the environment); the signature comes from
keys the test generated and hands over in BATCH_WORKER_KEYS (`key_id=S…` entries, the payer's
under `payer`), because the signer service refuses batches until its batch rules land (branch
signer14). Run: `python -m tests.integration.batch_worker`.
"""

from __future__ import annotations

import asyncio
import logging
import os

import asyncpg
from stellar_sdk import Keypair
from stellar_sdk.transaction_envelope import TransactionEnvelope

from payout_service.adapters.attempt_store import AttemptStore
from payout_service.adapters.channel_store import ChannelRegistry
from payout_service.adapters.ledger import LedgerGateway
from payout_service.adapters.payout_store import create_pool
from payout_service.adapters.signer_client import SignedEnvelope
from payout_service.app.pipeline import Pipeline
from payout_service.config import load_config


class LocalSigner:
    """Stands in for the signer service: signs with the key named by key_id (None: payer)."""

    def __init__(self, keys: dict[str, Keypair], channels: dict[str, str], passphrase: str
                 ) -> None:
        self.keys, self.channels, self.passphrase = keys, channels, passphrase
        self.signed = 0

    async def sign_transaction(self, envelope_xdr: str, *, key_id: str | None = None,
                               **_: object) -> SignedEnvelope:
        envelope = TransactionEnvelope.from_xdr(envelope_xdr, self.passphrase)
        envelope.sign(self.keys[key_id or "payer"])
        self.signed += 1
        return SignedEnvelope(envelope.to_xdr(), envelope.hash_hex())

    async def channel_key(self, source_account: str) -> str | None:
        return self.channels.get(source_account)

    async def close(self) -> None:
        return None


def keys_from(raw: str) -> dict[str, Keypair]:
    pairs = (entry.split("=", 1) for entry in raw.split(",") if entry)
    return {key_id: Keypair.from_secret(secret) for key_id, secret in pairs}


async def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    config = load_config(os.environ)
    keys = keys_from(os.environ.pop("BATCH_WORKER_KEYS"))
    channels = dict(config.signer.channel_keys) if config.signer else {}
    pool = await create_pool(config.database_url)
    # As payout-service's start-up does: the lease reads the channel registry, which
    # PAYOUTS_CHANNEL_ACCOUNTS seeds (a worker racing another to the same row lets it win).
    try:
        await ChannelRegistry(pool).seed(channels)
    except asyncpg.UniqueViolationError:
        pass
    ledger = LedgerGateway(config.rpc_url or "", timeout_seconds=config.rpc_timeout_seconds)
    signer = LocalSigner(keys, channels, config.network_passphrase)
    pipeline = Pipeline(config, AttemptStore(pool), ledger, signer)  # type: ignore[arg-type]
    pipeline.start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
