"""One trace per payout: CreatePayout -> prepare -> sign (across the signer hop over real
mTLS gRPC) -> send -> confirm. The ledger port is faked; the signer here is a minimal
test servicer, standing in for signer-service to prove the propagation."""

from __future__ import annotations

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from stellar_sdk import Keypair
from stellar_sdk.transaction_envelope import TransactionEnvelope

from payout_service.adapters.embedded_postgres import free_port
from payout_service.adapters.migrations import apply_migrations
from payout_service.adapters.payout_store import PayoutStore, create_pool
from payout_service.adapters.signer_client import SignerClient
from payout_service.app.desk import PayoutDesk
from payout_service.app.pipeline import Pipeline
from payout_service.config import SignerClientConfig, load_config
from payout_service.tracing import server_interceptor
from stellar_payouts_pb.signer.v1 import signer_pb2, signer_pb2_grpc
from tests.db.fake_pipeline import NET, FakeLedger, create, run_until_settled
from tests.tls_certs import DevCA

EXPORTER = InMemorySpanExporter()


def _provider() -> TracerProvider:
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current
    provider = TracerProvider()
    trace.set_tracer_provider(provider)
    return provider


_provider().add_span_processor(SimpleSpanProcessor(EXPORTER))


class TracedSigner(signer_pb2_grpc.SignerServiceServicer):
    def __init__(self, key: Keypair) -> None:
        self.key = key

    async def SignTransaction(self, request, context):  # noqa: N802
        env = TransactionEnvelope.from_xdr(request.envelope_xdr, NET)
        env.sign(self.key)
        return signer_pb2.SignTransactionResponse(
            signed_envelope_xdr=env.to_xdr(), tx_hash=env.hash_hex(),
            public_key=self.key.public_key,
        )


@pytest.fixture
async def signer_server(tmp_path):
    ca = DevCA(tmp_path)
    server_cert, client = ca.issue("signer", server=True), ca.issue("payout-service")
    key = Keypair.random()
    server = grpc.aio.server(interceptors=[server_interceptor()])
    signer_pb2_grpc.add_SignerServiceServicer_to_server(TracedSigner(key), server)
    port = server.add_secure_port(
        f"127.0.0.1:{free_port()}",
        grpc.ssl_server_credentials(
            [(server_cert.key.read_bytes(), server_cert.cert.read_bytes())],
            root_certificates=ca.path.read_bytes(), require_client_auth=True,
        ),
    )
    await server.start()
    config = SignerClientConfig(
        address=f"127.0.0.1:{port}", ca_cert=str(ca.path), client_cert=str(client.cert),
        client_key=str(client.key), key_id="payout", server_name="localhost",
    )
    yield key, config
    await server.stop(0)


async def test_one_trace_spans_create_sign_send_and_confirm(fresh_database, signer_server):
    key, signer_config = signer_server
    pool = await create_pool(fresh_database)
    async with pool.acquire() as conn:
        await apply_migrations(conn)
    config = load_config({
        "DATABASE_URL": fresh_database, "PAYOUT_SOURCE_ACCOUNT": key.public_key,
        "PAYOUTS_LIVE_EXECUTION": "true", "SOROBAN_RPC_URL": "http://fake",
        "PAYOUTS_SIGNER_ADDR": "x", "PAYOUTS_SIGNER_CA_CERT": "x",
        "PAYOUTS_SIGNER_CLIENT_CERT": "x", "PAYOUTS_SIGNER_CLIENT_KEY": "x",
        "PAYOUTS_PLAINTEXT": "true",
    })
    ledger = FakeLedger()
    signer = SignerClient(signer_config)
    desk = PayoutDesk(config, PayoutStore(pool), ledger)  # type: ignore[arg-type]
    pipeline = Pipeline(config, desk.attempts, ledger, signer)  # type: ignore[arg-type]
    EXPORTER.clear()
    try:
        tracer = trace.get_tracer("test")
        with tracer.start_as_current_span("/payout.v1.PayoutService/CreatePayout"):
            await create(desk, 1)
        await run_until_settled(pipeline, ledger, rounds=3)
    finally:
        await signer.close()
        await pool.close()
    spans = EXPORTER.get_finished_spans()
    names = {s.name for s in spans}
    assert {"payout.prepare", "payout.sign", "payout.send", "payout.confirm",
            "/signer.v1.SignerService/SignTransaction"} <= names
    root = next(s for s in spans if s.name == "/payout.v1.PayoutService/CreatePayout")
    in_trace = {s.name for s in spans if s.context.trace_id == root.context.trace_id}
    assert {"payout.prepare", "payout.sign", "payout.send", "payout.confirm",
            "/signer.v1.SignerService/SignTransaction"} <= in_trace
    signer_span = next(s for s in spans if s.name == "/signer.v1.SignerService/SignTransaction")
    assert signer_span.kind == trace.SpanKind.SERVER
