"""A real signer-service subprocess (SoftHSM token, mTLS) shared by the tests of one session."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest_asyncio

from signer_service.testing import SignerFixture, running_signer
from stellar_payouts_pb.signer.v1 import signer_pb2_grpc
from tests.signer.envelopes import PASSPHRASE, XLM_SAC

SESSION_POLICY = {"max_fee_stroops": 2_000_000, "max_amount_stroops_per_tx": 10_000_000_000,
                  "contract_ids": [XLM_SAC], "function_names": ["transfer"],
                  "max_signature_expiration_ledgers": 100}


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def pkcs11_signer(tmp_path_factory) -> AsyncIterator[SignerFixture]:
    async with running_signer(
        tmp_path_factory.mktemp("pkcs11-signer"), network_passphrase=PASSPHRASE,
        backend="pkcs11", policy=SESSION_POLICY, client_names=["payout-service", "intruder"],
        allowed_clients=["payout-service"], metrics_port=0,
    ) as signer:
        yield signer


@pytest_asyncio.fixture(loop_scope="session")
async def stub(pkcs11_signer: SignerFixture) -> AsyncIterator[signer_pb2_grpc.SignerServiceStub]:
    async with grpc.aio.secure_channel(
        pkcs11_signer.address, pkcs11_signer.channel_credentials()
    ) as channel:
        yield signer_pb2_grpc.SignerServiceStub(channel)
