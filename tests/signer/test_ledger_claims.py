"""current_ledger claims are bounded by wall time since the log's first accepted claim (the
anchor), never by the last claim, against the real signer (SoftHSM token, mTLS)."""

from __future__ import annotations

import math
import time
import uuid

import grpc

from signer_service.ledger_claims import LEDGER_CLAIM_SLACK
from signer_service.testing import SignerFixture, running_signer, serving
from stellar_payouts_pb.signer.v1 import signer_pb2, signer_pb2_grpc
from tests.signer.envelopes import PASSPHRASE
from tests.signer.test_policy import auth_entry

WINDOW = 100  # max_signature_expiration_ledgers
ANCHOR = 50_000_000


async def claim(stub: signer_pb2_grpc.SignerServiceStub, signer: SignerFixture,
                current: int) -> grpc.StatusCode:
    entry = auth_entry(signer.public_key, amount=1)
    try:
        await stub.SignAuthorizationEntry(signer_pb2.SignAuthorizationEntryRequest(
            key_id=signer.key_id, entry_xdr=entry.to_xdr(), current_ledger=current,
            signature_expiration_ledger=current + WINDOW, request_id=uuid.uuid4().hex,
        ), timeout=10)
    except grpc.aio.AioRpcError as err:
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED, err
        assert "max_signature_expiration_ledgers" in err.details()
        return err.code()
    return grpc.StatusCode.OK


async def test_claims_one_ledger_higher_each_request_do_not_walk_past_the_anchors_pace(tmp_path):
    """60 requests in well under a minute, each claiming one ledger more than the last: a
    bound that moved with each accepted claim would sign them all. The first claim anchors
    the bound (anchor + seconds elapsed + a fixed slack), whatever is accepted after it."""
    async with running_signer(tmp_path, network_passphrase=PASSPHRASE, backend="pkcs11",
                              policy={"max_signature_expiration_ledgers": WINDOW}) as signer:
        async with grpc.aio.secure_channel(signer.address, signer.channel_credentials()) as ch:
            stub = signer_pb2_grpc.SignerServiceStub(ch)
            start = time.time()
            answers = [await claim(stub, signer, ANCHOR + step) for step in range(60)]
            elapsed = time.time() - start
            signed = [step for step, code in enumerate(answers) if code == grpc.StatusCode.OK]
            # What wall time allows since the anchor (the first claim), nothing more.
            allowed = LEDGER_CLAIM_SLACK + math.ceil(elapsed)
            assert signed == list(range(len(signed))), signed  # a prefix: then refused
            assert max(signed) <= allowed, (signed, elapsed)
            assert len(signed) < 60
    # The anchor is rebuilt from the audit log: a restart does not make a new first claim.
    async with serving(signer) as again, \
            grpc.aio.secure_channel(again.address, again.channel_credentials()) as ch:
        stub = signer_pb2_grpc.SignerServiceStub(ch)
        since = time.time() - start
        assert await claim(stub, again, ANCHOR + LEDGER_CLAIM_SLACK + math.ceil(since) + 30) \
            == grpc.StatusCode.PERMISSION_DENIED
        assert await claim(stub, again, ANCHOR + 1) == grpc.StatusCode.OK  # a stale view is fine
