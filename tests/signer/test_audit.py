"""The keyed audit log: eight ways of tampering with it are each detected by
`signerctl audit verify`, and the writer survives torn records and failed writes."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from stellar_sdk import Keypair

from signer_service.audit import (
    GENESIS,
    AuditError,
    AuditLog,
    ChainKey,
    Checkpoint,
    checkpoint_path,
    verify_bytes,
    verify_log,
)
from signer_service.audit_format import canonical, line_of, seal
from signer_service.backends.hot import HotKeyBackend
from signer_service.certs import generate_dev_certs
from signer_service.spending import DAY_SECONDS, SpentLedger
from tests.signer.envelopes import PASSPHRASE

CONFIG = """
[server]
listen_addr = "127.0.0.1:0"
network_passphrase = "{pp}"
[tls]
cert = "{d}/server.pem"
key = "{d}/server.key"
client_ca = "{d}/ca.pem"
[audit]
path = "{d}/audit.log"
[[keys]]
id = "payout"
backend = "hot"
secret_file = "{d}/hot-secret"
allowed_clients = ["payout-service"]
[keys.policy]
network_passphrase = "{pp}"
source_accounts = ["*"]
contract_ids = ["*"]
function_names = ["transfer"]
max_fee_stroops = 100
max_amount_stroops_per_tx = 10
max_amount_stroops_per_day = 100
max_time_window_seconds = 300
"""


class World:
    """A hot-key signer config (never started) whose audit key the test can derive."""

    def __init__(self, folder: Path) -> None:
        generate_dev_certs(folder, ["payout-service"])
        keypair = Keypair.random()
        (folder / "hot-secret").write_text(keypair.secret + "\n")
        self.config = folder / "signer.toml"
        self.config.write_text(CONFIG.format(d=folder, pp=PASSPHRASE))
        self.log = folder / "audit.log"
        self.key = ChainKey(HotKeyBackend({"payout": keypair.secret}).audit_chain_key("payout"))

    async def write(self, n: int = 6) -> list[dict]:
        log = AuditLog(self.log, self.key)
        log.open()
        records = [await log.append({
            "key_id": "payout", "decision": "allow" if i % 2 == 0 else "refuse",
            "rule": "none" if i % 2 == 0 else "max_fee_stroops", "tx_hash": f"{i:064x}",
            "amount_stroops": 10 * (i + 1), "request_id": f"r{i}",
        }) for i in range(n)]
        log.close()
        return records

    def verify(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "signer_service.cli", "audit", "verify", "--config",
             str(self.config), *extra], capture_output=True, text=True, check=False, timeout=60)

    def lines(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def save(self, records: list[dict]) -> None:
        self.log.write_bytes(b"".join(line_of(r) for r in records))


def rechain(records: list[dict], start: int = 0, key: ChainKey | None = None) -> list[dict]:
    """What an attacker with write access does: recompute seq, links and hashes. Without the
    audit key they can only use a key of their own (or plain SHA-256, as the old log did)."""
    key = key or ChainKey(secrets.token_bytes(32))
    prev = records[start - 1]["hash"] if start else GENESIS
    for i, r in enumerate(records[start:], start=start):
        r["seq"], r["prev_hash"] = i + 1, prev
        r.pop("hash", None)
        records[i], _ = seal(key, r)
        prev = records[i]["hash"]
    return records


@pytest.fixture
def world(tmp_path) -> World:
    return World(tmp_path)


async def test_an_untouched_log_verifies_with_the_signers_key_only(world):
    records = await world.write()
    assert records[0]["prev_hash"] == GENESIS
    for before, after in zip(records, records[1:], strict=False):
        assert after["prev_hash"] == before["hash"]
    out = world.verify()
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"ok: 6 records, head {records[-1]['hash']}" in out.stdout
    assert verify_log(world.log, world.key).ok
    other = ChainKey(secrets.token_bytes(32))
    with pytest.raises(AuditError, match="checkpoint MAC does not verify"):
        verify_log(world.log, other)
    result = verify_bytes(world.log.read_bytes(), other, [])
    assert (result.first_bad_line, result.records) == (1, 0)


def edit(rs: list[dict]) -> list[dict]:
    rs[2]["decision"], rs[2]["amount_stroops"] = "refuse", 0
    return rs


def rechain_after_edit(rs: list[dict]) -> list[dict]:
    return rechain(edit(rs), 2)


def delete_first_and_rechain(rs: list[dict]) -> list[dict]:
    return rechain(rs[1:])


def append_forged(rs: list[dict]) -> list[dict]:
    forged = {**rs[-1], "decision": "refuse", "amount_stroops": 0, "request_id": "forged"}
    return rechain([*rs, forged], len(rs))


def delete_middle(rs: list[dict]) -> list[dict]:
    return rs[:2] + rs[3:]


def swap(rs: list[dict]) -> list[dict]:
    return rs[:2] + [rs[3], rs[2]] + rs[4:]


def insert_copy(rs: list[dict]) -> list[dict]:
    return rs[:4] + [rs[1]] + rs[4:]


def truncate_tail(rs: list[dict]) -> list[dict]:
    return rs[:-2]


# The eight tamperings of the issue; the old log caught the last three only, and missed
# rechaining, deleting the first record, forged appends and truncation.
TAMPERINGS = {
    "edit a field": (edit, 3),
    "rechain after an edit": (rechain_after_edit, 3),
    "delete the first record and rechain": (delete_first_and_rechain, 1),
    "append a forged record with recomputed hashes": (append_forged, 7),
    "truncate the tail": (truncate_tail, 5),
    "delete a middle record": (delete_middle, 3),
    "swap two records": (swap, 3),
    "insert a copy of a record": (insert_copy, 5),
}


@pytest.mark.parametrize("name", list(TAMPERINGS))
async def test_signerctl_audit_verify_detects_each_tampering(world, name):
    mutate, bad_line = TAMPERINGS[name]
    await world.write()
    world.save(mutate(world.lines()))
    out = world.verify()
    assert out.returncode == 1, out.stdout + out.stderr
    assert out.stdout.startswith(f"TAMPERED: line {bad_line}:"), out.stdout
    with pytest.raises(AuditError):
        AuditLog(world.log, world.key).open()


async def test_truncation_with_an_old_checkpoint_file_is_caught_by_a_published_checkpoint(world):
    # The attacker keeps a copy of an early checkpoint file and restores it with the cut log:
    # the files agree, but the checkpoint published earlier (RPC / metrics) does not.
    await world.write(3)
    old_checkpoint = checkpoint_path(world.log).read_bytes()
    records = await world.write(3)  # three more, continuing the log
    published = Checkpoint(6, records[-1]["hash"])
    world.save(world.lines()[:3])
    checkpoint_path(world.log).write_bytes(old_checkpoint)
    assert world.verify().returncode == 0  # the files alone are consistent...
    out = world.verify("--expect-records", "6", "--expect-head", published.head)
    assert out.returncode == 1 and "truncated: the checkpoint counts 6" in out.stdout


async def test_a_deleted_checkpoint_file_fails_closed(world):
    await world.write()
    checkpoint_path(world.log).unlink()
    out = world.verify()
    assert out.returncode == 1 and "checkpoint file audit.log.checkpoint is missing" in out.stdout


async def test_an_edited_checkpoint_file_fails_closed(world):
    await world.write()
    path = checkpoint_path(world.log)
    body = json.loads(path.read_text())
    body["records"] = 2
    path.write_bytes(canonical(body))  # well formed, so only the MAC can tell
    out = world.verify()
    assert out.returncode == 1 and "MAC does not verify" in out.stdout


async def test_a_torn_final_record_is_moved_aside_with_a_repair_record(world):
    await world.write(3)
    with world.log.open("ab") as f:
        f.write(b'{"amount_s')  # a write cut short, as the issue found it
    assert "torn final record (10 bytes" in world.verify().stdout
    log = AuditLog(world.log, world.key)
    records = log.open()
    assert [r["kind"] for r in records[3:]] == ["repair"]
    assert records[3]["rule"] == "torn_record" and records[3]["seq"] == 4
    (aside,) = world.log.parent.glob("audit.log.torn-*")
    assert aside.read_bytes() == b'{"amount_s'
    await log.append({"key_id": "payout", "decision": "allow"})
    log.close()
    out = world.verify()
    assert out.returncode == 0 and "ok: 5 records" in out.stdout and "torn" not in out.stdout


async def test_a_broken_line_that_is_not_the_torn_tail_fails_closed(world):
    await world.write(3)
    content = world.log.read_bytes().split(b"\n")
    world.log.write_bytes(b"\n".join(content[:1] + [b'{"amount_s'] + content[1:]))
    with pytest.raises(AuditError, match="line 2: not a JSON object"):
        AuditLog(world.log, world.key).open()


async def test_a_torn_tail_cannot_hide_a_truncation(world):
    # Cutting the last record's newline off would make it "torn": the checkpoint still counts it.
    await world.write(3)
    world.log.write_bytes(world.log.read_bytes()[:-1])
    with pytest.raises(AuditError, match="truncated"):
        AuditLog(world.log, world.key).open()


async def test_concurrent_appends_share_fsyncs_but_keep_one_valid_chain(world):
    log = AuditLog(world.log, world.key)
    log.open()
    records = await asyncio.gather(*(log.append({"key_id": "k", "n": i}) for i in range(200)))
    log.close()
    assert [r["seq"] for r in records] == list(range(1, 201))
    result = verify_log(world.log, world.key)
    assert result.ok and result.records == 200
    assert [r["n"] for r in world.lines()] == list(range(200))


async def test_reopening_continues_the_chain(world):
    first = await world.write(2)
    log = AuditLog(world.log, world.key)
    assert len(log.open()) == 2
    third = await log.append({"key_id": "payout", "decision": "allow"})
    log.close()
    assert third["prev_hash"] == first[-1]["hash"] and third["seq"] == 3
    assert verify_log(world.log, world.key).ok


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
