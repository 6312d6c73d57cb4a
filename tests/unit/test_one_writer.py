"""Invariant 7: payout states and attempt statuses are written in one place only.

Greps the service's source for any statement that sets `payouts.state` or
`payout_attempts.status`; only payout_service/adapters/transitions.py may (through its guarded
UPDATE … WHERE state = ANY(allowed)). INSERTs create rows in their first state and are not
transitions.
"""

from __future__ import annotations

import re
from pathlib import Path

import payout_service

PACKAGE = Path(payout_service.__file__).parent
WRITER = PACKAGE / "adapters" / "transitions.py"
STATE_WRITE = re.compile(
    r"UPDATE\s+(payouts|payout_attempts)\b(?:(?!UPDATE\b|INSERT\b|SELECT\b).)*?"
    r"\bSET\b(?:(?!WHERE\b).)*?\b(state|status)\s*=",
    re.IGNORECASE | re.DOTALL,
)


def state_writes(text: str) -> list[str]:
    return [m.group(0)[:80] for m in STATE_WRITE.finditer(text)]


def test_the_grep_sees_a_state_write():
    """The check itself can fail: these are the shapes it must catch."""
    assert state_writes("UPDATE payouts SET state = 'FAILED' WHERE id = $1")
    assert state_writes('"""UPDATE payout_attempts SET result_code = $3,\n status = $4"""')
    assert state_writes("update payouts p set needs_attempt = true, state=$2")
    assert not state_writes("UPDATE payout_attempts SET send_count = send_count + 1 "
                            "WHERE status = 'sent'")
    assert not state_writes("UPDATE rounds SET state = 'CLOSED'")


def test_only_adapters_transitions_py_writes_a_payout_state_or_attempt_status():
    offenders = {}
    for path in PACKAGE.rglob("*.py"):
        if path == WRITER:
            continue
        found = state_writes(path.read_text())
        if found:
            offenders[str(path.relative_to(PACKAGE))] = found
    assert offenders == {}, f"state written outside adapters/transitions.py: {offenders}"
    assert state_writes(WRITER.read_text()), "the one writer is where the test expects it"
