"""The sandbox as the real JavaScript ``@stellar/stellar-sdk`` rpc client sees it.

Requirement: the JS rpc client cannot tell the sandbox from a real node for the calls a payout
system makes. ``js/payout_flow.mjs`` makes those calls with ``rpc.Server`` (getHealth,
requestAirdrop, getNetwork, getLatestLedger, getAccount, getFeeStats, prepareTransaction,
sendTransaction, getTransaction, getTransactions, getLedgers, getEvents, and the DUPLICATE /
ERROR answers of a re-send), then pays an exchange deposit (a muxed ``M...`` address) through
the SAC and as a classic Payment and reads the muxed id back from each transfer event, and
checks that the SDK parses every answer; this test then checks the effect through the
sandbox's own admin API.

Needs Node.js >= 20 and npm (``scripts/test`` installs them); the pinned SDK is installed from
``js/package-lock.json`` with ``npm ci`` on first use (needs the npm registry once).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from stellar_sdk import Keypair

from soroban_sandbox.fees import EVENT_FEE
from soroban_sandbox.simulation import REFUNDABLE_FEE_MARGIN
from soroban_sandbox.testing import RunningSandbox

from .helpers import native_id

JS_DIR = Path(__file__).parent / "js"
SCRIPT = JS_DIR / "payout_flow.mjs"
SDK_PACKAGE = "@stellar/stellar-sdk"
START = 10_000 * 10_000_000  # friendbot balance, stroops
AMOUNT = 12_345_678
MUXED_ID = 2**64 - 3  # past int64: the id must travel as a u64 all the way
CLASSIC_DEPOSIT = 100  # stroops, the script's classic Payment of "0.0000100"
NODE_TIMEOUT = 90.0


def _installed_sdk_version() -> str | None:
    manifest = JS_DIR / "node_modules" / SDK_PACKAGE / "package.json"
    if not manifest.is_file():
        return None
    return str(json.loads(manifest.read_text())["version"])


@pytest.fixture(scope="session")
def js_client() -> str:
    """Node on PATH and the pinned SDK in js/node_modules (``npm ci`` if missing or stale)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail(
            "node and npm are required for the JavaScript stellar-sdk client test but are not on "
            "PATH: install nodejs (>= 20) and npm, e.g. `apt-get install nodejs npm` "
            "(scripts/test installs them)",
            pytrace=False,
        )
    version = subprocess.run(
        [node, "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    if int(version.lstrip("v").split(".")[0]) < 20:
        pytest.fail(f"Node.js >= 20 is required, found {version}", pytrace=False)
    pinned = json.loads((JS_DIR / "package.json").read_text())["dependencies"][SDK_PACKAGE]
    if _installed_sdk_version() != pinned:
        done = subprocess.run(
            [npm, "ci", "--prefix", str(JS_DIR), "--no-audit", "--no-fund"],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            pytest.fail(
                f"`npm ci --prefix {JS_DIR}` failed ({done.returncode}):\n"
                f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}",
                pytrace=False,
            )
        installed = _installed_sdk_version()
        assert installed == pinned, f"npm ci installed {SDK_PACKAGE} {installed}, pinned {pinned}"
    return node


def _node_env(source: Keypair) -> dict[str, str]:
    # The secret goes to node through its environment only: never argv, never a message.
    return os.environ | {"PAYOUT_SOURCE_SECRET": source.secret}


def _redacted(text: bytes, source: Keypair) -> str:
    return text.decode(errors="replace").replace(source.secret, "<redacted secret>")


async def _run_payout_flow(
    node: str,
    sandbox: RunningSandbox,
    source: Keypair,
    destination: str,
    passphrase: str,
    *extra: str,
) -> tuple[int, str, str]:
    """Runs payout_flow.mjs; returns (exit code, stdout, stderr), the secret redacted."""
    process = await asyncio.create_subprocess_exec(
        node,
        str(SCRIPT),
        "--rpc-url",
        sandbox.rpc_url,
        "--passphrase",
        passphrase,
        "--destination",
        destination,
        "--amount",
        str(AMOUNT),
        "--timeout",
        str(NODE_TIMEOUT - 10),
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_node_env(source),
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), NODE_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        pytest.fail(f"payout_flow.mjs did not finish within {NODE_TIMEOUT}s")
    leaked = source.secret.encode() in out or source.secret.encode() in err
    if leaked:
        pytest.fail("payout_flow.mjs printed the source secret")
    assert process.returncode is not None
    return process.returncode, _redacted(out, source), _redacted(err, source)


async def test_js_rpc_client_pays_out_through_the_sandbox(js_client: str) -> None:
    async with RunningSandbox(ledger_interval=0.2, seed=23) as sandbox:
        source, destination = Keypair.random(), Keypair.random()
        await sandbox.fund(source.public_key)
        await sandbox.fund(destination.public_key)
        code, out, err = await _run_payout_flow(
            js_client,
            sandbox,
            source,
            destination.public_key,
            sandbox.passphrase,
            "--muxed-id",
            str(MUXED_ID),
        )
        if code != 0:
            pytest.fail(f"payout_flow.mjs exited {code}:\n{err}\nstdout:\n{out}", pytrace=False)
        summary: dict[str, Any] = json.loads(out)
        airdropped_row = await sandbox.account(summary["airdrop"]["account"])
        transfers = await sandbox.transfers()
        source_row = await sandbox.account(source.public_key)
        destination_row = await sandbox.account(destination.public_key)

    pinned = json.loads((JS_DIR / "package.json").read_text())["dependencies"][SDK_PACKAGE]
    assert summary["sdkVersion"] == pinned
    assert summary["health"]["status"] == "healthy"
    assert int(summary["health"]["latestLedgerCloseTime"]) > 0
    assert airdropped_row is not None  # friendbot POST created it
    assert summary["airdrop"]["sequence"] == str(airdropped_row["sequence"])
    history = summary["history"]
    assert history["ledgersCursor"] == str(summary["transaction"]["ledger"])
    assert history["ledgerCloseMetaVersion"] == 2 and history["transactionsListed"] >= 1
    assert summary["network"]["passphrase"] == sandbox.passphrase
    assert summary["network"]["protocolVersion"] == summary["latestLedger"]["protocolVersion"]
    assert summary["prepared"]["contractId"] == native_id(sandbox.passphrase)
    assert summary["prepared"]["authCredentials"] == "sorobanCredentialsSourceAccount"
    assert summary["send"]["status"] == "PENDING"
    tx_hash = summary["send"]["hash"]
    assert summary["prepared"]["hash"] == tx_hash
    # DUPLICATE while queued; if a ledger closed in between, the landed tx's seq is spent.
    resent = summary["resendWhilePending"]
    assert (resent["status"], resent["errorResultCode"]) in {
        ("DUPLICATE", None),
        ("ERROR", "txBadSeq"),
    }

    landed = summary["transaction"]
    assert landed["status"] == "SUCCESS"
    assert landed["resultCode"] == "txSuccess"
    assert landed["envelopeHashMatches"] is True
    assert landed["ledger"] > summary["latestLedger"]["sequence"]
    assert int(landed["createdAt"]) >= int(summary["latestLedger"]["closeTime"])
    # The refundable margin simulation adds (15%) is refunded after apply (protocol 23).
    margin = math.ceil(EVENT_FEE * REFUNDABLE_FEE_MARGIN) - EVENT_FEE
    assert int(landed["feeCharged"]) == 100 + int(summary["prepared"]["resourceFee"]) - margin

    event = summary["events"]
    assert event["count"] == 1
    assert event["txHash"] == tx_hash
    assert event["ledger"] == landed["ledger"]
    assert event["topic"] == ["transfer", source.public_key, destination.public_key, "native"]
    assert event["amount"] == str(AMOUNT)

    assert summary["resendAfterSuccess"]["status"] == "ERROR"
    assert summary["resendAfterSuccess"]["errorResultCode"] == "txBadSeq"
    assert summary["badSequence"]["status"] == "ERROR"
    assert summary["badSequence"]["errorResultCode"] == "txBadSeq"
    assert summary["badSequence"]["hash"] != tx_hash
    assert int(summary["badSequence"]["sequence"]) == int(summary["accounts"]["sourceSequence"]) + 6

    # The exchange deposit: the JS SDK read the muxed id back from both transfer events.
    deposit = summary["deposit"]
    assert deposit["address"].startswith("M")
    for paid, amount in ((deposit["sac"], AMOUNT), (deposit["classic"], CLASSIC_DEPOSIT)):
        seen = {"amount": str(amount), "toMuxedId": str(MUXED_ID)}
        assert paid["transaction"] == paid["events"] == seen
    assert deposit["classic"]["envelopeDestination"] == deposit["address"]

    # The sandbox's own record: the payout, then the two deposits, credited to the G account.
    native = native_id(sandbox.passphrase)
    payout = {
        "tx_hash": tx_hash,
        "ledger": landed["ledger"],
        "contract_id": native,
        "function": "transfer",
        "from": source.public_key,
        "to": destination.public_key,
        "amount_stroops": AMOUNT,
        "asset": "native",
        "to_muxed_id": None,
        "to_muxed_id_type": None,
    }
    sac_deposit = payout | {
        "tx_hash": deposit["sac"]["hash"],
        "ledger": deposit["sac"]["ledger"],
        "to_muxed_id": MUXED_ID,
        "to_muxed_id_type": "u64",
    }
    classic_deposit = sac_deposit | {
        "tx_hash": deposit["classic"]["hash"],
        "ledger": deposit["classic"]["ledger"],
        "function": "payment",
        "amount_stroops": CLASSIC_DEPOSIT,
    }
    assert transfers == [payout, sac_deposit, classic_deposit]
    received = AMOUNT + AMOUNT + CLASSIC_DEPOSIT
    assert destination_row is not None and destination_row["balance_stroops"] == START + received
    fees = sum(int(f) for f in (landed["feeCharged"], deposit["sac"]["feeCharged"],
                                 deposit["classic"]["feeCharged"]))
    assert source_row is not None
    assert source_row["balance_stroops"] == START - received - fees
    assert source_row["sequence"] == int(summary["accounts"]["sourceSequenceAfter"]) + 2


async def test_js_payout_flow_refuses_a_network_with_another_passphrase(js_client: str) -> None:
    """The script's checks bite: a passphrase mismatch is reported and nothing is sent."""
    async with RunningSandbox(ledger_interval=0.2, seed=24) as sandbox:
        source, destination = Keypair.random(), Keypair.random()
        await sandbox.fund(source.public_key)
        await sandbox.fund(destination.public_key)
        code, out, err = await _run_payout_flow(
            js_client, sandbox, source, destination.public_key, "Test SDF Network ; September 2015"
        )
        transfers = await sandbox.transfers()
    assert code == 1, out
    assert out == ""
    assert "payout_flow: FAIL: getNetwork: passphrase" in err
    assert transfers == []
