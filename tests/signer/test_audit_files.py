"""Files planted beside the audit log, against the real signer (SoftHSM token, mTLS): the
signer never writes, truncates or blocks on anything through them, and refuses to start on
an audit directory that others can write or that is not its own."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import grpc
import pytest
from stellar_sdk import TransactionEnvelope

from signer_service.testing import SignerFixture, running_signer, serving
from stellar_payouts_pb.signer.v1 import signer_pb2, signer_pb2_grpc
from tests.signer.envelopes import PASSPHRASE, build_tx

PRECIOUS = b"a file outside the audit directory the signer must never touch\n"


def victim(tmp_path: Path) -> Path:
    path = tmp_path / f"victim-{uuid.uuid4().hex[:6]}"
    path.write_bytes(PRECIOUS)
    return path


async def sign(signer: SignerFixture, sequence: int = 1) -> None:
    async with grpc.aio.secure_channel(signer.address, signer.channel_credentials()) as ch:
        await signer_pb2_grpc.SignerServiceStub(ch).SignTransaction(
            signer_pb2.SignTransactionRequest(
                key_id=signer.key_id, request_id=uuid.uuid4().hex,
                envelope_xdr=TransactionEnvelope(build_tx(sequence=sequence),
                                                 PASSPHRASE).to_xdr()), timeout=10)


async def refused_start(tmp_path: Path, plant) -> str:  # noqa: ANN001
    """Plant before the first start; the signer must refuse to start. Its last words."""
    with pytest.raises(RuntimeError, match="signer-service exited") as err:
        async with running_signer(tmp_path, network_passphrase=PASSPHRASE, backend="pkcs11",
                                  before_start=plant, startup_timeout=20):
            pass
    return str(err.value)


@pytest.mark.parametrize("name", ["audit.log", "audit.log.checkpoint"])
async def test_a_symlink_planted_for_an_audit_file_is_refused_and_never_written(tmp_path, name):
    target = victim(tmp_path)
    target.write_bytes(b"")  # empty: through the link it would read as a log with no records
    words = await refused_start(tmp_path, lambda s: (s.audit_log.parent / name).symlink_to(
        target))
    assert f"audit file {name} is a symbolic link" in words
    assert target.read_bytes() == b""


async def test_a_hard_link_planted_as_the_audit_log_is_refused(tmp_path):
    target = victim(tmp_path)
    target.write_bytes(b"")  # empty: it would verify as a log with no records

    words = await refused_start(tmp_path, lambda s: os.link(target, s.audit_log))
    assert "audit file audit.log has 2 hard links" in words
    assert target.read_bytes() == b""


async def test_a_fifo_planted_as_the_checkpoint_does_not_block_the_start(tmp_path):
    words = await refused_start(tmp_path, lambda s: os.mkfifo(
        s.audit_log.with_name("audit.log.checkpoint")))
    assert "audit file audit.log.checkpoint is not a regular file" in words


async def test_the_checkpoints_old_temporary_name_planted_as_a_symlink_is_never_used(tmp_path):
    """A temporary file of a fixed name opened with O_TRUNC through a planted link would
    truncate and overwrite its target. The checkpoint is written in place through the
    descriptor opened at start: there is no temporary file."""
    target = victim(tmp_path)
    async with running_signer(tmp_path, network_passphrase=PASSPHRASE,
                              backend="pkcs11") as signer:
        (signer.audit_log.parent / "audit.log.checkpoint.tmp").symlink_to(target)
        for sequence in range(1, 4):
            await sign(signer, sequence)
    assert target.read_bytes() == PRECIOUS
    assert not (signer.audit_log.parent / "audit.log.checkpoint").is_symlink()


async def test_a_torn_tail_goes_to_a_new_file_never_through_a_planted_name(tmp_path):
    """Links planted for every `audit.log.torn-<unix time>` of the next two minutes: a
    predictable name opened following links would hand the attacker's bytes to the target."""
    target = victim(tmp_path)
    async with running_signer(tmp_path, network_passphrase=PASSPHRASE,
                              backend="pkcs11") as signer:
        await sign(signer)
    with signer.audit_log.open("ab") as f:
        f.write(b'{"attacker chosen bytes')
    now = int(time.time())
    for t in range(now - 5, now + 120):
        (signer.audit_log.parent / f"audit.log.torn-{t}").symlink_to(target)
    async with serving(signer) as again:
        await sign(again, 2)
    assert target.read_bytes() == PRECIOUS
    torn = [p for p in signer.audit_log.parent.glob("audit.log.torn-*") if not p.is_symlink()]
    assert [p.read_bytes() for p in torn] == [b'{"attacker chosen bytes']
    assert torn[0].stat().st_mode & 0o077 == 0
    repair = [json.loads(line) for line in signer.audit_log.read_text().splitlines()][1]
    assert repair["rule"] == "torn_record" and torn[0].name in repair["detail"]


@pytest.mark.parametrize("mode", [0o770, 0o702, 0o777])
async def test_an_audit_directory_others_can_write_is_refused_at_start(tmp_path, mode):
    words = await refused_start(tmp_path, lambda s: s.audit_log.parent.chmod(mode))
    assert f"is writable by group or others (mode {mode:04o})" in words


async def test_an_audit_directory_of_another_user_is_refused_at_start(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to give the directory to another user")
    words = await refused_start(tmp_path, lambda s: os.chown(s.audit_log.parent, 65534, -1))
    assert "belongs to uid 65534, not to the signer's user" in words


async def test_a_readable_audit_directory_of_its_own_starts(tmp_path):
    async with running_signer(tmp_path, network_passphrase=PASSPHRASE, backend="pkcs11",
                              before_start=lambda s: s.audit_log.parent.chmod(0o750)) as signer:
        await sign(signer)
    assert oct(signer.audit_log.stat().st_mode & 0o777) == oct(0o600)
