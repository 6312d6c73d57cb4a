"""The hash-chained audit log: every edit, deletion, insertion or reordering is found."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from signer_service.audit import AuditError, AuditLog, verify_log
from signer_service.spending import DAY_SECONDS, SpentLedger


async def write_log(path: Path, n: int = 5) -> list[dict]:
    log = AuditLog(path)
    log.open()
    records = []
    for i in range(n):
        records.append(await log.append({
            "key_id": "payout", "decision": "allow" if i % 2 == 0 else "refuse",
            "rule": "none" if i % 2 == 0 else "max_fee_stroops", "tx_hash": f"{i:064x}",
            "amount_stroops": 100 * (i + 1), "request_id": f"r{i}", "payout_id": f"p{i}",
        }))
    log.close()
    return records


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def verify_cli(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "signer_service.cli", "audit", "verify", "--log", str(path)],
        capture_output=True, text=True, check=False,
    )


async def test_records_chain_each_to_the_one_before(tmp_path):
    path = tmp_path / "audit.log"
    records = await write_log(path)
    assert records[0]["prev_hash"] == "0" * 64
    for before, after in zip(records, records[1:], strict=False):
        assert after["prev_hash"] == before["hash"]
    result = verify_log(path)
    assert result.ok and result.records == 5 and result.last_hash == records[-1]["hash"]
    cli = verify_cli(path)
    assert cli.returncode == 0 and "5 records" in cli.stdout


async def test_an_edited_field_is_found_at_its_line(tmp_path):
    path = tmp_path / "audit.log"
    await write_log(path)
    content = lines(path)
    record = json.loads(content[2])
    record["decision"] = "allow"
    record["amount_stroops"] = 1
    content[2] = json.dumps(record) + "\n"
    path.write_text("".join(content))
    assert verify_log(path).first_bad_line == 3
    cli = verify_cli(path)
    assert cli.returncode == 1 and "line 3" in cli.stdout


async def test_an_edit_with_a_recomputed_hash_breaks_the_next_line(tmp_path):
    from signer_service.audit import canonical, record_hash

    path = tmp_path / "audit.log"
    await write_log(path)
    content = lines(path)
    record = json.loads(content[1])
    record["rule"] = "none"
    record["hash"] = record_hash(record)
    content[1] = canonical(record).decode() + "\n"
    path.write_text("".join(content))
    assert verify_log(path).first_bad_line == 3


@pytest.mark.parametrize("mutate, bad_line", [
    (lambda c: c[:1] + c[2:], 2),  # delete line 2
    (lambda c: c[:2] + [c[3], c[2]] + c[4:], 3),  # swap lines 3 and 4
    (lambda c: c[:3] + [c[1]] + c[3:], 4),  # insert a copy of line 2 as line 4
    (lambda c: c[1:], 1),  # delete the first line
    (lambda c: c[:2] + ["not json\n"] + c[2:], 3),
])
async def test_deletion_reordering_and_insertion_are_found(tmp_path, mutate, bad_line):
    path = tmp_path / "audit.log"
    await write_log(path)
    path.write_text("".join(mutate(lines(path))))
    assert verify_log(path).first_bad_line == bad_line
    cli = verify_cli(path)
    assert cli.returncode == 1 and f"line {bad_line}" in cli.stdout


async def test_reopening_continues_the_chain(tmp_path):
    path = tmp_path / "audit.log"
    first = await write_log(path, 2)
    log = AuditLog(path)
    assert len(log.open()) == 2
    third = await log.append({"key_id": "payout", "decision": "allow"})
    log.close()
    assert third["prev_hash"] == first[-1]["hash"] and third["seq"] == 3
    assert verify_log(path).ok


async def test_the_signer_refuses_to_open_a_tampered_log(tmp_path):
    path = tmp_path / "audit.log"
    await write_log(path)
    content = lines(path)
    path.write_text("".join(content[:1] + content[2:]))
    with pytest.raises(AuditError, match="line 2"):
        AuditLog(path).open()


def test_the_rolling_day_counts_only_allowed_amounts_of_the_last_24_hours():
    t = 1_800_000_000.0
    records = [
        {"key_id": "a", "decision": "allow", "amount_stroops": 5, "time": t - DAY_SECONDS - 1},
        {"key_id": "a", "decision": "allow", "amount_stroops": 7, "time": t - 10},
        {"key_id": "a", "decision": "refuse", "amount_stroops": 0, "time": t - 5},
        {"key_id": "a", "decision": "error", "amount_stroops": 0, "time": t - 4},
        {"key_id": "b", "decision": "allow", "amount_stroops": 11, "time": t - 3},
    ]
    ledger = SpentLedger.from_audit(records)
    assert ledger.spent("a", t) == 7
    assert ledger.spent("b", t) == 11
    assert ledger.spent("a", t + DAY_SECONDS) == 0
    assert ledger.spent("unknown", t) == 0


async def test_concurrent_appends_share_fsyncs_but_keep_one_valid_chain(tmp_path):
    import asyncio

    path = tmp_path / "audit.log"
    log = AuditLog(path)
    log.open()
    records = await asyncio.gather(*(log.append({"key_id": "k", "n": i}) for i in range(200)))
    log.close()
    assert [r["seq"] for r in records] == list(range(1, 201))
    result = verify_log(path)
    assert result.ok and result.records == 200
    assert [json.loads(line)["n"] for line in lines(path)] == list(range(200))
