"""Fixtures for the sandbox's own tests: an in-process sandbox and a stellar-sdk client on it.

The sandbox models the newest protocol it knows unless a test asks for another one:
``@pytest.mark.parametrize("sandbox", [25], indirect=True)``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from stellar_sdk import SorobanServerAsync
from stellar_sdk.client.aiohttp_client import AiohttpClient

from soroban_sandbox.protocol import NEWEST
from soroban_sandbox.server import SandboxConfig
from soroban_sandbox.testing import InProcessSandbox


@pytest.fixture
async def sandbox(request: pytest.FixtureRequest) -> AsyncIterator[InProcessSandbox]:
    protocol = getattr(request, "param", NEWEST)
    config = SandboxConfig(ledger_interval=0.1, seed=1, protocol=protocol)
    async with InProcessSandbox(config) as running:
        yield running


@pytest.fixture
async def server(sandbox: InProcessSandbox) -> AsyncIterator[SorobanServerAsync]:
    client = SorobanServerAsync(sandbox.rpc_url, client=AiohttpClient())
    yield client
    await client.close()
