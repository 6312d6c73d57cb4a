"""Bad configuration fails at start-up with one line naming the variable."""

from __future__ import annotations

import pytest
from stellar_sdk import Keypair

from payout_service.config import ConfigError, load_config

BASE = {
    "DATABASE_URL": "postgresql://x/y",
    "PAYOUT_SOURCE_ACCOUNT": Keypair.random().public_key,
    "PAYOUTS_PLAINTEXT": "true",
}


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"PAYOUT_SOURCE_ACCOUNT": ""}, "PAYOUT_SOURCE_ACCOUNT"),
        ({"PAYOUT_SOURCE_ACCOUNT": "GABC"}, "PAYOUT_SOURCE_ACCOUNT"),
        ({"DATABASE_URL": ""}, "DATABASE_URL"),
        ({"PAYOUTS_MAX_GAS_STROOPS": "lots"}, "PAYOUTS_MAX_GAS_STROOPS"),
        ({"PAYOUTS_MAX_ATTEMPTS": "0"}, "PAYOUTS_MAX_ATTEMPTS"),
        ({"PAYOUTS_LIVE_EXECUTION": "maybe"}, "PAYOUTS_LIVE_EXECUTION"),
        ({"PAYOUTS_LIVE_EXECUTION": "true"}, "SOROBAN_RPC_URL"),
        ({"PAYOUT_CONTRACT_ID": "C123"}, "PAYOUT_CONTRACT_ID"),
        ({"PAYOUTS_MIN_AMOUNT": "1.123456789"}, "PAYOUTS_MIN_AMOUNT"),
        ({"PAYOUTS_FEE_BPS": "10000"}, "PAYOUTS_FEE_BPS"),
        ({"PAYOUTS_NETWORK_CLASSIC_OPS_PER_LEDGER": "0"}, "PAYOUTS_NETWORK_CLASSIC_OPS_PER_LEDGER"),
        ({"PAYOUTS_NETWORK_CLASSIC_OPS_PER_LEDGER": "many"},
         "PAYOUTS_NETWORK_CLASSIC_OPS_PER_LEDGER"),
        ({"PAYOUT_HOT_SIGNER_SECRET": "S-anything"}, "PAYOUT_HOT_SIGNER_SECRET"),
        ({"PAYOUTS_WATCHDOG_ENABLED": "true"}, "PAYOUTS_WATCHDOG_ENABLED"),
        ({"PAYOUTS_WATCHDOG_ENABLED": "sometimes"}, "PAYOUTS_WATCHDOG_ENABLED"),
        ({"PAYOUTS_WATCHDOG_INTERVAL_MS": "5"}, "PAYOUTS_WATCHDOG_INTERVAL_MS"),
        ({"PAYOUTS_WATCHDOG_PAUSE_ON_FINDING": "yes please"},
         "PAYOUTS_WATCHDOG_PAUSE_ON_FINDING"),
        ({"PAYOUTS_WATCHDOG_CONFIRMED_WINDOW_SECONDS": "10"},
         "PAYOUTS_WATCHDOG_CONFIRMED_WINDOW_SECONDS"),
        ({"PAYOUTS_LIVE_EXECUTION": "true", "SOROBAN_RPC_URL": "http://rpc"},
         "PAYOUTS_SIGNER_ADDR"),
        ({"PAYOUTS_PLAINTEXT": ""}, "PAYOUTS_TLS_CERT"),
        ({"PAYOUTS_TLS_CERT": "/nonexistent.pem"}, "PAYOUTS_TLS_KEY"),
        ({"PAYOUTS_TLS_CERT": "/nonexistent.pem", "PAYOUTS_TLS_KEY": "/nonexistent.key"},
         "PAYOUTS_TLS_CERT"),
    ],
)
def test_bad_config_names_the_variable(overrides, variable):
    with pytest.raises(ConfigError) as caught:
        load_config({**BASE, **overrides})
    message = str(caught.value)
    assert variable in message
    assert "\n" not in message
    assert "S-anything" not in message, "a secret's value is never echoed"


def test_defaults_follow_the_seeds():
    config = load_config(BASE)
    assert config.live_execution is False
    assert config.max_gas_stroops == 2_000_000
    assert config.max_attempts == 5
    assert config.confirm_poll_ms == 2500 and config.confirm_max_polls == 20
    assert config.method_name == "distribute_winnings"


SIGNER_MODE = {
    **BASE, "PAYOUTS_LIVE_EXECUTION": "true", "SOROBAN_RPC_URL": "http://rpc",
    "PAYOUTS_SIGNER_ADDR": "signer:443", "PAYOUTS_SIGNER_CA_CERT": "ca.pem",
    "PAYOUTS_SIGNER_CLIENT_CERT": "c.pem", "PAYOUTS_SIGNER_CLIENT_KEY": "c.key",
}


def test_several_signer_instances_are_one_comma_separated_address_list():
    config = load_config({**SIGNER_MODE, "PAYOUTS_SIGNER_ADDR": "signer-a:443, signer-b:443"})
    assert config.signer is not None
    assert config.signer.addresses == ("signer-a:443", "signer-b:443")
    single = load_config(SIGNER_MODE).signer
    assert single is not None and single.addresses == ("signer:443",)


@pytest.mark.parametrize("raw", ["signer-a:443,", "signer-a:443,,signer-b:443",
                                 "signer-a:443,signer-a:443", " , "])
def test_an_empty_or_repeated_signer_address_is_refused(raw):
    with pytest.raises(ConfigError, match="PAYOUTS_SIGNER_ADDR must be host:port"):
        load_config({**SIGNER_MODE, "PAYOUTS_SIGNER_ADDR": raw})


def test_channel_accounts_map_addresses_to_signer_keys():
    a, b = Keypair.random().public_key, Keypair.random().public_key
    config = load_config({**SIGNER_MODE, "PAYOUTS_CHANNEL_ACCOUNTS": f"ch-a={a}, ch-b={b}"})
    assert config.signer is not None
    assert dict(config.signer.channel_keys) == {a: "ch-a", b: "ch-b"}


@pytest.mark.parametrize("raw, problem", [
    ("ch-a", "must be key_id=G..."),
    ("=GABC", "must be key_id=G..."),
    ("ch-a=GABC", "is not a valid G... account id"),
    ("ch-a={source}", "the paying account cannot also be a channel"),
    ("ch-a={one},ch-b={one}", "is listed twice"),
])
def test_bad_channel_accounts_are_refused_with_the_reason(raw, problem):
    one = Keypair.random().public_key
    raw = raw.format(source=SIGNER_MODE["PAYOUT_SOURCE_ACCOUNT"], one=one)
    with pytest.raises(ConfigError, match="PAYOUTS_CHANNEL_ACCOUNTS") as caught:
        load_config({**SIGNER_MODE, "PAYOUTS_CHANNEL_ACCOUNTS": raw})
    assert problem in str(caught.value)


def test_channel_accounts_need_signer_mode():
    a = Keypair.random().public_key
    with pytest.raises(ConfigError, match="PAYOUTS_CHANNEL_ACCOUNTS needs"):
        load_config({**BASE, "PAYOUTS_CHANNEL_ACCOUNTS": f"ch-a={a}"})


def test_a_logged_database_url_never_shows_its_password():
    from payout_service.adapters.payout_store import redacted_dsn

    assert redacted_dsn("postgresql://payouts:s3cr3t@db:5432/payouts") == \
        "postgresql://payouts:***@db:5432/payouts"
    assert redacted_dsn("postgresql://postgres@127.0.0.1:5432/postgres") == \
        "postgresql://postgres@127.0.0.1:5432/postgres"


def test_the_classic_ops_per_ledger_is_the_network_s_unless_set():
    assert load_config(BASE).network_classic_ops_per_ledger is None
    config = load_config({**BASE, "PAYOUTS_NETWORK_CLASSIC_OPS_PER_LEDGER": "150"})
    assert config.network_classic_ops_per_ledger == 150


def test_the_watchdog_runs_in_live_mode_unless_turned_off():
    assert not load_config(BASE).watchdog.enabled, "build-only: nothing to watch"
    signer = {"PAYOUTS_SIGNER_ADDR": "h:1", "PAYOUTS_SIGNER_CA_CERT": "ca",
              "PAYOUTS_SIGNER_CLIENT_CERT": "c", "PAYOUTS_SIGNER_CLIENT_KEY": "k"}
    live = {**BASE, **signer, "PAYOUTS_LIVE_EXECUTION": "true", "SOROBAN_RPC_URL": "http://rpc"}
    watchdog = load_config(live).watchdog
    assert (watchdog.enabled, watchdog.interval_seconds, watchdog.pause_on_finding,
            watchdog.confirmed_window_seconds) == (True, 1.0, False, 3600)
    assert not load_config({**live, "PAYOUTS_WATCHDOG_ENABLED": "false"}).watchdog.enabled
    assert load_config({**live, "PAYOUTS_WATCHDOG_PAUSE_ON_FINDING": "true"}
                       ).watchdog.pause_on_finding
