"""scripts/e2e-payout-check, docs/operations.md's testnet-profile check, against the sandbox.

The script is the same one a user points at Stellar testnet; here SOROBAN_RPC_URL is a local
sandbox (never the real network from tests). It must confirm one payout and prove it on chain,
and fail with one line when the endpoint is not the network it was told.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path

from stellar_sdk import Network, StrKey

from soroban_sandbox.testing import RunningSandbox

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "e2e-payout-check"


async def run_script(env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        str(SCRIPT), "--timeout", "120", "--hot-key",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 180)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_e2e_payout_check_confirms_a_payout_against_the_rpc_it_is_given(
    fresh_database: str,
) -> None:
    async with RunningSandbox(ledger_interval=0.5) as sandbox:
        env = os.environ | {"SOROBAN_RPC_URL": sandbox.rpc_url, "DATABASE_URL": fresh_database}
        code, out, err = await run_script(env)
        assert code == 0, err[-3000:]
        summary = json.loads(out.strip().splitlines()[-1])
        transfers = await sandbox.transfers()
    assert summary["state"] == "CONFIRMED" and summary["passphrase"] == sandbox.passphrase
    assert [(t["tx_hash"], t["amount_stroops"]) for t in transfers] == [
        (summary["tx_hash"], 15_000_000)
    ]
    seeds = [w for w in re.findall(r"S[A-Z2-7]{55}", out + err)
             if StrKey.is_valid_ed25519_secret_seed(w)]
    assert seeds == [], "the check printed a secret seed"


async def test_e2e_payout_check_refuses_an_rpc_of_another_network(fresh_database: str) -> None:
    async with RunningSandbox(ledger_interval=0.5) as sandbox:
        env = os.environ | {
            "SOROBAN_RPC_URL": sandbox.rpc_url, "DATABASE_URL": fresh_database,
            "STELLAR_NETWORK_PASSPHRASE": Network.TESTNET_NETWORK_PASSPHRASE,
        }
        code, out, err = await run_script(env)
        transfers = await sandbox.transfers()
    assert code == 1 and out == ""
    assert err.strip().splitlines()[-1].startswith(
        "e2e-payout-check: FAIL: STELLAR_NETWORK_PASSPHRASE 'Test SDF Network ; September 2015' "
        "but the RPC serves"
    )
    assert transfers == []
