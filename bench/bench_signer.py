"""Signatures per second: signer-service over mTLS gRPC vs in-process PKCS#11 signing.

Same run, same machine, in rounds (--repeat, default 3): the token's raw rate (one thread
calling C_Sign in a loop, as fast as SoftHSM goes) before and after, and between them
signer-service (PKCS#11 backend in its signing process, full policy, keyed audit log with
fsync) driven over mTLS by concurrent in-flight calls, unary SignTransaction and batched
SignTransactions. Prints rates, the ratio to the in-process rate, per-call p50/p99, and the CPU
each side used (the signer's includes its signing process): on a 2-core machine the client's
own CPU comes out of the same budget. Not a test: nothing is asserted on timings.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import shlex
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
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
    """CPU seconds of `pid` and its live children (the PKCS#11 signing process)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    total = 0.0
    for one in [pid, *map(int, children)]:
        fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


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


@contextlib.asynccontextmanager
async def in_process_token(tmp: Path) -> AsyncIterator[Callable[[int], float]]:
    """A token of the bench's own, opened in this process; yields `rate(n)`: n signatures by
    one thread calling C_Sign in a loop, in signatures per second."""
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

    def rate(total: int) -> float:
        start = time.perf_counter()
        for i in range(total):
            backend.sign_blocking("k", hashes[i % len(hashes)])
        return total / (time.perf_counter() - start)

    try:
        yield rate
    finally:
        backend.close()


def report(name: str, run: Run, local: float) -> None:
    print(f"{name:<26}: {run.rate:8.0f} signatures/s, ratio {run.rate / local:5.3f}, "
          f"per call p50 {run.percentile(0.5):6.1f} ms p99 {run.percentile(0.99):6.1f} ms, "
          f"CPU signer {run.server_cpu:4.2f} + client {run.client_cpu:4.2f} cores, "
          f"signer {run.server_cpu / run.rate * 1000:4.2f} ms CPU per signature")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--total", type=int, default=3000, help="signatures per measurement")
    parser.add_argument("--concurrency", type=int, default=32, help="signatures in flight")
    parser.add_argument("--batch", type=int, default=50, help="requests per SignTransactions")
    parser.add_argument("--batches-in-flight", type=int, default=4)
    parser.add_argument("--backend", choices=["pkcs11", "hot"], default="pkcs11",
                        help="signer-service backend (hot: to see the ceiling without the HSM)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (each with its baseline)")
    args = parser.parse_args()
    print("rerun: " + shlex.join([sys.executable, *sys.argv]), flush=True)
    ratios: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        async with in_process_token(Path(tmp) / "local") as local_rate:
            for round_ in range(1, args.repeat + 1):
                print(f"-- round {round_}/{args.repeat}: {os.cpu_count()} cores, load average "
                      f"{os.getloadavg()[0]:.1f}", flush=True)
                # The baseline before and after the service runs, averaged: the machine's load
                # moves during a round.
                before = local_rate(args.total)
                unary, batch = await grpc_runs(Path(tmp) / f"grpc{round_}", args.total,
                                               args.concurrency, args.batch,
                                               args.batches_in_flight, args.backend)
                after = local_rate(args.total)
                local = (before + after) / 2
                print(f"in-process PKCS#11 sign   : {local:8.0f} signatures/s (one thread, "
                      f"C_Sign loop; {before:.0f} before, {after:.0f} after)")
                print(f"signer-service backend    : {args.backend}")
                report(f"SignTransaction x{args.concurrency}", unary, local)
                report(f"SignTransactions({args.batch}) x{args.batches_in_flight}", batch, local)
                print(f"ratio grpc / in-process   : unary {unary.rate / local:.3f}, "
                      f"batched {batch.rate / local:.3f} (target >= 0.5)", flush=True)
                ratios.append((unary.rate / local, batch.rate / local))
    print(f"-- {len(ratios)} rounds: unary ratio "
          + ", ".join(f"{u:.3f}" for u, _ in ratios) + "; batched ratio "
          + ", ".join(f"{b:.3f}" for _, b in ratios)
          + f"; load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    asyncio.run(main())
