"""RoundService over gRPC and PostgreSQL: OPEN -> CLOSED -> RESOLVED -> SETTLED."""

from __future__ import annotations

import asyncio
import io
import json

import grpc
import pytest
from stellar_sdk import Keypair

from stellar_payouts_pb.payout.v1 import payout_pb2 as pb
from stellar_payouts_pb.payout.v1 import rounds_pb2 as rpb
from tests.waiting import eventually

from .conftest import confirm
from .helpers import field_violations

A, B, C = (Keypair.random().public_key for _ in range(3))


def winners(*triples: tuple[int, str, str]) -> list[rpb.Winner]:
    return [rpb.Winner(rank=r, destination=d, amount=a) for r, d, a in triples]


WINNERS = winners((1, A, "100"), (2, B, "50.5"), (3, C, "0.25"))


async def closed_round(stack, round_id: str = "round-7") -> None:
    await stack.rounds.CreateRound(rpb.CreateRoundRequest(round_id=round_id, asset="XLM"))
    await stack.rounds.CloseRound(rpb.CloseRoundRequest(round_id=round_id))


async def payouts_in_db(stack, round_id: str) -> int:
    return await stack.pool.fetchval("SELECT count(*) FROM payouts WHERE round_id = $1", round_id)


async def expect_precondition(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION, err.value.details()
    return err.value


async def test_round_goes_open_closed_resolved_with_one_payout_per_winner(stack):
    created = (await stack.rounds.CreateRound(rpb.CreateRoundRequest(round_id="round-7"))).round
    assert created.state == rpb.ROUND_STATE_OPEN and created.asset == "XLM"
    closed = (await stack.rounds.CloseRound(rpb.CloseRoundRequest(round_id="round-7"))).round
    assert closed.state == rpb.ROUND_STATE_CLOSED and closed.HasField("closed_at")

    resolved = await stack.rounds.ResolveRound(
        rpb.ResolveRoundRequest(round_id="round-7", winners=WINNERS)
    )
    assert resolved.round.state == rpb.ROUND_STATE_RESOLVED
    assert resolved.round.winner_count == 3
    assert resolved.round.total.stroops == 1_000_000_000 + 505_000_000 + 2_500_000
    assert resolved.round.resolved_by  # the caller's identity (peer address in plaintext)
    by_id = {p.payout_id: p for p in resolved.payouts}
    assert set(by_id) == {"round-7-winner-1", "round-7-winner-2", "round-7-winner-3"}
    first = by_id["round-7-winner-1"]
    assert first.idempotency_key == "round:round-7:rank:1"
    assert first.destination == A and first.round_id == "round-7"
    assert first.state == pb.PAYOUT_STATE_BUILT

    got = await stack.rounds.GetRound(rpb.GetRoundRequest(round_id="round-7"))
    assert {p.payout_id for p in got.payouts} == set(by_id)
    listed = await stack.payouts.ListPayouts(pb.ListPayoutsRequest(round_id="round-7"))
    assert len(listed.payouts) == 3


async def test_every_illegal_transition_is_failed_precondition(stack):
    rounds = stack.rounds
    await rounds.CreateRound(rpb.CreateRoundRequest(round_id="r-open"))
    # OPEN -> RESOLVED skips CLOSED.
    await expect_precondition(
        rounds.ResolveRound(rpb.ResolveRoundRequest(round_id="r-open", winners=WINNERS))
    )
    await closed_round(stack, "r-closed")
    # CLOSED -> CLOSED.
    await expect_precondition(rounds.CloseRound(rpb.CloseRoundRequest(round_id="r-closed")))
    await rounds.ResolveRound(rpb.ResolveRoundRequest(round_id="r-closed", winners=WINNERS))
    # RESOLVED -> CLOSED, and RESOLVED -> RESOLVED with other winners.
    await expect_precondition(rounds.CloseRound(rpb.CloseRoundRequest(round_id="r-closed")))
    other = winners((1, A, "1"))
    await expect_precondition(
        rounds.ResolveRound(rpb.ResolveRoundRequest(round_id="r-closed", winners=other))
    )
    # SETTLED -> CLOSED / RESOLVED(other winners).
    for payout_id in ("r-closed-winner-1", "r-closed-winner-2", "r-closed-winner-3"):
        await confirm(stack.pool, payout_id)
    await wait_for_state(stack, "r-closed", rpb.ROUND_STATE_SETTLED)
    await expect_precondition(rounds.CloseRound(rpb.CloseRoundRequest(round_id="r-closed")))
    await expect_precondition(
        rounds.ResolveRound(rpb.ResolveRoundRequest(round_id="r-closed", winners=other))
    )
    assert await payouts_in_db(stack, "r-open") == 0


async def test_one_bad_winner_writes_nothing_and_the_round_stays_closed(stack):
    await closed_round(stack)
    bad = winners((1, A, "100"), (2, "GBADDESTINATION", "5"), (3, C, "abc"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.rounds.ResolveRound(rpb.ResolveRoundRequest(round_id="round-7", winners=bad))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(err.value)) == {"winners[1].destination", "winners[2].amount"}
    assert await payouts_in_db(stack, "round-7") == 0
    got = await stack.rounds.GetRound(rpb.GetRoundRequest(round_id="round-7"))
    assert got.round.state == rpb.ROUND_STATE_CLOSED and not got.payouts


async def test_a_conflict_found_inside_the_transaction_rolls_back_every_payout(stack):
    """Winner 2's derived payout_id is already taken by an unrelated payout: the insert of
    winner 1 (already done in the same SQL transaction) must be rolled back."""
    await closed_round(stack)
    await stack.payouts.CreatePayout(pb.CreatePayoutRequest(
        payout_id="round-7-winner-2", destination=B, amount="1", asset="XLM",
        idempotency_key="something-else",
    ))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.rounds.ResolveRound(
            rpb.ResolveRoundRequest(round_id="round-7", winners=WINNERS)
        )
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "winners[1].payout_id" in field_violations(err.value)
    assert await payouts_in_db(stack, "round-7") == 0
    got = await stack.rounds.GetRound(rpb.GetRoundRequest(round_id="round-7"))
    assert got.round.state == rpb.ROUND_STATE_CLOSED


async def test_repeated_resolve_with_the_same_winners_returns_the_same_payouts(stack):
    await closed_round(stack)
    request = rpb.ResolveRoundRequest(round_id="round-7", winners=WINNERS)
    first = await stack.rounds.ResolveRound(request)
    second = await stack.rounds.ResolveRound(request)
    assert [p.id for p in first.payouts] == [p.id for p in second.payouts]
    assert await payouts_in_db(stack, "round-7") == 3


async def test_concurrent_resolves_create_the_payouts_once_and_all_get_them(stack):
    await closed_round(stack)
    request = rpb.ResolveRoundRequest(round_id="round-7", winners=WINNERS)
    results = await asyncio.gather(*(stack.rounds.ResolveRound(request) for _ in range(4)))
    assert len({tuple(p.id for p in r.payouts) for r in results}) == 1
    assert await payouts_in_db(stack, "round-7") == 3
    other = rpb.ResolveRoundRequest(round_id="round-7", winners=winners((1, A, "1")))
    await expect_precondition(stack.rounds.ResolveRound(other))


async def wait_for_state(stack, round_id: str, state: int, within: float = 5.0) -> rpb.Round:
    """Reads through SQL, not GetRound, so only the background loop can have settled it."""
    names = {rpb.ROUND_STATE_SETTLED: "SETTLED", rpb.ROUND_STATE_RESOLVED: "RESOLVED"}

    async def reached() -> bool:
        current = await stack.pool.fetchval(
            "SELECT state FROM rounds WHERE round_id = $1", round_id
        )
        return bool(current == names[state])

    await eventually(reached, what=f"round {round_id} {names[state]}", within=within,
                     interval=0.02)
    return (await stack.rounds.GetRound(rpb.GetRoundRequest(round_id=round_id))).round


async def test_round_settles_by_itself_once_every_payout_is_confirmed(stack):
    """Payouts are moved to CONFIRMED in SQL as the live pipeline would (build-only here)."""
    await closed_round(stack)
    await stack.rounds.ResolveRound(rpb.ResolveRoundRequest(round_id="round-7", winners=WINNERS))
    await confirm(stack.pool, "round-7-winner-1")
    await confirm(stack.pool, "round-7-winner-2")
    await asyncio.sleep(0.2)  # several settle-loop passes
    got = await stack.rounds.GetRound(rpb.GetRoundRequest(round_id="round-7"))
    assert got.round.state == rpb.ROUND_STATE_RESOLVED, "one payout is still BUILT"
    await confirm(stack.pool, "round-7-winner-3")
    settled = await wait_for_state(stack, "round-7", rpb.ROUND_STATE_SETTLED)
    assert settled.HasField("settled_at")
    listed = await stack.rounds.ListRounds(rpb.ListRoundsRequest(states=[rpb.ROUND_STATE_SETTLED]))
    assert [r.round_id for r in listed.rounds] == ["round-7"]


async def test_unknown_round_is_not_found_and_bad_ids_are_invalid(stack):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.rounds.GetRound(rpb.GetRoundRequest(round_id="nope"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.rounds.CreateRound(rpb.CreateRoundRequest(round_id="has spaces"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "round_id" in field_violations(err.value)


async def test_round_counts_per_state_for_metrics(stack):
    from payout_service.adapters.round_store import round_counts_by_state
    from payout_service.core.rounds import RoundState

    await stack.rounds.CreateRound(rpb.CreateRoundRequest(round_id="a"))
    await closed_round(stack, "b")
    counts = await round_counts_by_state(stack.pool)
    assert counts == {RoundState.OPEN: 1, RoundState.CLOSED: 1, RoundState.RESOLVED: 0,
                      RoundState.SETTLED: 0}


async def test_list_rounds_pages_newest_first(stack):
    for i in range(5):
        await stack.rounds.CreateRound(rpb.CreateRoundRequest(round_id=f"page-{i}"))
    first = await stack.rounds.ListRounds(rpb.ListRoundsRequest(page_size=3))
    second = await stack.rounds.ListRounds(
        rpb.ListRoundsRequest(page_size=3, page_token=first.next_page_token)
    )
    ids = [r.round_id for r in first.rounds] + [r.round_id for r in second.rounds]
    assert ids == [f"page-{i}" for i in reversed(range(5))]
    assert not second.next_page_token


async def test_payoutctl_rounds_resolves_from_a_file_only_when_every_row_is_good(
    stack, tmp_path
):
    from payout_service.cli import payoutctl
    from payout_service.cli import rounds as cli_rounds

    async def ctl(*argv: str, err=None) -> str:
        args = payoutctl.parser().parse_args(list(argv))
        return cli_rounds.render(await cli_rounds.run(stack.channel, args, err=err),
                                 args.output)

    created = await ctl("-o", "table", "rounds", "create", "round-f")
    assert "state:          OPEN" in created
    await ctl("rounds", "close", "round-f")
    bad = tmp_path / "bad.csv"
    bad.write_text(f"rank,destination,amount\n1,{A},100\n2,{B},-1\n2,G,1\n")
    errors = io.StringIO()
    with pytest.raises(cli_rounds.WinnerFileRefused, match="2 bad rows; nothing was sent"):
        await ctl("rounds", "resolve", "round-f", str(bad), err=errors)
    assert [line.split(":")[1:3] for line in errors.getvalue().splitlines()] == [
        [" line 3", " amount"], [" line 4", " rank"], [" line 4", " destination"]]
    assert await payouts_in_db(stack, "round-f") == 0
    good = tmp_path / "good.csv"
    good.write_text(f"rank,destination,amount\n2,{B},50.5\n1,{A},100\n")
    resolved = json.loads(await ctl("rounds", "resolve", "round-f", str(good)))
    assert resolved["round"]["state"] == "ROUND_STATE_RESOLVED"
    assert resolved["round"]["total"]["stroops"] == str(1_505_000_000)
    again = json.loads(await ctl("rounds", "resolve", "round-f", str(good)))
    assert [p["id"] for p in again["payouts"]] == [p["id"] for p in resolved["payouts"]]
    shown = (await ctl("-o", "table", "rounds", "show", "round-f")).splitlines()
    table = shown[shown.index("") + 1:]
    assert [row.split()[:4] for row in table] == [
        ["RANK", "PAYOUT_ID", "STATE", "AMOUNT"],
        ["1", "round-f-winner-1", "BUILT", "100.0000000"],
        ["2", "round-f-winner-2", "BUILT", "50.5000000"]]
    listed = await ctl("-o", "table", "rounds", "list", "--state", "resolved")
    assert listed.splitlines()[1].split()[:4] == ["round-f", "RESOLVED", "XLM", "2"]


async def test_a_round_statement_sums_by_state_and_lists_the_same_payouts(stack):
    from payout_service.cli import payoutctl
    from payout_service.cli import statements as cli_statements

    await closed_round(stack, "round-s")
    await stack.rounds.ResolveRound(rpb.ResolveRoundRequest(round_id="round-s",
                                                            winners=WINNERS))
    await confirm(stack.pool, "round-s-winner-1")
    await stack.pool.execute(
        "UPDATE payouts SET network_fee_stroops = 100 WHERE payout_id = 'round-s-winner-1'")
    got = await stack.payouts.GetPayoutStatement(
        pb.GetPayoutStatementRequest(round_id="round-s"))
    assert [(ln.state, ln.asset, ln.count, ln.gross.stroops, ln.net.stroops,
             ln.network_fees.stroops, ln.network_fees_known) for ln in got.lines] == [
        (pb.PAYOUT_STATE_BUILT, "XLM", 2, 507_500_000, 507_500_000, 0, 0),
        (pb.PAYOUT_STATE_CONFIRMED, "XLM", 1, 1_000_000_000, 1_000_000_000, 100, 1)]
    [total] = got.totals
    assert (total.state, total.count, total.gross.decimal, total.network_fees.stroops) == (
        pb.PAYOUT_STATE_UNSPECIFIED, 3, "150.7500000", 100)
    assert got.count == 3 and got.HasField("as_of")

    for request, code in [
        (pb.GetPayoutStatementRequest(round_id="nope"), grpc.StatusCode.NOT_FOUND),
        (pb.GetPayoutStatementRequest(round_id="round-s", run_id="r"),
         grpc.StatusCode.INVALID_ARGUMENT),
        (pb.GetPayoutStatementRequest(), grpc.StatusCode.INVALID_ARGUMENT)]:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stack.payouts.GetPayoutStatement(request)
        assert err.value.code() == code

    async def ctl(*argv: str) -> tuple[int, str]:
        args = payoutctl.parser().parse_args(list(argv))
        out = io.StringIO()
        return await cli_statements.run(stack.channel, args, out, io.StringIO()), out.getvalue()

    code, text = await ctl("-o", "table", "rounds", "statement", "round-s")
    assert code == 0 and text.startswith("statement of round round-s, as of ")
    assert "TOTAL      XLM    3      150.7500000" in text
    assert "round-s-winner-3  BUILT      0.2500000" in text
    code, text = await ctl("rounds", "statement", "round-s")
    found = json.loads(text)
    assert code == 0 and found["statement"]["count"] == "3"
    assert sorted(p["payout_id"] for p in found["payouts"]) == [
        "round-s-winner-1", "round-s-winner-2", "round-s-winner-3"]
