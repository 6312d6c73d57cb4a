"""What a destination needs before it can be paid through the Stellar Asset Contract, as a
preflight reads it and the network enforces it, over HTTP with stellar-sdk.

Sources: stellar-protocol core/cap-0073.md ("XLM transfer creates AccountEntry"),
soroban-env-host stellar_asset_contract/balance.rs (``transfer_account_balance``: create with
2 base reserves or #14, else #6 before CAP-73; ``is_authorized`` / ``read_trustline_entry``:
#13 missing trustline, #11 deauthorised; ``transfer_trustline_balance``: #10 over the limit),
contract_error.rs for the codes; stellar-core QueryServer for the entries getLedgerEntries
serves.
"""

from __future__ import annotations

import pytest
from stellar_sdk import Asset, Keypair, MuxedAccount, SorobanServerAsync, xdr
from stellar_sdk.exceptions import PrepareTransactionException

from soroban_sandbox.testing import InProcessSandbox
from soroban_sandbox.xdr_build import account_key, trustline_key

from .helpers import contract_events, event_view, funded, land, transfer_tx

XLM = 10_000_000


async def simulation_error(
    server: SorobanServerAsync, sandbox: InProcessSandbox, payer: Keypair, to: str, amount: int,
    contract_id: str | None = None,
) -> str:
    with pytest.raises(PrepareTransactionException) as refused:
        await transfer_tx(
            server, sandbox.passphrase, payer, to, amount, contract_id=contract_id
        )
    return str(refused.value.simulate_transaction_response.error)


@pytest.mark.parametrize("sandbox", [26, 27], indirect=True)
async def test_an_xlm_transfer_to_a_missing_account_creates_it_from_protocol_26(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    (payer,) = await funded(sandbox, 1)
    newcomer, exchange = Keypair.random(), Keypair.random()
    deposit = MuxedAccount(exchange.public_key, 11).account_muxed or ""
    unprepared = await transfer_tx(
        server, sandbox.passphrase, payer, newcomer.public_key, 5 * XLM, prepare=False
    )
    simulated = await server.simulate_transaction(unprepared)
    created = await land(
        server,
        await transfer_tx(server, sandbox.passphrase, payer, newcomer.public_key, 5 * XLM),
        payer,
    )
    to_muxed = await land(
        server, await transfer_tx(server, sandbox.passphrase, payer, deposit, XLM), payer
    )

    assert simulated.state_changes is not None
    new_entry = account_key(newcomer.public_key).to_xdr()
    assert [c.type for c in simulated.state_changes if c.key == new_entry] == ["created"]
    assert created.status.value == to_muxed.status.value == "SUCCESS"
    (found,) = (await server.get_ledger_entries([account_key(newcomer.public_key)])).entries or []
    account = xdr.LedgerEntryData.from_xdr(found.xdr).account
    assert account is not None
    assert account.balance.int64 == 5 * XLM
    assert account.seq_num.sequence_number.int64 == created.ledger << 32  # type: ignore[operator]
    assert [event_view(e) for e in contract_events(created)] == [
        (["transfer", payer.public_key, newcomer.public_key, "native"], 5 * XLM)
    ]
    assert [event_view(e) for e in contract_events(to_muxed)] == [
        (["transfer", payer.public_key, exchange.public_key, "native"],
         {"amount": XLM, "to_muxed_id": 11})
    ]
    assert (await sandbox.balances(exchange.public_key)) == {"native": XLM}


async def test_below_the_new_account_minimum_the_transfer_traps_with_insufficient_reserve(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    (payer,) = await funded(sandbox, 1)
    missing = Keypair.random().public_key
    error = await simulation_error(server, sandbox, payer, missing, XLM - 1)
    assert "Error(Contract, #14): transfer amount is below minimum balance" in error
    assert await sandbox.account(missing) is None


@pytest.mark.parametrize("sandbox", [25], indirect=True)
async def test_before_protocol_26_a_missing_account_traps_with_account_missing(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    (payer,) = await funded(sandbox, 1)
    missing = Keypair.random().public_key
    error = await simulation_error(server, sandbox, payer, missing, 5 * XLM)
    assert "Error(Contract, #6): account entry is missing" in error


async def test_an_issued_asset_reaches_a_g_account_only_through_an_authorised_trustline(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    issuer, payer, no_line, unauthorised, small, holder = await funded(sandbox, 6)
    usd = f"USD:{issuer.public_key}"
    sac = await sandbox.deploy_asset("USD", issuer.public_key)
    await sandbox.open_trustline(payer.public_key, usd)
    await sandbox.issue(usd, payer.public_key, 100 * XLM)
    await sandbox.open_trustline(unauthorised.public_key, usd, authorized=False)
    await sandbox.open_trustline(small.public_key, usd, limit=XLM)
    await sandbox.open_trustline(holder.public_key, usd)

    errors = {
        name: await simulation_error(server, sandbox, payer, kp.public_key, 2 * XLM, sac)
        for name, kp in (("no line", no_line), ("unauthorised", unauthorised), ("small", small))
    }
    paid = await land(
        server,
        await transfer_tx(server, sandbox.passphrase, payer, holder.public_key, 2 * XLM,
                          contract_id=sac),
        payer,
    )

    assert errors == {
        "no line": "HostError: Error(Contract, #13): trustline entry is missing for account",
        "unauthorised": "HostError: Error(Contract, #11): balance is deauthorized",
        "small": "HostError: Error(Contract, #10): resulting balance is not within the "
        "allowed range",
    }
    assert paid.status.value == "SUCCESS"
    assert (await sandbox.balances(holder.public_key))[usd] == 2 * XLM
    assert (await sandbox.balances(payer.public_key))[usd] == 98 * XLM


async def test_a_trustline_deauthorised_after_simulation_traps_on_chain(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    issuer, payer, holder = await funded(sandbox, 3)
    usd = f"USD:{issuer.public_key}"
    sac = await sandbox.deploy_asset("USD", issuer.public_key)
    for account in (payer, holder):
        await sandbox.open_trustline(account.public_key, usd)
    await sandbox.issue(usd, payer.public_key, 10 * XLM)
    tx = await transfer_tx(
        server, sandbox.passphrase, payer, holder.public_key, XLM, contract_id=sac
    )
    await sandbox.authorize_trustline(holder.public_key, usd, authorized=False)

    landed = await land(server, tx, payer)

    assert landed.status.value == "FAILED"
    detail = await sandbox.transaction(tx.hash_hex())
    assert detail is not None and "Error(Contract, #11)" in detail["failure"]
    assert (await sandbox.balances(payer.public_key))[usd] == 10 * XLM


async def test_get_ledger_entries_reads_a_destinations_trustline_and_its_flags(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    issuer, holder, stranger = await funded(sandbox, 3)
    usd = Asset("USD", issuer.public_key)
    await sandbox.open_trustline(holder.public_key, f"USD:{issuer.public_key}", limit=50 * XLM)
    keys = [trustline_key(holder.public_key, usd), trustline_key(stranger.public_key, usd)]

    def flags_and_limit(answer: list[str]) -> list[tuple[int, int]]:
        lines = [xdr.LedgerEntryData.from_xdr(a).trust_line for a in answer]
        return [(line.flags.uint32, line.limit.int64) for line in lines if line is not None]

    authorised = (await server.get_ledger_entries(keys)).entries or []
    await sandbox.authorize_trustline(holder.public_key, f"USD:{issuer.public_key}",
                                      authorized=False)
    revoked = (await server.get_ledger_entries(keys)).entries or []

    # AUTHORIZED_FLAG (1), then cleared; the stranger has no trustline: no entry at all.
    assert flags_and_limit([e.xdr for e in authorised]) == [(1, 50 * XLM)]
    assert flags_and_limit([e.xdr for e in revoked]) == [(0, 50 * XLM)]
