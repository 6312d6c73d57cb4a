"""Signatures per second: signer-service over mTLS gRPC vs in-process PKCS#11 signing.

Same run, same machine: first the token's raw rate (one thread calling C_Sign in a loop, as
fast as SoftHSM goes), then signer-service (PKCS#11 backend, full policy, keyed audit log with
fsync) driven over mTLS by concurrent in-flight calls, unary SignTransaction and batched
SignTransactions. Prints rates, the ratio to the in-process rate, per-call p50/p99, and the CPU
each side used: on a 2-core machine the client's own CPU comes out of the same budget.
Not a test: nothing is asserted on timings.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shlex
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
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


@dataclass
class Run:
    rate: float  # signatures per second
    latencies: list[float]  # seconds per call
    server_cpu: float  # cores used by signer-service
    client_cpu: float  # cores used by this process

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000


def process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def drive(calls: list[Callable[[], Awaitable[object]]], concurrency: int,
                signatures: int, server_pid: int) -> Run:
    queue = list(reversed(calls))
    latencies: list[float] = []

    async def worker() -> None:
        while queue:
            call = queue.pop()
            start = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - start)

    server0, client0, start = process_cpu(server_pid), own_cpu(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    return Run(signatures / elapsed, latencies, (process_cpu(server_pid) - server0) / elapsed,
               (own_cpu() - client0) / elapsed)


async def grpc_runs(tmp: Path, total: int, concurrency: int, batch: int,
                    batches_in_flight: int, backend: str) -> tuple[Run, Run]:
    async with running_signer(tmp, network_passphrase=PASSPHRASE, backend=backend) as signer:
        pid = int(next(line for line in signer.logs if "signer-service started" in line)
                  .split('"pid":')[1].split(",")[0])
        xdrs = envelopes(2 * total)

        def sign_request(xdr: str) -> signer_pb2.SignTransactionRequest:
            return signer_pb2.SignTransactionRequest(
                key_id=signer.key_id, envelope_xdr=xdr, request_id=uuid.uuid4().hex)

        async with grpc.aio.secure_channel(signer.address, signer.channel_credentials()) as ch:
            stub = signer_pb2_grpc.SignerServiceStub(ch)
            await stub.ListKeys(signer_pb2.ListKeysRequest())  # warm the connection
            unary = [sign_request(x) for x in xdrs[:total]]
            unary_run = await drive([lambda r=r: stub.SignTransaction(r) for r in unary],
                                    concurrency, total, pid)
            batched = [signer_pb2.SignTransactionsRequest(
                requests=[sign_request(x) for x in xdrs[total + i: total + i + batch]])
                for i in range(0, total, batch)]
            batch_run = await drive([lambda r=r: stub.SignTransactions(r) for r in batched],
                                    batches_in_flight, total, pid)
    return unary_run, batch_run


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


def report(name: str, run: Run, local: float) -> None:
    print(f"{name:<26}: {run.rate:8.0f} signatures/s, ratio {run.rate / local:5.3f}, "
          f"per call p50 {run.percentile(0.5):6.1f} ms p99 {run.percentile(0.99):6.1f} ms, "
          f"CPU signer {run.server_cpu:4.2f} + client {run.client_cpu:4.2f} cores")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--total", type=int, default=3000, help="signatures per measurement")
    parser.add_argument("--concurrency", type=int, default=32, help="signatures in flight")
    parser.add_argument("--batch", type=int, default=50, help="requests per SignTransactions")
    parser.add_argument("--batches-in-flight", type=int, default=4)
    parser.add_argument("--backend", choices=["pkcs11", "hot"], default="pkcs11",
                        help="signer-service backend (hot: to see the ceiling without the HSM)")
    args = parser.parse_args()
    print("rerun: " + shlex.join([sys.executable, *sys.argv]), flush=True)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        local = await in_process_rate(Path(tmp) / "local", args.total)
        unary, batch = await grpc_runs(Path(tmp) / "grpc", args.total, args.concurrency,
                                       args.batch, args.batches_in_flight, args.backend)
    print(f"in-process PKCS#11 sign   : {local:8.0f} signatures/s (one thread, C_Sign loop)")
    print(f"signer-service backend    : {args.backend}")
    report(f"SignTransaction x{args.concurrency}", unary, local)
    report(f"SignTransactions({args.batch}) x{args.batches_in_flight}", batch, local)
    print(f"ratio grpc / in-process   : unary {unary.rate / local:.3f}, "
          f"batched {batch.rate / local:.3f} (target >= 0.5)")


if __name__ == "__main__":
    asyncio.run(main())
