"""The real signer-service for batch tests: a SoftHSM2 token (PKCS#11) holding the paying key
and two channel keys, mTLS, a policy that allows the batches these tests pay and nothing else.

The keys are fixed for a test module (one signer start per module, ~5 s); every test funds them
in a sandbox of its own, so no ledger state is shared. The sandbox's passphrase and payout
contract id are the same in every sandbox (the defaults), which is what lets one signer serve
them all.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stellar_sdk import Keypair

from signer_service.testing import SignerFixture, running_signer
from soroban_sandbox.contracts import default_payout_contract_id
from soroban_sandbox.testing import STANDALONE_PASSPHRASE

XLM = 10_000_000
CHANNELS = 2
BATCH_METHOD = "distribute_batch"


@dataclass
class BatchSigner:
    """A running signer and the accounts whose keys it holds (public keys only: the test
    funds them through the sandbox's friendbot and never signs for them)."""

    signer: SignerFixture
    payer: str
    issuer: Keypair  # not in the signer: the test issues USD to the payer with it
    channels: dict[str, str]  # key id -> G... of the channel keys on the token

    @property
    def usd(self) -> str:
        return f"USD:{self.issuer.public_key}"

    def channel_setting(self) -> str:
        """PAYOUTS_CHANNEL_ACCOUNTS: `key_id=G...` for each channel key."""
        return ",".join(f"{key_id}={address}" for key_id, address in self.channels.items())


def batch_policy(payer: str, usd: str, passphrase: str = STANDALONE_PASSPHRASE
                 ) -> dict[str, Any]:
    """Exactly the shapes the batch tests pay, deny by default otherwise: classic batches of
    native and USD payments (CreateAccount for a new XLM destination), the payout contract's
    `distribute_batch(from, payouts)`, with the payer or one of this signer's channel keys as
    transaction source. No single `transfer`, no other contract, asset or operation."""
    return {
        "source_accounts": [payer, "@channel_keys"],
        # The defaults of running_signer allow any contract and `transfer`: removed here.
        "contract_ids": None, "function_names": None,
        "calls": [{"contract_ids": [default_payout_contract_id(passphrase)],
                   "function": BATCH_METHOD, "args": ["from: address", "payouts: payouts"]}],
        "payments": {"assets": ["native", usd], "limits": {usd: {
            "max_amount_stroops_per_op": 200 * XLM, "max_amount_stroops_per_tx": 1_000 * XLM,
            "max_amount_stroops_per_day": 100_000 * XLM}}},
        "max_fee_stroops": 100 * XLM,
        "max_amount_stroops_per_op": 100 * XLM,
        "max_amount_stroops_per_tx": 1_000 * XLM,
        "max_amount_stroops_per_day": 100_000 * XLM,
        # The sandbox's close time runs ahead of the wall clock (a second a ledger at four or
        # five ledgers a second) and the signer judges max_time by its own clock.
        "max_time_window_seconds": 900,
    }


@contextlib.asynccontextmanager
async def running_batch_signer(tmp_path: Path, *, channels_on_token: int = CHANNELS
                               ) -> AsyncIterator[BatchSigner]:
    payer, issuer = Keypair.random(), Keypair.random()
    channels = {f"channel-{i}": Keypair.random() for i in range(channels_on_token)}
    policy = batch_policy(payer.public_key, f"USD:{issuer.public_key}")
    async with running_signer(
        tmp_path, network_passphrase=STANDALONE_PASSPHRASE, backend="pkcs11",
        hot_secret=payer.secret,  # imported onto the token, as a migration does
        extra_keys={key_id: kp.secret for key_id, kp in channels.items()},
        key_settings={key_id: {"role": "channel", "policy": {"merge_into": payer.public_key}}
                      for key_id in channels},
        policy=policy,
    ) as signer:
        assert signer.public_key == payer.public_key
        yield BatchSigner(signer, payer.public_key, issuer,
                          {key_id: kp.public_key for key_id, kp in channels.items()})
