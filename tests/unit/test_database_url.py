"""DATABASE_URL in libpq's multi-host syntax: one URL per host, sessions that take writes only,
a connect timeout per host, and no password in a log line."""

from __future__ import annotations

import pytest
from stellar_sdk import Keypair

from payout_service.adapters.database import parse_database_url, redacted_dsn
from payout_service.config import ConfigError, load_config


def test_several_hosts_become_one_url_each_with_the_rest_kept():
    url = parse_database_url(
        "postgresql://payouts:pw@db-a:5432,db-b:5433/payouts"
        "?target_session_attrs=primary&sslmode=require&connect_timeout=3")
    assert url.hosts == ("db-a:5432", "db-b:5433")
    assert url.host_urls == (
        "postgresql://payouts:pw@db-a:5432/payouts?sslmode=require",
        "postgresql://payouts:pw@db-b:5433/payouts?sslmode=require",
    )
    assert url.target_session_attrs == "primary"
    assert url.connect_timeout == 3.0


def test_sessions_take_writes_unless_told_otherwise():
    url = parse_database_url("postgresql://postgres@127.0.0.1:5432/postgres")
    assert url.target_session_attrs == "read-write"
    assert url.host_urls == ("postgresql://postgres@127.0.0.1:5432/postgres",)


@pytest.mark.parametrize(("raw", "problem"), [
    ("postgresql://u@a,b/db?target_session_attrs=any", "could connect payout-service to a"),
    ("postgresql://u@a/db?target_session_attrs=prefer-standby", "standby"),
    ("postgresql://u@a,,b/db", "empty host"),
    ("mysql://u@a/db", "postgresql://"),
    ("postgresql://u@a/db?connect_timeout=soon", "connect_timeout"),
    ("postgresql://u@a/db?connect_timeout=0", "connect_timeout"),
])
def test_a_url_that_could_write_to_a_standby_or_cannot_work_fails_at_start_up(raw, problem):
    with pytest.raises(ConfigError, match="DATABASE_URL") as caught:
        load_config({"DATABASE_URL": raw, "PAYOUT_SOURCE_ACCOUNT": Keypair.random().public_key})
    assert problem in str(caught.value)


def test_a_logged_multi_host_url_never_shows_its_password():
    assert redacted_dsn("postgresql://payouts:s3cr3t@db-a:5432,db-b:5432/payouts") == \
        "postgresql://payouts:***@db-a:5432,db-b:5432/payouts"
    assert redacted_dsn("postgresql://payouts@db-a,db-b/payouts") == \
        "postgresql://payouts@db-a,db-b/payouts"
