"""Streams an export: page after page from the store, each page rendered as one chunk with
the cursor a client resumes from."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg

from payout_service.adapters.export_store import export_page
from payout_service.core.exports import (
    ExportPosition,
    ExportRequest,
    encode_cursor,
    export_row,
    render_fitting,
)


@dataclass(frozen=True)
class ExportChunk:
    data: str
    row_count: int
    resume_cursor: str


async def export_chunks(pool: asyncpg.Pool, request: ExportRequest) -> AsyncIterator[ExportChunk]:
    """Chunks until the filter is exhausted. A fresh CSV export starts with the header (a
    header-only chunk when nothing matches); a resumed one never repeats it."""
    after = request.after
    header = after is None
    while True:
        page = await export_page(pool, request.filter, after, request.rows_per_chunk)
        rows = [export_row(r) for r in page]
        sent = 0
        for data, count in render_fitting(rows, request.format, header=header):
            sent += count
            if count:
                last = page[sent - 1]
                after = ExportPosition(last["created_at"], last["id"])
            yield ExportChunk(data, count, encode_cursor(after) if after is not None else "")
        header = False
        if len(page) < request.rows_per_chunk:
            return
