"""The preparer's balance read (LedgerGateway.payer_funds) over HTTP: XLM less the minimum
reserve ((2 + subentries) x the header's base reserve), a trustline's balance, 0 without a
trustline, unlimited for the issuer's own asset."""

from __future__ import annotations

import pytest
from stellar_sdk import Keypair

from payout_service.adapters.ledger import LedgerGateway, SourceAccountMissing
from soroban_sandbox.testing import InProcessSandbox

from .helpers import funded

XLM = 10_000_000
RESERVE = 5_000_000


async def test_payer_funds_reads_spendable_balances(sandbox: InProcessSandbox) -> None:
    issuer, payer = await funded(sandbox, 2)
    usd, eur = f"USD:{issuer.public_key}", f"EUR:{issuer.public_key}"
    await sandbox.open_trustline(payer.public_key, usd)
    await sandbox.issue(usd, payer.public_key, 100 * XLM)
    await sandbox.set_balance(payer.public_key, 50 * XLM)
    gateway = LedgerGateway(sandbox.rpc_url)
    try:
        funds = await gateway.payer_funds(payer.public_key, ["XLM", usd, eur])
        # One trustline is one subentry: three reserves held back.
        assert funds == {"XLM": 50 * XLM - 3 * RESERVE, usd: 100 * XLM, eur: 0}
        assert (await gateway.payer_funds(issuer.public_key, [usd]))[usd] is None
        with pytest.raises(SourceAccountMissing):
            await gateway.payer_funds(Keypair.random().public_key, ["XLM"])
    finally:
        await gateway.close()
