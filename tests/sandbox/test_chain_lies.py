"""The lies of a real stellar-rpc deployment, each as a client sees it through stellar-sdk.

A proof that a transaction can never land must come from one consistent view of the chain
(docs/design.md invariant 8). Each fault here breaks one assumption a client could make: that the
transaction store is as recent as the ledger entries, that successive calls reach the same
node, that a node's history reaches back to the submission, that txBAD_SEQ means "never
landed", that an envelope nobody re-sends stays unsent. README "Faults" cites the sources.
"""

from __future__ import annotations

from typing import Any

import pytest
from stellar_sdk import (
    Account,
    Asset,
    Keypair,
    SorobanServerAsync,
    TransactionBuilder,
    TransactionEnvelope,
    xdr,
)
from stellar_sdk.client.aiohttp_client import AiohttpClient
from stellar_sdk.exceptions import SorobanRpcErrorResponse
from stellar_sdk.soroban_rpc import GetTransactionStatus, SendTransactionStatus

from soroban_sandbox.faults import Faults
from soroban_sandbox.server import SandboxConfig
from soroban_sandbox.testing import InProcessSandbox, RunningSandbox

from .helpers import result_code, transfer_tx, wait_for

Code = xdr.TransactionResultCode
INVALID_REQUEST = -32600


async def funded_pair(sandbox: InProcessSandbox) -> tuple[Keypair, Keypair]:
    alice, bob = Keypair.random(), Keypair.random()
    await sandbox.fund(alice.public_key)
    await sandbox.fund(bob.public_key)
    return alice, bob


async def stalled_pair(sandbox: InProcessSandbox) -> tuple[Keypair, Keypair]:
    """Two funded accounts; ledgers close only when the test says so."""
    await sandbox.set_faults(stall_ledgers=True)
    return await funded_pair(sandbox)


async def signed(
    sandbox: InProcessSandbox, server: SorobanServerAsync, source: Keypair, to: str
) -> TransactionEnvelope:
    tx = await transfer_tx(server, sandbox.passphrase, source, to, 5)
    tx.sign(source)
    return tx


async def landed(
    sandbox: InProcessSandbox, server: SorobanServerAsync, tx: TransactionEnvelope
) -> int:
    """Send ``tx`` and close the ledger that includes it; returns that ledger."""
    assert (await server.send_transaction(tx)).status == SendTransactionStatus.PENDING
    ledger = int((await sandbox.close_ledger())["sequence"])
    included = await sandbox.transaction(tx.hash_hex())
    assert included is not None and included["ledger"] == ledger
    return ledger


async def one_landed(
    sandbox: InProcessSandbox,
    server: SorobanServerAsync,
    *,
    after: int = 0,
    faults: dict[str, Any] | None = None,
) -> tuple[Keypair, Keypair, TransactionEnvelope, int]:
    """Alice pays Bob in the ledger closed after ``after`` empty ones, ``faults`` set just
    before the send: (alice, bob, the transaction, its ledger)."""
    alice, bob = await stalled_pair(sandbox)
    for _ in range(after):
        await sandbox.close_ledger()
    tx = await signed(sandbox, server, alice, bob.public_key)
    if faults:
        await sandbox.set_faults(**faults)
    return alice, bob, tx, await landed(sandbox, server, tx)


async def account_seq(server: SorobanServerAsync, address: str) -> tuple[int, int]:
    """The account's sequence number as getLedgerEntries says, and the ledger it says it is."""
    key = xdr.LedgerKey(
        xdr.LedgerEntryType.ACCOUNT,
        account=xdr.LedgerKeyAccount(Keypair.from_public_key(address).xdr_account_id()),
    )
    answer = await server.get_ledger_entries([key])
    data = xdr.LedgerEntryData.from_xdr(answer.entries[0].xdr)
    assert data.account is not None
    return data.account.seq_num.sequence_number.int64, answer.latest_ledger


async def test_new_lies_are_off_by_default_and_draw_nothing_from_the_seed(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    defaults = Faults()
    assert (defaults.tx_store_lag_ledgers, defaults.node_lags, defaults.retention_ledgers) == (
        0,
        [0],
        0,
    )
    assert defaults.ingest_race_rate == defaults.node_restart_rate == defaults.replay_rate == 0
    assert defaults.entries_follow_store is False
    dice = sandbox.sandbox.dice._rng
    before = dice.getstate()
    alice, _, tx, ledger = await one_landed(sandbox, server)
    found = await server.get_transaction(tx.hash_hex())
    assert found.status == GetTransactionStatus.SUCCESS
    assert found.latest_ledger == ledger == (await server.get_latest_ledger()).sequence
    assert await account_seq(server, alice.public_key) == (tx.transaction.sequence, ledger)
    assert (await server.get_health()).oldest_ledger == 1
    assert dice.getstate() == before  # the same seed replays the faults it always did
    assert await sandbox.replays() == []
    assert [n["restarted_at"] for n in await sandbox.nodes()] == [None]


async def test_tx_store_lag_hides_a_landed_transaction_while_entries_show_its_sequence_used(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    alice, _, tx, ledger = await one_landed(
        sandbox, server, after=2, faults={"tx_store_lag_ledgers": 2}
    )
    # The false proof: the sequence number is used, yet the transaction is NOT_FOUND...
    assert await account_seq(server, alice.public_key) == (tx.transaction.sequence, ledger)
    found = await server.get_transaction(tx.hash_hex())
    assert found.status == GetTransactionStatus.NOT_FOUND
    # ...and the answer says so itself: its store has reached only two ledgers back.
    assert found.latest_ledger == ledger - 2
    assert (await server.get_latest_ledger()).sequence == ledger - 2
    with pytest.raises(SorobanRpcErrorResponse) as refused:
        await server.get_transactions(start_ledger=ledger)
    assert refused.value.code == INVALID_REQUEST
    # stellar-core validates at the tip: a re-send is txBAD_SEQ while the store says NOT_FOUND.
    again = await server.send_transaction(tx)
    assert again.status == SendTransactionStatus.ERROR
    assert result_code(again.error_result_xdr or "") == Code.txBAD_SEQ
    assert again.latest_ledger == ledger - 2
    await sandbox.close_ledger()
    await sandbox.close_ledger()
    caught_up = await server.get_transaction(tx.hash_hex())
    assert (caught_up.status, caught_up.ledger) == (GetTransactionStatus.SUCCESS, ledger)


async def test_entries_pinned_to_the_store_agree_with_it_and_only_the_resend_disagrees(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    faults = {"tx_store_lag_ledgers": 1, "entries_follow_store": True}
    alice, _, tx, ledger = await one_landed(sandbox, server, after=1, faults=faults)
    # stellar-rpc reads captive core at its store's latest ledger: one consistent view...
    assert await account_seq(server, alice.public_key) == (tx.transaction.sequence - 1, ledger - 1)
    assert (await server.get_transaction(tx.hash_hex())).status == GetTransactionStatus.NOT_FOUND
    # ...except sendTransaction, which core checks against the ledger it has applied.
    again = await server.send_transaction(tx)
    assert (again.status, result_code(again.error_result_xdr or "")) == (
        SendTransactionStatus.ERROR,
        Code.txBAD_SEQ,
    )


async def test_load_balancer_answers_from_nodes_at_different_heights(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    alice, _, tx, ledger = await one_landed(sandbox, server, after=3)
    await sandbox.set_faults(node_lags=[0, 2])
    statuses = set()
    for _ in range(24):
        found = await server.get_transaction(tx.hash_hex())
        statuses.add((found.status, found.latest_ledger))
    assert statuses == {
        (GetTransactionStatus.SUCCESS, ledger),
        (GetTransactionStatus.NOT_FOUND, ledger - 2),
    }
    # The lagging node serves ledger entries as of its own ledger, and says which one.
    entries = {await account_seq(server, alice.public_key) for _ in range(24)}
    assert entries == {(tx.transaction.sequence, ledger), (tx.transaction.sequence - 1, ledger - 2)}
    assert [(n["latest_ledger"], n["core_ledger"]) for n in await sandbox.nodes()] == [
        (ledger, ledger),
        (ledger - 2, ledger - 2),
    ]


async def test_a_node_behind_refuses_the_next_transaction_with_txbad_seq(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    alice, bob, first, ledger = await one_landed(sandbox, server, after=2)
    assert (await server.get_transaction(first.hash_hex())).status == GetTransactionStatus.SUCCESS
    second = await signed(sandbox, server, alice, bob.public_key)  # the right next sequence
    await sandbox.set_faults(node_lags=[2])  # the send reaches a node two ledgers behind
    refused = await server.send_transaction(second)
    assert refused.status == SendTransactionStatus.ERROR
    assert result_code(refused.error_result_xdr or "") == Code.txBAD_SEQ
    assert refused.latest_ledger == ledger - 2
    await sandbox.set_faults(node_lags=[0])
    assert await landed(sandbox, server, second) == ledger + 1


async def test_a_node_behind_says_pending_for_a_resend_of_a_landed_transaction(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    _, _, tx, ledger = await one_landed(sandbox, server, after=2)
    await sandbox.set_faults(node_lags=[2])
    # Its core has not applied the ledger yet: the sequence number looks free to it.
    again = await server.send_transaction(tx)
    assert (again.status, again.latest_ledger) == (SendTransactionStatus.PENDING, ledger - 2)
    assert (await server.get_transaction(tx.hash_hex())).status == GetTransactionStatus.NOT_FOUND
    # The validators refuse it; nothing lands twice.
    assert {"hash": tx.hash_hex(), "ledger": ledger + 1, "reason": "network_refused txBAD_SEQ"} in (
        await sandbox.evictions()
    )
    await sandbox.close_ledger()
    await sandbox.set_faults(node_lags=[0])
    assert [t["tx_hash"] for t in await sandbox.transfers()] == [tx.hash_hex()]


async def test_ingest_race_reports_a_ledger_the_lookup_had_not_seen(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    alice, _, tx, ledger = await one_landed(sandbox, server)
    await sandbox.set_faults(ingest_race_rate=1.0)
    # NOT_FOUND "as of" the very ledger that holds it: latestLedger >= the account's ledger
    # is no proof while one node commits between its lookup and its range.
    found = await server.get_transaction(tx.hash_hex())
    assert (found.status, found.latest_ledger) == (GetTransactionStatus.NOT_FOUND, ledger)
    assert await account_seq(server, alice.public_key) == (tx.transaction.sequence, ledger)
    await sandbox.set_faults(ingest_race_rate=0.0)
    assert (await server.get_transaction(tx.hash_hex())).status == GetTransactionStatus.SUCCESS


async def test_retention_window_moves_the_oldest_ledger_and_forgets_older_history(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    _, _, tx, ledger = await one_landed(sandbox, server)
    for _ in range(3):
        await sandbox.close_ledger()
    await sandbox.set_faults(retention_ledgers=2)
    found = await server.get_transaction(tx.hash_hex())
    assert found.status == GetTransactionStatus.NOT_FOUND
    assert found.oldest_ledger == ledger + 2 > ledger  # the window no longer reaches it
    assert (await server.get_health()).ledger_retention_window == 2
    for history in (server.get_transactions, server.get_events):
        with pytest.raises(SorobanRpcErrorResponse) as refused:
            await history(start_ledger=ledger)
        assert refused.value.code == INVALID_REQUEST
    await sandbox.close_ledger()
    assert (await server.get_health()).oldest_ledger == ledger + 3  # it moves every ledger


async def test_a_restarted_node_has_no_history_before_it_came_back(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    _, _, tx, ledger = await one_landed(sandbox, server)
    await sandbox.close_ledger()
    before = await server.get_transaction(tx.hash_hex())
    assert before.status == GetTransactionStatus.SUCCESS
    restarted = await sandbox.restart_node(0)
    assert restarted["restarted_at"] == restarted["oldest_ledger"] == ledger + 1
    after = await server.get_transaction(tx.hash_hex())
    assert after.status == GetTransactionStatus.NOT_FOUND
    assert after.oldest_ledger == ledger + 1 > before.oldest_ledger  # the tell: it jumped
    with pytest.raises(SorobanRpcErrorResponse):
        await server.get_events(start_ledger=ledger)
    for _ in range(2):
        await sandbox.close_ledger()
    assert (await server.get_health()).oldest_ledger == ledger + 1  # its history grows from there
    with pytest.raises(RuntimeError, match="node: must be 0..0"):
        await sandbox.restart_node(3)  # there is one node


async def test_behind_a_load_balancer_only_the_restarted_node_lost_its_history(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    _, _, tx, ledger = await one_landed(sandbox, server)
    await sandbox.close_ledger()
    await sandbox.set_faults(node_lags=[0, 0])
    await sandbox.restart_node(1)
    seen = set()
    for _ in range(24):
        found = await server.get_transaction(tx.hash_hex())
        seen.add((found.status, found.oldest_ledger))
    assert seen == {(GetTransactionStatus.SUCCESS, 1), (GetTransactionStatus.NOT_FOUND, ledger + 1)}


async def test_random_restarts_happen_at_ledger_close(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    await stalled_pair(sandbox)
    await sandbox.set_faults(node_restart_rate=1.0, node_lags=[0, 0, 0])
    closed = [(await sandbox.close_ledger())["sequence"] for _ in range(4)]
    nodes = await sandbox.nodes()
    restarted = {n["restarted_at"] for n in nodes} - {None}
    assert restarted and restarted <= set(closed)
    every = [r for n in nodes for r in n["restarts"]]
    assert len(every) == len(closed) and set(every) <= set(closed)  # one restart a close
    assert all(n["restarts"][-1:] == ([n["restarted_at"]] if n["restarts"] else [])
               for n in nodes)


async def payment(
    sandbox: InProcessSandbox, source: Keypair, to: str, lumens: int
) -> TransactionEnvelope:
    """A signed classic payment at the source's current sequence (read from the admin API, so
    building it draws nothing from the seed)."""
    account = await sandbox.account(source.public_key)
    assert account is not None
    tx = (
        TransactionBuilder(Account(source.public_key, account["sequence"]), sandbox.passphrase, 100)
        .append_payment_op(to, Asset.native(), str(lumens))  # each one a distinct hash
        .set_timeout(60)
        .build()
    )
    tx.sign(source)
    return tx


async def trace(seed: int, settings: dict[str, Any]) -> list[Any]:
    """What a client observes over a fixed script, with ``settings`` on from a fixed point:
    one payment sent per ledger, and every transaction sent so far looked up after each."""
    config = SandboxConfig(ledger_interval=0.1, seed=seed)
    async with InProcessSandbox(config, stall_ledgers=True) as sandbox:
        server = SorobanServerAsync(sandbox.rpc_url, client=AiohttpClient())
        try:
            alice, bob = await funded_pair(sandbox)
            for _ in range(3):
                await sandbox.close_ledger()
            await sandbox.set_faults(drop_rate=1.0)
            sent = [await payment(sandbox, bob, alice.public_key, 1)]
            await server.send_transaction(sent[0])  # dropped: left open, for replays
            await sandbox.set_faults(drop_rate=0.0, **settings)
            seen: list[Any] = []
            for _ in range(6):
                sent.append(await payment(sandbox, alice, bob.public_key, len(sent)))
                answer = await server.send_transaction(sent[-1])
                seen.append((answer.status, answer.latest_ledger))
                seen.append((await sandbox.close_ledger())["sequence"])
                for tx in sent:
                    found = await server.get_transaction(tx.hash_hex())
                    seen.append((found.status, found.latest_ledger, found.oldest_ledger))
                seen.append([n["restarted_at"] for n in await sandbox.nodes()])
                seen.append([(r["ledger"], r["status"]) for r in await sandbox.replays()])
            return seen
        finally:
            await server.close()


@pytest.mark.parametrize(
    "settings",
    [
        {"node_lags": [0, 2]},
        {"ingest_race_rate": 0.5},
        {"node_restart_rate": 0.5, "node_lags": [0, 0]},
        {"replay_rate": 0.3},
        {"tx_store_lag_ledgers": 1, "node_lags": [0, 1, 3], "retention_ledgers": 4},
    ],
)
async def test_a_seed_replays_the_same_lies(settings: dict[str, Any]) -> None:
    first = await trace(5, settings)
    assert first == await trace(5, settings)
    assert first != await trace(6, settings)  # and the seed, not the settings alone, decides


async def test_an_outsider_replays_an_envelope_that_can_still_land(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    alice, bob = await stalled_pair(sandbox)
    tx = await signed(sandbox, server, alice, bob.public_key)
    await sandbox.set_faults(drop_rate=1.0)
    assert (await server.send_transaction(tx)).status == SendTransactionStatus.PENDING
    await sandbox.close_ledger()
    assert await sandbox.transaction(tx.hash_hex()) is None  # dropped: a client may think dead
    await sandbox.set_faults(drop_rate=0.0, replay_rate=1.0)
    replayed_in = (await sandbox.close_ledger())["sequence"]
    assert await sandbox.replays() == [
        {"hash": tx.hash_hex(), "ledger": replayed_in, "status": "PENDING", "error": None}
    ]
    await sandbox.close_ledger()
    included = await sandbox.transaction(tx.hash_hex())
    assert included is not None and included["successful"]


async def test_replay_lands_nothing_that_can_no_longer_land(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    alice, bob = await stalled_pair(sandbox)
    first = await signed(sandbox, server, alice, bob.public_key)
    rival = await transfer_tx(server, sandbox.passphrase, alice, bob.public_key, 6)
    rival.sign(alice)  # the same sequence number as ``first``: only one can ever land
    expired = await transfer_tx(server, sandbox.passphrase, bob, alice.public_key, 7, valid_for=1)
    expired.sign(bob)
    await sandbox.set_faults(drop_rate=1.0)
    assert (await server.send_transaction(expired)).status == SendTransactionStatus.PENDING
    await sandbox.set_faults(drop_rate=0.0)
    ledger = await landed(sandbox, server, first)
    rival_answer = await server.send_transaction(rival)
    assert result_code(rival_answer.error_result_xdr or "") == Code.txBAD_SEQ
    while (await sandbox.close_ledger())["close_time"] <= (
        expired.transaction.preconditions.time_bounds.max_time  # type: ignore[union-attr]
    ):
        pass
    await sandbox.set_faults(replay_rate=1.0)
    for _ in range(3):
        await sandbox.close_ledger()
    assert await sandbox.replays() == []  # used sequence, passed maxTime, already included
    assert [t["tx_hash"] for t in await sandbox.transfers()] == [first.hash_hex()]
    assert (await sandbox.transaction(first.hash_hex()) or {})["ledger"] == ledger


async def test_an_outsider_submits_an_envelope_it_was_handed(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    alice, bob = await stalled_pair(sandbox)
    handed_out = await transfer_tx(server, sandbox.passphrase, alice, bob.public_key, 9)
    handed_out.sign(alice)  # the custody tool signs with the key it holds...
    answer = await sandbox.submit_as_outsider(handed_out.to_xdr())  # ...and tells nobody
    assert (answer["status"], answer["hash"]) == ("PENDING", handed_out.hash_hex())
    await sandbox.close_ledger()
    found = await wait_for(server, handed_out.hash_hex())
    assert found.status == GetTransactionStatus.SUCCESS


async def test_pay_outside_moves_funds_nobody_asked_for(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    alice, bob = await funded_pair(sandbox)  # ledgers close on the clock
    paid = await sandbox.pay_outside(alice, bob.public_key, 1_234_567)
    transfers = await sandbox.transfers()
    assert [
        (t["tx_hash"], t["function"], t["from"], t["to"], t["amount_stroops"]) for t in transfers
    ] == [(paid, "payment", alice.public_key, bob.public_key, 1_234_567)]
    assert (await server.get_transaction(paid)).status == GetTransactionStatus.SUCCESS


async def test_lies_are_settable_at_start_up_and_bad_ones_fail_fast() -> None:
    lies = {"node_lags": [0, 2], "tx_store_lag_ledgers": 1, "entries_follow_store": True}
    async with RunningSandbox(ledger_interval=0.1, seed=4, faults=lies) as sandbox:
        faults = await sandbox.faults()
        assert {name: faults[name] for name in lies} == lies
        assert len(await sandbox.nodes()) == 2
    with pytest.raises(RuntimeError, match="exited early"):
        async with RunningSandbox(faults={"node_lags": [0, 40]}):
            pass


async def test_balanced_methods_spread_only_those_calls_over_the_lagging_nodes():
    """node_lags with balanced_methods: getTransaction answers come from either node, every
    other method from the first (current) one."""
    async with RunningSandbox(ledger_interval=0.1, seed=5, faults={
            "node_lags": [0, 3], "balanced_methods": ["getTransaction"]}) as sandbox:
        for _ in range(6):
            await sandbox.close_ledger()
        server = SorobanServerAsync(sandbox.rpc_url, client=AiohttpClient())
        try:
            latest = {(await server.get_latest_ledger()).sequence for _ in range(12)}
            seen = {(await server.get_transaction("00" * 32)).latest_ledger for _ in range(24)}
        finally:
            await server.close()
    assert len(latest) <= 2, "getLatestLedger comes from the current node only"
    assert max(seen) - min(seen) >= 3, "getTransaction answers come from both nodes"
