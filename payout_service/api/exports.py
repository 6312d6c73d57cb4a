"""ExportPayouts, called from PayoutServicer (payout_service.api.payout): the request decoded
into the core's terms, the app's chunks encoded as messages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from payout_service.api.convert import PB_TO_STATE
from payout_service.app.desk import PayoutDesk
from payout_service.app.exports import export_chunks
from payout_service.core.errors import FieldViolation, ValidationFailed
from payout_service.core.exports import ExportFormat, ExportRequest, validate_export_request
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb

FORMAT_FROM_PB = {pb.EXPORT_FORMAT_CSV: ExportFormat.CSV.value,
                  pb.EXPORT_FORMAT_JSONL: ExportFormat.JSONL.value}


def _time(message: pb.ExportPayoutsRequest, name: str) -> datetime | None:
    if not message.HasField(name):
        return None
    stamp: Timestamp = getattr(message, name)
    try:
        when: datetime = stamp.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise ValidationFailed([FieldViolation(name, "is not a valid time")]) from None
    return when


def export_request(message: pb.ExportPayoutsRequest) -> ExportRequest:
    return validate_export_request(
        format_name=FORMAT_FROM_PB.get(message.format),
        created_from=_time(message, "created_from"),
        created_before=_time(message, "created_before"),
        states=[PB_TO_STATE.get(s) for s in message.states],
        round_id=message.round_id, run_id=message.run_id, destination=message.destination,
        rows_per_chunk=message.rows_per_chunk, resume_cursor=message.resume_cursor,
    )


async def export_payouts(
    desk: PayoutDesk, message: pb.ExportPayoutsRequest
) -> AsyncIterator[pb.ExportPayoutsResponse]:
    request = export_request(message)
    async for chunk in export_chunks(desk.store.pool, request):
        yield pb.ExportPayoutsResponse(data=chunk.data, row_count=chunk.row_count,
                                       resume_cursor=chunk.resume_cursor)
