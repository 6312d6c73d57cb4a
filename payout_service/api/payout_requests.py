"""CreatePayoutBatch, GetPayoutStats and GetPayoutStatement, called from PayoutServicer
(payout_service.api.payout)."""

from __future__ import annotations

from payout_service.adapters.stats import payout_stats, statement_lines
from payout_service.api.convert import STATE_TO_PB, memo_from_pb, payout_to_pb, timestamp, total
from payout_service.app.batch import Outcome, create_payout_batch
from payout_service.app.desk import PayoutDesk
from payout_service.core.errors import FieldViolation, NotFoundError, ValidationFailed
from payout_service.core.statements import StatementLine, build_statement, statement_scope
from payout_service.core.validation import destination_problem, quote
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb

OUTCOME_TO_PB = {
    Outcome.ACCEPTED: pb.BATCH_ITEM_OUTCOME_ACCEPTED,
    Outcome.DUPLICATE: pb.BATCH_ITEM_OUTCOME_DUPLICATE,
    Outcome.INVALID: pb.BATCH_ITEM_OUTCOME_INVALID,
}


async def create_batch(
    desk: PayoutDesk, request: pb.CreatePayoutBatchRequest, *, actor: str, correlation_id: str
) -> pb.CreatePayoutBatchResponse:
    items = [
        {
            "payout_id": i.payout_id, "destination": i.destination, "amount": i.amount,
            "asset": i.asset, "idempotency_key": i.idempotency_key,
            "metadata": dict(i.metadata), "reference": i.reference,
            "memo": memo_from_pb(i.memo if i.HasField("memo") else None),
        }
        for i in request.items
    ]
    batch_id, results = await create_payout_batch(
        desk, items, request.batch_id, actor=actor, correlation_id=correlation_id,
        max_items=desk.config.max_bulk_items,
    )
    response = pb.CreatePayoutBatchResponse(batch_id=batch_id)
    for r in results:
        item = response.results.add(index=r.index, outcome=OUTCOME_TO_PB[r.outcome])
        if r.payout is not None:
            item.payout.CopyFrom(payout_to_pb(r.payout))
        item.errors.extend(pb.FieldError(field=e.field, description=e.description)
                           for e in r.errors)
    return response


async def get_stats(
    desk: PayoutDesk, request: pb.GetPayoutStatsRequest
) -> pb.GetPayoutStatsResponse:
    if request.destination and (problem := destination_problem(request.destination)):
        raise ValidationFailed([FieldViolation("destination", problem)])
    s = await payout_stats(desk.store.pool, request.destination)
    return pb.GetPayoutStatsResponse(stats=pb.PayoutStats(
        count=s.count, confirmed_count=s.confirmed_count, failed_count=s.failed_count,
        pending_count=s.pending_count, total_gross=total(s.total_gross_stroops),
        total_fees=total(s.total_fees_stroops),
        total_net_confirmed=total(s.total_net_confirmed_stroops), success_rate=s.success_rate,
    ))


def _line(line: StatementLine) -> pb.StatementLine:
    return pb.StatementLine(
        state=STATE_TO_PB[line.state] if line.state else pb.PAYOUT_STATE_UNSPECIFIED,
        asset=line.asset, count=line.count, gross=total(line.gross), fees=total(line.fees),
        net=total(line.net), network_fees=total(line.network_fees),
        network_fees_known=line.network_fees_known)


async def get_statement(
    desk: PayoutDesk, request: pb.GetPayoutStatementRequest
) -> pb.GetPayoutStatementResponse:
    scope = statement_scope(request.round_id, request.run_id)
    read = await statement_lines(desk.store.pool, scope)
    if read is None:
        what = f"round {quote(request.round_id)}" if scope.round_id \
            else f"scheduled run {quote(request.run_id)}"
        raise NotFoundError(f"{what} not found")
    lines, as_of = read
    statement = build_statement(lines)
    return pb.GetPayoutStatementResponse(
        round_id=request.round_id, run_id=request.run_id,
        lines=[_line(ln) for ln in statement.lines],
        totals=[_line(ln) for ln in statement.totals], count=statement.count,
        as_of=timestamp(as_of))
