"""A signer with a paying key and a channel key, and the transactions a channel signs (or must
not), built with stellar-sdk as payout-service builds them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest_asyncio
from stellar_sdk import Account, Address, Keypair, TransactionBuilder, TransactionEnvelope, scval
from stellar_sdk import xdr as sx

from signer_service.testing import SignerFixture, running_signer
from stellar_payouts_pb.signer.v1 import signer_pb2, signer_pb2_grpc
from tests.signer.envelopes import DESTINATION, PASSPHRASE, XLM_SAC

PAYER = Keypair.from_raw_ed25519_seed(bytes(range(40, 72)))
CHANNEL = Keypair.from_raw_ed25519_seed(bytes(range(80, 112)))
STRANGER = Keypair.from_raw_ed25519_seed(bytes(range(120, 152))).public_key
DAILY = 10_000


@dataclass
class ChannelWorld:
    signer: SignerFixture
    stub: signer_pb2_grpc.SignerServiceStub


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def channel_world(tmp_path_factory) -> AsyncIterator[ChannelWorld]:
    """The paying key (id payout) lists the payer and the channel as sources, as
    signer_service/README.md says; the channel key (id channel-1, role channel) serves the payer."""
    policy = {"source_accounts": [PAYER.public_key, CHANNEL.public_key],
              "max_amount_stroops_per_day": DAILY}
    async with running_signer(
        tmp_path_factory.mktemp("channel-world"), network_passphrase=PASSPHRASE,
        backend="pkcs11", hot_secret=PAYER.secret, extra_keys={"channel-1": CHANNEL.secret},
        key_settings={"channel-1": {"role": "channel",
                                    "policy": {"merge_into": PAYER.public_key}}},
        policy=policy,
    ) as signer, grpc.aio.secure_channel(signer.address, signer.channel_credentials()) as ch:
        yield ChannelWorld(signer, signer_pb2_grpc.SignerServiceStub(ch))


def invocation(sender: str, amount: int) -> sx.SorobanAuthorizedInvocation:
    return sx.SorobanAuthorizedInvocation(
        function=sx.SorobanAuthorizedFunction(
            sx.SorobanAuthorizedFunctionType.SOROBAN_AUTHORIZED_FUNCTION_TYPE_CONTRACT_FN,
            contract_fn=sx.InvokeContractArgs(
                contract_address=Address(XLM_SAC).to_xdr_sc_address(),
                function_name=sx.SCSymbol(b"transfer"),
                args=transfer(sender, amount))),
        sub_invocations=[])


def transfer(sender: str, amount: int) -> list[sx.SCVal]:
    return [scval.to_address(sender), scval.to_address(DESTINATION), scval.to_int128(amount)]


def source_entry(sender: str, amount: int) -> sx.SorobanAuthorizationEntry:
    """A SOURCE_ACCOUNT entry: authorised by the operation's (or transaction's) source."""
    return sx.SorobanAuthorizationEntry(
        credentials=sx.SorobanCredentials(
            sx.SorobanCredentialsType.SOROBAN_CREDENTIALS_SOURCE_ACCOUNT),
        root_invocation=invocation(sender, amount))


def address_entry(address: str, sender: str, amount: int) -> sx.SorobanAuthorizationEntry:
    return sx.SorobanAuthorizationEntry(
        credentials=sx.SorobanCredentials(
            sx.SorobanCredentialsType.SOROBAN_CREDENTIALS_ADDRESS,
            address=sx.SorobanAddressCredentials(
                address=Address(address).to_xdr_sc_address(), nonce=sx.Int64(7),
                signature_expiration_ledger=sx.Uint32(0), signature=scval.to_void())),
        root_invocation=invocation(sender, amount))


def payout_envelope(*, sender: str = PAYER.public_key, source: str = CHANNEL.public_key,
                    op_source: str | None = PAYER.public_key, amount: int = 100,
                    auth: list[sx.SorobanAuthorizationEntry] | None = None,
                    sequence: int = 1) -> str:
    """A payout as payout-service builds it with channels: the channel is the transaction's
    source, the payer the operation's, authorising the transfer as SOURCE_ACCOUNT."""
    tx = (TransactionBuilder(Account(source, sequence), PASSPHRASE, base_fee=100)
          .append_invoke_contract_function_op(
              XLM_SAC, "transfer", transfer(sender, amount),
              auth=auth if auth is not None else [source_entry(sender, amount)],
              source=op_source)
          .set_timeout(60).build())
    return TransactionEnvelope(tx.transaction, PASSPHRASE).to_xdr()


def sign_request(key_id: str, envelope_xdr: str) -> signer_pb2.SignTransactionRequest:
    return signer_pb2.SignTransactionRequest(key_id=key_id, envelope_xdr=envelope_xdr,
                                             request_id=uuid.uuid4().hex)
