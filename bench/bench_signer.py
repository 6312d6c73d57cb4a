"""Signatures per second: signer-service over mTLS gRPC vs in-process PKCS#11 signing.

Both use a fresh SoftHSM token in a temp folder. Not a test: nothing is asserted on timings.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
import tempfile
import time
import uuid
from pathlib import Path

import grpc
from stellar_sdk import Account, Keypair, Network, TransactionBuilder, TransactionEnvelope, scval

from signer_service.testing import SOFTHSM_MODULE, make_softhsm_token, run_signerctl, running_signer
from stellar_payouts_pb.signer.v1 import signer_pb2, signer_pb2_grpc

PASSPHRASE = Network.TESTNET_NETWORK_PASSPHRASE
SAC = "CDLZFC3SYJYDZT7K67VZ75HPJVIEUVNIXF47ZG2FB2RMQQVU2HHGCYSC"


def envelopes(n: int) -> list[str]:
    source, dest = Keypair.random().public_key, Keypair.random().public_key
    out = []
    for i in range(n):
        tx = (
            TransactionBuilder(Account(source, i), PASSPHRASE, base_fee=100)
            .append_invoke_contract_function_op(
                SAC, "transfer",
                [scval.to_address(source), scval.to_address(dest), scval.to_int128(1000 + i)],
            )
            .set_timeout(300)
            .build()
        )
        out.append(tx.to_xdr())
    return out


async def grpc_rate(tmp: Path, backend: str, total: int, concurrency: int) -> float:
    async with running_signer(tmp, network_passphrase=PASSPHRASE, backend=backend) as signer:
        xdrs = envelopes(total)
        async with grpc.aio.secure_channel(signer.address, signer.channel_credentials()) as ch:
            stub = signer_pb2_grpc.SignerServiceStub(ch)
            queue: asyncio.Queue[str] = asyncio.Queue()
            for x in xdrs:
                queue.put_nowait(x)

            async def worker() -> None:
                while not queue.empty():
                    xdr = queue.get_nowait()
                    await stub.SignTransaction(signer_pb2.SignTransactionRequest(
                        key_id=signer.key_id, envelope_xdr=xdr, request_id=uuid.uuid4().hex,
                    ))

            await stub.ListKeys(signer_pb2.ListKeysRequest())  # warm the connection
            start = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return total / (time.perf_counter() - start)


async def in_process_rate(tmp: Path, total: int) -> float:
    env = dict(os.environ)
    await make_softhsm_token(tmp / "softhsm", env, "bench")
    await run_signerctl(env, "key", "generate", "--module", SOFTHSM_MODULE,
                        "--token-label", "bench", "--label", "bench-key")
    # The PKCS#11 module reads SOFTHSM2_CONF when first loaded: set it before importing.
    os.environ["SOFTHSM2_CONF"] = env["SOFTHSM2_CONF"]
    from signer_service.backends.pkcs11 import Pkcs11Backend

    backend = Pkcs11Backend(SOFTHSM_MODULE, "bench", env["PAYOUTS_SIGNER_PKCS11_PIN"],
                            {"k": "bench-key"})
    hashes = [TransactionEnvelope.from_xdr(x, PASSPHRASE).hash() for x in envelopes(200)]
    try:
        start = time.perf_counter()
        for i in range(total):
            backend.sign_blocking("k", hashes[i % len(hashes)])
        return total / (time.perf_counter() - start)
    finally:
        backend.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--total", type=int, default=3000, help="signatures per measurement")
    parser.add_argument("--concurrency", type=int, default=32, help="in-flight gRPC calls")
    parser.add_argument("--backend", choices=["pkcs11", "hot"], default="pkcs11")
    args = parser.parse_args()
    print("rerun: " + shlex.join([sys.executable, *sys.argv]), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        local = await in_process_rate(Path(tmp) / "local", args.total)
        remote = await grpc_rate(Path(tmp) / "grpc", args.backend, args.total, args.concurrency)
    print(f"in-process PKCS#11 sign : {local:10.0f} signatures/s")
    print(f"signer-service over mTLS: {remote:10.0f} signatures/s "
          f"(backend={args.backend}, concurrency={args.concurrency}, total={args.total})")
    print(f"ratio grpc / in-process : {remote / local:10.3f}")


if __name__ == "__main__":
    asyncio.run(main())
