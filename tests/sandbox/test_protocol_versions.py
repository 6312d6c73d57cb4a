"""The protocol version the sandbox models is what it reports, and CAP-71's credentials
(protocol 27) as a payout service meets them, over HTTP with stellar-sdk.

Sources: stellar-protocol core/cap-0071.md, cap-0071-02.md ("SOROBAN_CREDENTIALS_ADDRESS_V2",
"Protocol Upgrade Transition": invalid before 27); stellar-core TransactionFrame::checkValidImpl
(``validateXDRForProtocol``: txMALFORMED); stellar-rpc simulate_transaction.go
(``useUpgradedAuth``, v27.1.0) and its integration test
TestSimulateInvokeContractTransactionUseUpgradedAuth; stellar-sdk ``simulate_transaction``
(asks for upgraded auth by default).
"""

from __future__ import annotations

import pytest
from stellar_sdk import Keypair, SorobanServerAsync, TransactionEnvelope, xdr
from stellar_sdk.auth import authorize_entry

from soroban_sandbox.protocol import NEWEST
from soroban_sandbox.testing import InProcessSandbox

from .helpers import funded, land, refusal, transfer_tx

V1 = xdr.SorobanCredentialsType.SOROBAN_CREDENTIALS_ADDRESS
V2 = xdr.SorobanCredentialsType.SOROBAN_CREDENTIALS_ADDRESS_V2
DELEGATES = xdr.SorobanCredentialsType.SOROBAN_CREDENTIALS_ADDRESS_WITH_DELEGATES


async def reported_versions(sandbox: InProcessSandbox, server: SorobanServerAsync) -> set[int]:
    latest = await server.get_latest_ledger()
    header = xdr.LedgerHeader.from_xdr(latest.header_xdr or "")
    return {
        (await server.get_network()).protocol_version,
        (await server.get_version_info()).protocol_version,
        latest.protocol_version,
        header.ledger_version.uint32,
        (await sandbox.config())["protocol"],
    }


async def test_the_sandbox_models_the_newest_protocol_by_default(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    assert await reported_versions(sandbox, server) == {NEWEST} == {27}


@pytest.mark.parametrize("sandbox", [23, 26], indirect=True)
async def test_every_answer_reports_the_protocol_the_sandbox_models(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    modelled = sandbox.sandbox.ledger.protocol.version
    assert await reported_versions(sandbox, server) == {modelled}


async def channel_payout(
    server: SorobanServerAsync, sandbox: InProcessSandbox, *, upgraded: bool = True
) -> tuple[Keypair, Keypair, xdr.SorobanAuthorizationEntry, TransactionEnvelope]:
    """A channel account sends a payout the payer authorises with address credentials."""
    payer, channel, winner = await funded(sandbox, 3)
    tx = await transfer_tx(
        server, sandbox.passphrase, channel, winner.public_key, 99, from_=payer.public_key,
        prepare=False,
    )
    prepared = await server.prepare_transaction(tx, use_upgraded_auth=upgraded)
    (entry,) = prepared.transaction.operations[0].auth  # type: ignore[attr-defined]
    return payer, channel, entry, prepared


@pytest.mark.parametrize(
    ("sandbox", "asked", "recorded"),
    [(27, True, V2), (27, False, V1), (26, True, V1)],
    indirect=["sandbox"],
)
async def test_simulation_records_address_v2_credentials_when_asked_from_protocol_27(
    sandbox: InProcessSandbox,
    server: SorobanServerAsync,
    asked: bool,
    recorded: xdr.SorobanCredentialsType,
) -> None:
    payer, channel, entry, prepared = await channel_payout(server, sandbox, upgraded=asked)
    assert entry.credentials.type == recorded
    latest = (await server.get_latest_ledger()).sequence
    signed = authorize_entry(entry, payer, latest + 50, sandbox.passphrase)
    prepared.transaction.operations[0].auth = [signed]  # type: ignore[attr-defined]
    assert (await land(server, prepared, channel)).status.value == "SUCCESS"


@pytest.mark.parametrize("sandbox", [26], indirect=True)
async def test_address_v2_credentials_do_not_parse_before_protocol_27(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    payer, channel, entry, prepared = await channel_payout(server, sandbox)
    upgraded = xdr.SorobanAuthorizationEntry(
        credentials=xdr.SorobanCredentials(V2, address_v2=entry.credentials.address),
        root_invocation=entry.root_invocation,
    )
    latest = (await server.get_latest_ledger()).sequence
    signed = authorize_entry(upgraded, payer, latest + 50, sandbox.passphrase)
    prepared.transaction.operations[0].auth = [signed]  # type: ignore[attr-defined]
    assert await refusal(server, prepared, channel) == "txMALFORMED"


async def test_an_address_v2_signature_must_cover_the_address_bound_payload(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    payer, channel, entry, prepared = await channel_payout(server, sandbox)
    assert entry.credentials.type == V2 and entry.credentials.address_v2 is not None
    latest = (await server.get_latest_ledger()).sequence
    # Signed as if it were a legacy ADDRESS entry: the payload without the address.
    legacy = xdr.SorobanAuthorizationEntry(
        credentials=xdr.SorobanCredentials(V1, address=entry.credentials.address_v2),
        root_invocation=entry.root_invocation,
    )
    signed_legacy = authorize_entry(legacy, payer, latest + 50, sandbox.passphrase)
    entry.credentials.address_v2 = signed_legacy.credentials.address
    prepared.transaction.operations[0].auth = [entry]  # type: ignore[attr-defined]

    landed = await land(server, prepared, channel)

    assert landed.status.value == "FAILED"
    detail = await sandbox.transaction(prepared.hash_hex())
    assert detail is not None and "bad authorization signature" in detail["failure"]


@pytest.mark.parametrize(
    ("sandbox", "code"), [(27, "txNOT_SUPPORTED"), (26, "txMALFORMED")], indirect=["sandbox"]
)
async def test_delegated_credentials_are_refused_loudly(
    sandbox: InProcessSandbox, server: SorobanServerAsync, code: str
) -> None:
    payer, channel, entry, prepared = await channel_payout(server, sandbox)
    address = entry.credentials.address_v2 or entry.credentials.address
    delegated = xdr.SorobanAuthorizationEntry(
        credentials=xdr.SorobanCredentials(
            DELEGATES,
            address_with_delegates=xdr.SorobanAddressCredentialsWithDelegates(
                address_credentials=address, delegates=[]
            ),
        ),
        root_invocation=entry.root_invocation,
    )
    prepared.transaction.operations[0].auth = [delegated]  # type: ignore[attr-defined]
    assert await refusal(server, prepared, channel) == code
