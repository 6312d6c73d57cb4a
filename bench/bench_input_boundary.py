"""Cost of the input boundary (request_limits.string_violations) against protobuf parsing of
the same request, in the same run: a 1,000-item CreatePayoutBatch and a GetPayout.

    .venv/bin/python bench/bench_input_boundary.py
"""

from __future__ import annotations

import time

from stellar_sdk import Keypair

from payout_service.api.request_limits import string_violations
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb


def per_call(fn, repeat: int) -> float:  # noqa: ANN001
    started = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - started) / repeat


def main() -> None:
    dest = Keypair.random().public_key
    batch = pb.CreatePayoutBatchRequest(items=[
        pb.CreatePayoutRequest(
            payout_id=f"p-{i}", destination=dest, amount="1.5", asset="XLM",
            idempotency_key=f"p-{i}", metadata={"round": "7", "rank": str(i)},
            reference=f"task-{i}",
        ) for i in range(1000)
    ])
    wire = batch.SerializeToString()
    parse = per_call(lambda: pb.CreatePayoutBatchRequest.FromString(wire), 50)
    check = per_call(lambda: string_violations(batch), 50)
    print(f"1,000-item batch: parse {parse * 1e3:.2f} ms, boundary {check * 1e3:.2f} ms "
          f"({check / parse:.0f}x parse; {check * 1e3:.1f} ms of a 1 s budget)")
    small = pb.GetPayoutRequest(payout_id="p-1")
    small_wire = small.SerializeToString()
    parse = per_call(lambda: pb.GetPayoutRequest.FromString(small_wire), 20_000)
    check = per_call(lambda: string_violations(small), 20_000)
    print(f"GetPayout: parse {parse * 1e6:.1f} us, boundary {check * 1e6:.1f} us "
          f"({check / parse:.1f}x parse)")


if __name__ == "__main__":
    main()
