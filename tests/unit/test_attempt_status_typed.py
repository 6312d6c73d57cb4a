"""An attempt read from its row carries its status as AttemptStatus, never a bare string."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest

from payout_service.adapters.payout_store import _attempt
from payout_service.core.model import Attempt
from payout_service.core.states import AttemptStatus


def row(status: str) -> dict[str, object]:
    now = datetime.now(UTC)
    values: dict[str, object] = {name: None for name in Attempt.__dataclass_fields__}
    values.update(
        payout_id=uuid4(), number=1, source_account="G", sequence=7, min_time=now, max_time=now,
        envelope_xdr="AAAA", signed=True, tx_hash="ab" * 32, fee_stroops=100, status=status,
        send_count=0, poll_count=0, trace_context="", classic_ops=0,
        payout_ref="p-1", correlation_id="c-1",
    )
    return values


@pytest.mark.parametrize("status", list(AttemptStatus))
def test_the_row_s_status_becomes_the_enum(status):
    attempt = _attempt(row(status.value))  # type: ignore[arg-type]
    assert attempt.status is status
    assert attempt.payout_ref == "p-1"


def test_a_status_the_code_does_not_know_is_refused_when_read():
    with pytest.raises(ValueError, match="waiting"):
        _attempt(row("waiting"))  # type: ignore[arg-type]
