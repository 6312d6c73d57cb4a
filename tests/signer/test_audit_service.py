"""The audit trail against the real signer process: rewriting the log does not reset the
daily limit, a torn record does not stop the signer for good, and a failed
write heals itself once the disk takes writes again."""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import secrets
import sys
import urllib.request
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families
from stellar_sdk import TransactionEnvelope

from signer_service.audit import ChainKey, Checkpoint, checkpoint_path, verify_log
from signer_service.backends.hot import HotKeyBackend
from signer_service.testing import SignerFixture, run_signerctl, running_signer
from stellar_payouts_pb.signer.v1 import signer_pb2, signer_pb2_grpc
from tests.signer.envelopes import PASSPHRASE, build_tx
from tests.signer.test_audit import rechain


def sign_request(key_id: str, amount: int, sequence: int) -> signer_pb2.SignTransactionRequest:
    return signer_pb2.SignTransactionRequest(
        key_id=key_id, request_id=uuid.uuid4().hex,
        envelope_xdr=TransactionEnvelope(build_tx(amount=amount, sequence=sequence),
                                         PASSPHRASE).to_xdr())


class Restarted:
    def __init__(self, proc: asyncio.subprocess.Process, started: dict[str, Any] | None,
                 stderr: str) -> None:
        self.proc, self.started, self.stderr = proc, started, stderr

    @property
    def address(self) -> str:
        assert self.started is not None, self.stderr
        return f"127.0.0.1:{self.started['port']}"


@contextlib.asynccontextmanager
async def restart(signer: SignerFixture) -> AsyncIterator[Restarted]:
    """The same config, token and audit log in a new signer process."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "signer_service", "--config", str(signer.config_path),
        env=signer.env, stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL)
    assert proc.stderr is not None
    lines: list[str] = []
    started = None
    try:
        while started is None:
            raw = await asyncio.wait_for(proc.stderr.readline(), 30)
            if not raw:
                await proc.wait()
                break
            lines.append(raw.decode().rstrip())
            with contextlib.suppress(ValueError):
                event = json.loads(lines[-1])
                if isinstance(event, dict) and event.get("message") == "signer-service started":
                    started = event
        yield Restarted(proc, started, "\n".join(lines))
    finally:
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()


def hot_key(signer: SignerFixture) -> ChainKey:
    secret = (signer.config_path.parent / "hot-secret").read_text().strip()
    return ChainKey(HotKeyBackend({"k": secret}).audit_chain_key("k"))


async def test_rewriting_the_log_to_reset_the_daily_limit_stops_the_signer(tmp_path):
    policy = {"max_amount_stroops_per_day": 2_500}
    async with running_signer(tmp_path, network_passphrase=PASSPHRASE, backend="hot",
                              policy=policy) as signer:
        async with grpc.aio.secure_channel(signer.address, signer.channel_credentials()) as ch:
            stub = signer_pb2_grpc.SignerServiceStub(ch)
            for seq in (1, 2):
                await stub.SignTransaction(sign_request(signer.key_id, 1_000, seq))
    # The attack: drop the key's records, recompute the chain, restart.
    records = [json.loads(line) for line in signer.audit_log.read_text().splitlines()]
    kept = [r for r in records if r["decision"] != "allow"]
    signer.audit_log.write_text("".join(json.dumps(r) + "\n" for r in rechain(kept)))
    async with restart(signer) as again:
        code = await asyncio.wait_for(again.proc.wait(), 30)
    assert again.started is None and code == 3
    (line,) = again.stderr.splitlines()
    assert "does not verify" in line and "signing stopped" in line and "Traceback" not in line


async def test_deleting_log_and_checkpoint_file_is_caught_by_the_hsm_checkpoint(tmp_path):
    async with running_signer(tmp_path, network_passphrase=PASSPHRASE,
                              backend="pkcs11") as signer:
        async with grpc.aio.secure_channel(signer.address, signer.channel_credentials()) as ch:
            stub = signer_pb2_grpc.SignerServiceStub(ch)
            await stub.SignTransaction(sign_request(signer.key_id, 1_000, 1))
    # The signer stores the head on the token when it stops; the files are all an attacker with
    # disk access can remove.
    signer.audit_log.unlink()
    checkpoint_path(signer.audit_log).unlink()
    async with restart(signer) as again:
        code = await asyncio.wait_for(again.proc.wait(), 30)
    assert code == 3 and "truncated: the checkpoint counts 1 records, the log has 0" in \
        again.stderr
    # The documented procedure: an operator with the PIN resets the HSM checkpoint.
    out = await run_signerctl(signer.env, "audit", "reset-checkpoint", "--config",
                              str(signer.config_path))
    assert "removed 1" in out
    async with restart(signer) as again:
        assert again.started is not None and again.started["audit_records"] == 0


async def test_a_torn_record_is_repaired_at_start_and_signing_continues(tmp_path):
    async with running_signer(tmp_path, network_passphrase=PASSPHRASE, backend="hot") as signer:
        async with grpc.aio.secure_channel(signer.address, signer.channel_credentials()) as ch:
            await signer_pb2_grpc.SignerServiceStub(ch).SignTransaction(
                sign_request(signer.key_id, 1_000, 1))
    with signer.audit_log.open("ab") as f:
        f.write(b'{"amount_s')
    async with restart(signer) as again:
        assert again.started is not None, again.stderr
        assert "torn final record moved aside" in again.stderr
        async with grpc.aio.secure_channel(again.address, signer.channel_credentials()) as ch:
            await signer_pb2_grpc.SignerServiceStub(ch).SignTransaction(
                sign_request(signer.key_id, 1_000, 2), timeout=10)
    kinds = [json.loads(line).get("kind") for line in signer.audit_log.read_text().splitlines()]
    assert kinds == ["transaction", "repair", "transaction"]
    assert verify_log(signer.audit_log, hot_key(signer)).ok
    assert [p.read_bytes() for p in signer.audit_log.parent.glob("audit.log.torn-*")] == \
        [b'{"amount_s']


async def test_a_failed_write_recovers_by_itself_once_the_disk_takes_writes(tmp_path):
    async with running_signer(tmp_path, network_passphrase=PASSPHRASE, backend="hot") as signer:
        pid = int(json.loads(next(
            line for line in signer.logs if "signer-service started" in line))["pid"])
        async with grpc.aio.secure_channel(signer.address, signer.channel_credentials()) as ch:
            stub = signer_pb2_grpc.SignerServiceStub(ch)
            await stub.SignTransaction(sign_request(signer.key_id, 1, 1))
            size = signer.audit_log.stat().st_size
            # A real failure: the kernel refuses to grow files past this size (EFBIG), as a
            # full disk would refuse with ENOSPC; part of the record may get written.
            soft, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (size + 100, hard))
            for seq in (2, 3):
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await stub.SignTransaction(sign_request(signer.key_id, 1, seq), timeout=10)
                assert err.value.code() == grpc.StatusCode.UNAVAILABLE
                assert err.value.details() == "audit log unavailable"
            assert signer.audit_log.stat().st_size == size  # the partial record was cut back
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (soft, hard))
            await stub.SignTransaction(sign_request(signer.key_id, 1, 4), timeout=10)
            checkpoint = await stub.GetAuditCheckpoint(signer_pb2.GetAuditCheckpointRequest())
    records = [json.loads(line) for line in signer.audit_log.read_text().splitlines()]
    assert [r["seq"] for r in records] == [1, 2]
    assert verify_log(signer.audit_log, hot_key(signer)).ok
    assert (checkpoint.records, checkpoint.head_hash) == (2, records[-1]["hash"])


async def test_the_checkpoint_is_published_by_rpc_and_metrics(tmp_path):
    async with running_signer(tmp_path, network_passphrase=PASSPHRASE, backend="hot",
                              metrics_port=0) as signer:
        async with grpc.aio.secure_channel(signer.address, signer.channel_credentials()) as ch:
            stub = signer_pb2_grpc.SignerServiceStub(ch)
            for seq in (1, 2, 3):
                await stub.SignTransaction(sign_request(signer.key_id, 1, seq))
            reply = await stub.GetAuditCheckpoint(signer_pb2.GetAuditCheckpointRequest())
        url = f"http://127.0.0.1:{signer.metrics_port}/metrics"
        body = await asyncio.to_thread(
            lambda: urllib.request.urlopen(url, timeout=5).read().decode())
    key = hot_key(signer)
    last = json.loads(signer.audit_log.read_text().splitlines()[-1])
    assert (reply.records, reply.head_hash) == (3, last["hash"])
    assert reply.checkpoint_mac == Checkpoint(3, last["hash"]).mac(key)
    assert reply.audit_key_id == key.key_id
    values = {s.name: s.value for family in text_string_to_metric_families(body)
              for s in family.samples}
    assert values["signer_audit_records"] == 3
    assert values["signer_audit_head_prefix"] == int(last["hash"][:12], 16)
    # What a monitor does with it later: prove the log still holds that head.
    out = await run_signerctl(signer.env, "audit", "verify", "--config", str(signer.config_path),
                              "--expect-records", "3", "--expect-head", reply.head_hash)
    assert "matches checkpoint at record 3" in out
    assert secrets.compare_digest(reply.head_hash, last["hash"])
