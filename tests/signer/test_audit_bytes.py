"""The audit log verifies the exact bytes of each line, and its checkpoint matches the head
whenever the signer has answered: against the real signer (SoftHSM token, mTLS), and on
logs written in the earlier line format."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path

import grpc
import pytest
from stellar_sdk import TransactionEnvelope

from signer_service.audit import GENESIS, AuditError, AuditLog, verify_log
from signer_service.audit_format import ChainKey, Checkpoint, canonical
from signer_service.testing import SignerFixture, running_signer, serving
from stellar_payouts_pb.signer.v1 import signer_pb2, signer_pb2_grpc
from tests.signer.envelopes import PASSPHRASE, build_tx
from tests.signer.test_audit import World


def sign_request(signer: SignerFixture, sequence: int) -> signer_pb2.SignTransactionRequest:
    return signer_pb2.SignTransactionRequest(
        key_id=signer.key_id, request_id=uuid.uuid4().hex,
        envelope_xdr=TransactionEnvelope(build_tx(sequence=sequence), PASSPHRASE).to_xdr())


async def verify(signer: SignerFixture) -> tuple[int, str]:
    """`signerctl audit verify`: exit code and what it printed."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "signer_service.cli", "audit", "verify", "--config",
        str(signer.config_path), env=signer.env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    return int(proc.returncode or 0), out.decode()


async def test_a_duplicate_key_in_front_of_a_signed_record_fails_verify_and_start(tmp_path):
    """`"decision":"refuse",` inserted at the front of a record that signed: a reader taking
    the first key sees a refusal, a MAC over the parsed record (last key wins) would still
    match. The MAC covers the line's bytes."""
    async with running_signer(tmp_path, network_passphrase=PASSPHRASE,
                              backend="pkcs11") as signer:
        async with grpc.aio.secure_channel(signer.address, signer.channel_credentials()) as ch:
            await signer_pb2_grpc.SignerServiceStub(ch).SignTransaction(
                sign_request(signer, 1), timeout=10)
    lines = signer.audit_log.read_bytes().splitlines(keepends=True)
    assert json.loads(lines[0])["decision"] == "allow"
    lines[0] = b'{"decision":"refuse",' + lines[0][1:]
    signer.audit_log.write_bytes(b"".join(lines))
    code, out = await verify(signer)
    assert code == 1 and out.startswith("TAMPERED: line 1: "), out
    with pytest.raises(RuntimeError, match=r"exited \(3\).*does not verify at line 1"):
        async with serving(signer, startup_timeout=20):
            pass


@pytest.mark.parametrize("edit", [
    lambda line: line.replace(b'"decision":"allow"', b'"decision": "allow"'),  # spacing
    lambda line: line.replace(b'"rule":"none"', b'"rule":"\\u006eone"'),  # another escaping
    lambda line: line.replace(b'"seq":1,', b'"seq":1,"seq":1,'),  # a duplicate, same value
], ids=["spacing", "escaping", "duplicate-same-value"])
async def test_any_other_serialisation_of_the_same_record_fails(tmp_path, edit):
    world = World(tmp_path)
    await world.write(2)
    lines = world.log.read_bytes().splitlines(keepends=True)
    changed = edit(lines[0])
    assert changed != lines[0] and json.loads(changed) == json.loads(lines[0])
    world.log.write_bytes(changed + lines[1])
    result = verify_log(world.log, world.key)
    assert result.first_bad_line == 1, result.reason


def legacy_line(key: ChainKey, body: dict) -> tuple[dict, bytes]:
    """A record as the earlier format wrote it: MAC over the canonical JSON without hash,
    the hash then placed among the sorted keys."""
    record = {**body, "hash": key.mac(canonical(body))}
    return record, canonical(record) + b"\n"


def legacy_log(path: Path, key: ChainKey, count: int) -> list[dict]:
    records, prev = [], GENESIS
    data = b""
    for seq in range(1, count + 1):
        record, line = legacy_line(key, {"time": 1_800_000_000.0 + seq, "kind": "transaction",
                                         "decision": "allow", "amount_stroops": seq,
                                         "key_id": "payout", "seq": seq, "prev_hash": prev})
        records.append(record)
        data += line
        prev = record["hash"]
    path.write_bytes(data)
    path.with_name(path.name + ".checkpoint").write_bytes(
        Checkpoint(count, prev).to_json(key))
    return records


async def test_a_log_in_the_earlier_format_still_verifies_and_continues_in_the_new(tmp_path):
    world = World(tmp_path)
    old = legacy_log(world.log, world.key, 3)
    assert verify_log(world.log, world.key).ok
    log = AuditLog(world.log, world.key)
    assert [r["hash"] for r in log.open()] == [r["hash"] for r in old]
    new = await log.append({"key_id": "payout", "decision": "allow"})
    log.close()
    assert new["prev_hash"] == old[-1]["hash"]
    last = world.log.read_bytes().splitlines()[-1]
    assert last.endswith(f',"hash":"{new["hash"]}"}}'.encode())  # the new format
    out = world.verify()
    assert out.returncode == 0 and "ok: 4 records" in out.stdout, out.stdout + out.stderr


async def test_the_earlier_format_is_held_to_the_same_bytes(tmp_path):
    world = World(tmp_path)
    legacy_log(world.log, world.key, 2)
    lines = world.log.read_bytes().splitlines(keepends=True)
    lines[0] = b'{"decision":"refuse",' + lines[0][1:]
    world.log.write_bytes(b"".join(lines))
    result = verify_log(world.log, world.key)
    assert (result.first_bad_line, result.reason) == (1, "not a canonical record "
                                                         "(duplicate key)")


async def test_an_earlier_format_line_after_a_new_one_is_refused(tmp_path):
    world = World(tmp_path)
    records = await world.write(2)  # the new format
    _, line = legacy_line(world.key, {k: v for k, v in {**records[1], "seq": 3,
                                                          "prev_hash": records[1]["hash"]
                                                          }.items() if k != "hash"})
    with world.log.open("ab") as f:
        f.write(line)
    with pytest.raises(AuditError, match="line 3: a line of the older format"):
        AuditLog(world.log, world.key).open()


def checkpoint_of(signer: SignerFixture) -> tuple[int, str]:
    body = json.loads(signer.audit_log.with_name("audit.log.checkpoint").read_bytes())
    return body["records"], body["head"]


async def test_the_checkpoint_file_matches_the_head_as_soon_as_a_request_is_answered(tmp_path):
    """A checkpoint that lags the answers (say, rewritten at most every 0.1 s) lets a
    rollback of the log by its last records go unseen until the next request."""
    async with running_signer(tmp_path, network_passphrase=PASSPHRASE,
                              backend="pkcs11") as signer, \
            grpc.aio.secure_channel(signer.address, signer.channel_credentials()) as ch:
        stub = signer_pb2_grpc.SignerServiceStub(ch)
        for sequence in range(1, 6):
            await stub.SignTransaction(sign_request(signer, sequence), timeout=10)
            lines = signer.audit_log.read_bytes().splitlines()
            head = json.loads(lines[-1])
            assert checkpoint_of(signer) == (len(lines), head["hash"]) == \
                (head["seq"], head["hash"])
        # Concurrent requests share a write: the checkpoint counts all of them on answer.
        await asyncio.gather(*(stub.SignTransaction(sign_request(signer, 10 + i), timeout=10)
                               for i in range(20)))
        lines = signer.audit_log.read_bytes().splitlines()
        assert checkpoint_of(signer) == (25, json.loads(lines[-1])["hash"])
