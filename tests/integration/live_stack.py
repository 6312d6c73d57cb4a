"""What a live payout-service replica runs against in the multi-process tests: funded channel
accounts and destinations on the sandbox, the real signer (hot key) holding their keys, and
the environment a replica is started with."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from signer_service.testing import SignerFixture, running_signer
from soroban_sandbox.testing import RunningSandbox
from tests.integration.test_live_with_signer import ChannelWorld, channel_world, signer_env


async def live_channel_env(
    stack: contextlib.AsyncExitStack, sandbox: RunningSandbox, tmp_path: Path,
    database_url: str, *, payouts: int, channels: int = 2, **settings: Any,
) -> tuple[ChannelWorld, SignerFixture, dict[str, str]]:
    world = await channel_world(sandbox, channels=channels, payouts=payouts)
    signer = await stack.enter_async_context(running_signer(
        tmp_path, network_passphrase=sandbox.passphrase, backend="hot",
        hot_secret=world.source.secret, extra_keys=world.channel_secrets,
        policy=world.policy, key_settings=world.channel_settings))
    env = {
        **signer_env(signer),
        "DATABASE_URL": database_url, "PAYOUT_SOURCE_ACCOUNT": world.source.public_key,
        "SOROBAN_RPC_URL": sandbox.rpc_url, "STELLAR_NETWORK_PASSPHRASE": sandbox.passphrase,
        "PAYOUTS_LIVE_EXECUTION": "true", "PAYOUTS_PLAINTEXT": "true",
        "PAYOUTS_CONFIRM_POLL_MS": "150", "PAYOUTS_TX_WINDOW_SECONDS": "8",
        "PAYOUTS_RPC_TIMEOUT_MS": "1000", "PAYOUTS_CHANNEL_ACCOUNTS": world.setting,
        **{k: str(v) for k, v in settings.items()},
    }
    return world, signer, env
