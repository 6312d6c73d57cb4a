"""The PKCS#11 signing process: the token session in a process of its own, fed over a pipe.

Real SoftHSM tokens and a real signer-service subprocess; the process boundary is the thing
under test, so nothing is faked.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import grpc
import pytest
from nacl.signing import VerifyKey
from stellar_sdk import Keypair

from signer_service.backends import BackendError
from signer_service.backends.pkcs11_process import Pkcs11Process, child_environment
from signer_service.testing import (
    SOFTHSM_MODULE,
    SignerFixture,
    make_softhsm_token,
    run_signerctl,
    running_signer,
)
from stellar_payouts_pb.signer.v1 import signer_pb2_grpc
from tests.signer.envelopes import PASSPHRASE
from tests.signer.test_lifecycle import sign_request
from tests.waiting import eventually_blocking


async def token_with_key(folder: Path, label: str = "pay-key") -> dict[str, str]:
    env = dict(os.environ)
    await make_softhsm_token(folder, env, "proc")
    await run_signerctl(env, "key", "generate", "--module", SOFTHSM_MODULE,
                        "--token-label", "proc", "--label", label)
    return env


def open_process(env: dict[str, str], pin: str | None = None,
                 labels: dict[str, str] | None = None) -> Pkcs11Process:
    return Pkcs11Process(SOFTHSM_MODULE, "proc", pin or env["PAYOUTS_SIGNER_PKCS11_PIN"],
                         labels or {"pay": "pay-key"}, "signer-audit-hmac", env,
                         ["PAYOUTS_SIGNER_PKCS11_PIN"])


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def proc_file(pid: int, name: str) -> bytes:
    return Path(f"/proc/{pid}/{name}").read_bytes()


def wait_for_line(logs: list[str], text: str, within: float = 30.0) -> None:
    """Until a line containing `text` is logged (a liveness bound, not a timing claim)."""
    eventually_blocking(lambda: any(text in line for line in logs),
                        what=f"a log line with {text!r}", within=within)


def signer_pid(signer: SignerFixture) -> int:
    line = next(line for line in signer.logs if "signer-service started" in line)
    return int(line.split('"pid":')[1].split(",")[0])


def test_the_child_environment_drops_the_pin_and_hot_seeds_and_keeps_module_settings():
    env = {"PAYOUTS_SIGNER_PKCS11_PIN": "1234", "MY_PIN": "9", "PAYOUT_HOT_SIGNER_SECRET": "S",
           "PAYOUTS_SIGNER_CONFIG": "/etc/x", "SOFTHSM2_CONF": "/tmp/s.conf", "PATH": "/bin"}
    assert child_environment(env, ["MY_PIN"]) == {"SOFTHSM2_CONF": "/tmp/s.conf",
                                                  "PATH": "/bin"}


async def test_concurrent_signatures_come_back_to_their_callers_and_verify(tmp_path):
    env = await token_with_key(tmp_path)
    backend = open_process(env)
    try:
        verify = VerifyKey(backend.public_key("pay"))
        digests = [os.urandom(32) for _ in range(300)]
        signatures = await asyncio.gather(*(backend.sign("pay", d) for d in digests))
        for digest, signature in zip(digests, signatures, strict=True):
            verify.verify(digest, signature)  # raises unless this digest's own signature
        with pytest.raises(BackendError, match="no PKCS#11 key"):
            await backend.sign("other", digests[0])
        # One bad item does not fail the others queued with it.
        mixed = await asyncio.gather(backend.sign("pay", digests[1]),
                                     backend.sign("other", digests[1]), return_exceptions=True)
        verify.verify(digests[1], mixed[0])
        assert isinstance(mixed[1], BackendError)
    finally:
        backend.close()


async def test_a_killed_signing_process_fails_pending_and_later_signatures(tmp_path):
    env = await token_with_key(tmp_path)
    backend = open_process(env)
    try:
        verify = VerifyKey(backend.public_key("pay"))
        digests = [os.urandom(32) for _ in range(2000)]
        pending = [asyncio.ensure_future(backend.sign("pay", d)) for d in digests]
        await asyncio.sleep(0)  # the first frame is on its way
        os.kill(backend._proc.pid, signal.SIGKILL)
        outcomes = await asyncio.gather(*pending, return_exceptions=True)
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        assert failed
        assert all(isinstance(o, BackendError) for o in failed)
        for digest, outcome in zip(digests, outcomes, strict=True):
            if isinstance(outcome, bytes):
                verify.verify(digest, outcome)
        await asyncio.wait_for(backend.exited.wait(), 30)
        with pytest.raises(BackendError, match="the signing process exited"):
            await backend.sign("pay", digests[0])
        with pytest.raises(BackendError, match="the signing process exited"):
            await backend.store_checkpoint(1, "0" * 64)
    finally:
        backend.close()


async def test_refresh_keys_picks_up_a_key_generated_on_the_token_after_start(tmp_path):
    env = await token_with_key(tmp_path)
    backend = open_process(env)
    try:
        out = await run_signerctl(env, "key", "generate", "--module", SOFTHSM_MODULE,
                                  "--token-label", "proc", "--label", "channel-1")
        address = out.split()[1]
        with pytest.raises(BackendError, match="no Ed25519 public key labelled 'missing'"):
            await backend.refresh_keys({"gone": "missing"})
        keys = await backend.refresh_keys({"channel-1": "channel-1"})
        assert set(keys) == {"pay", "channel-1"}
        assert Keypair.from_raw_ed25519_public_key(keys["channel-1"]).public_key == address
        assert backend.public_key("channel-1") == keys["channel-1"]
        digest = os.urandom(32)
        VerifyKey(keys["channel-1"]).verify(digest, await backend.sign("channel-1", digest))
    finally:
        backend.close()


async def test_a_wrong_pin_is_one_error_naming_the_token_and_no_process_is_left(tmp_path):
    env = await token_with_key(tmp_path)
    before = children(os.getpid())
    with pytest.raises(BackendError, match="cannot log in to token 'proc'"):
        open_process(env, pin="99999999")
    assert children(os.getpid()) == before


async def test_the_pin_is_in_neither_argv_nor_environment_of_the_signing_process(tmp_path):
    async with running_signer(tmp_path, network_passphrase=PASSPHRASE) as signer:
        pin = signer.env["PAYOUTS_SIGNER_PKCS11_PIN"].encode()
        (worker,) = children(signer_pid(signer))
        cmdline, environ = proc_file(worker, "cmdline"), proc_file(worker, "environ")
        assert b"signer_service.backends.pkcs11_worker" in cmdline
        assert b"SOFTHSM2_CONF=" in environ
        assert pin not in cmdline
        assert pin not in environ
        assert b"PAYOUTS_SIGNER_PKCS11_PIN" not in environ


async def test_a_lost_signing_process_fails_closed_and_stops_the_signer(tmp_path):
    async with running_signer(tmp_path, network_passphrase=PASSPHRASE) as signer:
        pid = signer_pid(signer)
        async with grpc.aio.secure_channel(signer.address, signer.channel_credentials()) as ch:
            stub = signer_pb2_grpc.SignerServiceStub(ch)
            await stub.SignTransaction(sign_request(signer.key_id))
            (worker,) = children(pid)
            os.kill(worker, signal.SIGKILL)
            lost = sign_request(signer.key_id, sequence=2)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.SignTransaction(lost)
            # UNAVAILABLE from the backend, or CANCELLED when the signer is already stopping.
            assert refused.value.code() in (grpc.StatusCode.UNAVAILABLE,
                                            grpc.StatusCode.CANCELLED)
        # The signer stops on its own (its supervisor restarts it with the PIN).
        stopped = "signer-service: the PKCS#11 signing process exited; signing stopped"
        await asyncio.to_thread(wait_for_line, signer.logs, stopped)
        audit = signer.audit_log.read_text()
        assert audit.count('"decision":"allow"') == 1
        assert lost.request_id not in audit or '"rule":"backend"' in audit


async def test_the_signing_process_ignores_sigterm_so_the_signer_can_store_its_checkpoint(
        tmp_path):
    async with running_signer(tmp_path, network_passphrase=PASSPHRASE) as signer:
        (worker,) = children(signer_pid(signer))
        os.kill(worker, signal.SIGTERM)  # as a terminal or a whole-group stop would send it
        async with grpc.aio.secure_channel(signer.address, signer.channel_credentials()) as ch:
            reply = await signer_pb2_grpc.SignerServiceStub(ch).SignTransaction(
                sign_request(signer.key_id))
        assert reply.public_key == signer.public_key
