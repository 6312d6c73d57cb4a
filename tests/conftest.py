"""Shared fixtures: a real PostgreSQL (DATABASE_URL when set, else a throwaway cluster)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from payout_service.embedded_postgres import EmbeddedPostgres


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    cluster = EmbeddedPostgres().start()
    try:
        yield cluster.dsn
    finally:
        cluster.stop()


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    query = ""
    if "?" in url:
        query = "?" + url.split("?", 1)[1]
    return f"{base}/{name}{query}"


@pytest.fixture
async def fresh_database(postgres_url: str) -> AsyncIterator[str]:
    """A new, empty database per test, dropped afterwards."""
    name = f"payouts_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield _with_database(postgres_url, name)
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
