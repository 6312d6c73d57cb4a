"""Hot keys, key import, the durable daily limit, TLS reload and start-up failures."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import uuid

import grpc
import pytest
from stellar_sdk import Keypair, TransactionEnvelope
from stellar_sdk.auth import authorize_entry

from signer_service.certs import generate_dev_certs
from signer_service.testing import run_signerctl, running_signer
from stellar_payouts_pb.signer.v1 import signer_pb2, signer_pb2_grpc
from tests.signer.envelopes import PASSPHRASE, build_tx
from tests.signer.test_policy import auth_entry


def sign_request(key_id: str, amount: int = 1_000, sequence: int = 1):
    return signer_pb2.SignTransactionRequest(
        key_id=key_id, request_id=uuid.uuid4().hex,
        envelope_xdr=TransactionEnvelope(build_tx(amount=amount, sequence=sequence),
                                         PASSPHRASE).to_xdr(),
    )


async def test_hot_key_signs_exactly_like_stellar_sdk(tmp_path):
    keypair = Keypair.random()
    async with running_signer(tmp_path, network_passphrase=PASSPHRASE, backend="hot",
                              hot_secret=keypair.secret) as signer:
        assert signer.public_key == keypair.public_key
        async with grpc.aio.secure_channel(signer.address, signer.channel_credentials()) as ch:
            stub = signer_pb2_grpc.SignerServiceStub(ch)
            tx = build_tx()
            reply = await stub.SignTransaction(signer_pb2.SignTransactionRequest(
                key_id=signer.key_id, request_id="hot-1",
                envelope_xdr=TransactionEnvelope(tx, PASSPHRASE).to_xdr(),
            ))
            expected = TransactionEnvelope(tx, PASSPHRASE)
            expected.sign(keypair)
            assert reply.signed_envelope_xdr == expected.to_xdr()
            listed = await stub.ListKeys(signer_pb2.ListKeysRequest())
            assert listed.keys[0].backend == signer_pb2.KEY_BACKEND_HOT
            # Authorization entries: byte-identical to stellar-sdk's authorize_entry.
            entry = auth_entry(keypair.public_key, amount=9)
            auth = await stub.SignAuthorizationEntry(signer_pb2.SignAuthorizationEntryRequest(
                key_id=signer.key_id, entry_xdr=entry.to_xdr(), signature_expiration_ledger=777,
                current_ledger=700, request_id="hot-auth",
            ))
            assert auth.signed_entry_xdr == authorize_entry(
                entry, keypair, 777, PASSPHRASE).to_xdr()
        await asyncio.sleep(0.2)
        logs = "\n".join(signer.logs) + signer.audit_log.read_text()
        assert keypair.secret not in logs
        assert "hot-auth" in logs


async def test_an_imported_hot_key_signs_on_the_token_like_the_original(tmp_path):
    keypair = Keypair.random()
    async with running_signer(tmp_path, network_passphrase=PASSPHRASE, backend="pkcs11",
                              hot_secret=keypair.secret) as signer:
        assert signer.public_key == keypair.public_key
        async with grpc.aio.secure_channel(signer.address, signer.channel_credentials()) as ch:
            reply = await signer_pb2_grpc.SignerServiceStub(ch).SignTransaction(
                sign_request(signer.key_id))
        envelope = TransactionEnvelope.from_xdr(reply.signed_envelope_xdr, PASSPHRASE)
        # Ed25519 is deterministic: the token's signature equals the hot key's.
        assert envelope.signatures[0].signature == keypair.sign(envelope.hash())
        assert not list(signer.config_path.parent.glob("import-secret"))
        await asyncio.sleep(0.2)
        assert keypair.secret not in "\n".join(signer.logs)
        show = await run_signerctl(signer.env, "key", "show", "--token-label", "payouts",
                                   "--label", f"{signer.key_id}-key")
        assert show.split() == [f"{signer.key_id}-key", keypair.public_key]
        assert signer.env["PAYOUTS_SIGNER_PKCS11_PIN"] not in show


async def test_the_daily_limit_survives_a_restart(tmp_path):
    policy = {"max_amount_stroops_per_day": 2_500}
    async with running_signer(tmp_path, network_passphrase=PASSPHRASE, backend="hot",
                              policy=policy) as signer:
        async with grpc.aio.secure_channel(signer.address, signer.channel_credentials()) as ch:
            stub = signer_pb2_grpc.SignerServiceStub(ch)
            await stub.SignTransaction(sign_request(signer.key_id, 1_000, 1))
            await stub.SignTransaction(sign_request(signer.key_id, 1_000, 2))
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.SignTransaction(sign_request(signer.key_id, 1_000, 3))
            assert "policy rule max_amount_stroops_per_day refused" in err.value.details()
    # A new process on the same config and audit log rebuilds the spent amount from the log.
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "signer_service", "--config", str(signer.config_path),
        env=signer.env, stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
    )
    try:
        import json

        assert proc.stderr is not None
        started = json.loads(await asyncio.wait_for(proc.stderr.readline(), 20))
        assert started["audit_records"] == 3
        address = f"127.0.0.1:{started['port']}"
        async with grpc.aio.secure_channel(address, signer.channel_credentials()) as ch:
            stub = signer_pb2_grpc.SignerServiceStub(ch)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.SignTransaction(sign_request(signer.key_id, 1_000, 4), timeout=10)
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "2000 spent in 24h" in err.value.details()
            await stub.SignTransaction(sign_request(signer.key_id, 500, 5), timeout=10)
    finally:
        proc.terminate()
        await proc.wait()


async def test_rotated_tls_files_are_used_without_a_restart(tmp_path):
    async with running_signer(tmp_path, network_passphrase=PASSPHRASE, backend="hot") as signer:
        old_creds = signer.channel_credentials()
        new = generate_dev_certs(tmp_path / "rotated", ["payout-service"])
        tls_dir = signer.ca_cert.parent
        shutil.copy(new.server.cert, tls_dir / "server.pem")
        shutil.copy(new.server.key, tls_dir / "server.key")
        shutil.copy(new.ca_cert, tls_dir / "ca.pem")
        new_creds = grpc.ssl_channel_credentials(
            root_certificates=new.ca_cert.read_bytes(),
            private_key=new.clients["payout-service"].key.read_bytes(),
            certificate_chain=new.clients["payout-service"].cert.read_bytes(),
        )
        async with grpc.aio.secure_channel(signer.address, new_creds) as ch:
            listed = await signer_pb2_grpc.SignerServiceStub(ch).ListKeys(
                signer_pb2.ListKeysRequest(), timeout=10)
            assert listed.keys[0].public_key == signer.public_key
        async with grpc.aio.secure_channel(signer.address, old_creds) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await signer_pb2_grpc.SignerServiceStub(ch).ListKeys(
                    signer_pb2.ListKeysRequest(), timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE


GOOD = {
    "server": '[server]\nlisten_addr = "127.0.0.1:0"\nnetwork_passphrase = "{pp}"\n',
    "tls": '[tls]\ncert = "{d}/server.pem"\nkey = "{d}/server.key"\nclient_ca = "{d}/ca.pem"\n',
    "audit": '[audit]\npath = "{d}/audit.log"\n',
    "key": (
        '[[keys]]\nid = "payout"\nbackend = "hot"\nsecret_env = "TEST_HOT_SECRET"\n'
        'allowed_clients = ["payout-service"]\n'
        '[keys.policy]\nnetwork_passphrase = "{pp}"\nsource_accounts = ["*"]\n'
        'contract_ids = ["*"]\nfunction_names = ["transfer"]\nmax_fee_stroops = 100\n'
        "max_amount_stroops_per_tx = 10\nmax_amount_stroops_per_day = 100\n"
        "max_time_window_seconds = 300\n"
    ),
}


@pytest.mark.parametrize("edit, env_secret, setting", [
    (lambda c: c.replace("[tls]", "[tlz]"), True, "[tls]"),
    (lambda c: c.replace('key = "', 'key = "/nope'), True, "tls.key"),
    (lambda c: c.replace("max_fee_stroops = 100", "max_fee_stroops = -1"), True,
     "keys.payout.policy.max_fee_stroops"),
    (lambda c: c.replace('contract_ids = ["*"]', 'contract_ids = ["CNOTACONTRACT"]'), True,
     "keys.payout.policy.contract_ids"),
    (lambda c: c.replace('function_names = ["transfer"]', "function_names = []"), True,
     "keys.payout.policy.function_names"),
    (lambda c: c.replace('network_passphrase = "', 'network_passphrase = "x', 1), True,
     "keys.payout.policy.network_passphrase"),
    (lambda c: c.replace('listen_addr = "127.0.0.1:0"', "listen_addr = 5"), True,
     "server.listen_addr"),
    (lambda c: c + "this is not toml", True, "not valid TOML"),
    (lambda c: c, False, "TEST_HOT_SECRET"),
])
def test_bad_config_fails_at_start_with_one_line_naming_the_setting(
    tmp_path, edit, env_secret, setting
):
    certs = generate_dev_certs(tmp_path, ["payout-service"])
    assert certs.server.cert == tmp_path / "server.pem"
    text = "".join(GOOD.values()).format(d=tmp_path, pp=PASSPHRASE)
    config = tmp_path / "signer.toml"
    config.write_text(edit(text))
    secret = Keypair.random().secret
    env = {"PATH": "/usr/bin:/bin", **({"TEST_HOT_SECRET": secret} if env_secret else {})}
    result = subprocess.run(
        [sys.executable, "-m", "signer_service", "--config", str(config)],
        env=env, capture_output=True, text=True, timeout=30, check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert setting in lines[0]
    assert "Traceback" not in result.stderr and secret not in result.stderr


def test_a_malformed_hot_secret_is_refused_without_echoing_it(tmp_path):
    generate_dev_certs(tmp_path, ["payout-service"])
    config = tmp_path / "signer.toml"
    config.write_text("".join(GOOD.values()).format(d=tmp_path, pp=PASSPHRASE))
    secret = Keypair.random().secret
    almost = secret[:-1] + ("A" if secret[-1] != "A" else "B")  # checksum no longer matches
    result = subprocess.run(
        [sys.executable, "-m", "signer_service", "--config", str(config)],
        env={"TEST_HOT_SECRET": almost}, capture_output=True, text=True, timeout=30, check=False,
    )
    assert result.returncode == 2
    assert "TEST_HOT_SECRET does not hold a valid Stellar secret seed" in result.stderr
    assert almost not in result.stderr


def test_a_good_config_parses(tmp_path):
    from signer_service.config import load_config

    generate_dev_certs(tmp_path, ["payout-service"])
    config = tmp_path / "signer.toml"
    config.write_text("".join(GOOD.values()).format(d=tmp_path, pp=PASSPHRASE))
    parsed = load_config(config)
    assert parsed.keys[0].policy.max_amount_stroops_per_day == 100
    assert parsed.keys[0].allowed_clients == {"payout-service"}


def test_the_deploy_example_spelling_backend_kind_pkcs11_is_accepted(tmp_path):
    from signer_service.config import load_config

    generate_dev_certs(tmp_path, ["payout-service"])
    key = GOOD["key"].replace('backend = "hot"\nsecret_env = "TEST_HOT_SECRET"\n',
                              'label = "payout-key"\n')
    backend = ('[backend]\nkind = "pkcs11"\nmodule = "/usr/lib/softhsm/libsofthsm2.so"\n'
               'token_label = "payouts"\npin_env = "PAYOUTS_SIGNER_PKCS11_PIN"\n')
    config = tmp_path / "signer.toml"
    config.write_text((GOOD["server"] + GOOD["tls"] + GOOD["audit"] + backend + key)
                      .format(d=tmp_path, pp=PASSPHRASE))
    parsed = load_config(config)
    assert parsed.pkcs11 is not None and parsed.pkcs11.token_label == "payouts"
    assert parsed.keys[0].backend == "pkcs11" and parsed.keys[0].label == "payout-key"
