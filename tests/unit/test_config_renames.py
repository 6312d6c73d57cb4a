"""One configuration, parsed once: renamed variables keep working for a release under their old
name with a warning naming the new one, and old and new set to different values are refused."""

from __future__ import annotations

import logging

import pytest
from stellar_sdk import Keypair

from payout_service.config import RENAMED, ConfigError, load_config, warn_renamed

BASE = {
    "DATABASE_URL": "postgresql://x/y",
    "PAYOUT_SOURCE_ACCOUNT": Keypair.random().public_key,
    "PAYOUTS_PLAINTEXT": "true",
}

# Old name, new name, a value for the old one, the Config attribute and its expected value.
RENAMES = [
    ("PAYOUTS_BATCH_SIZE", "PAYOUTS_CLAIM_SIZE", "7", "claim_size", 7),
    ("PAYOUTS_MAX_BATCH_ITEMS", "PAYOUTS_MAX_BULK_ITEMS", "9", "max_bulk_items", 9),
    ("PAYOUTS_SIGN_WITH_HOT_KEY", "PAYOUTS_SIGNING_MODE", "false", "signing_mode", "external"),
]


def test_every_rename_is_in_the_one_table():
    assert {old: rename.new for old, rename in RENAMED.items()} == {
        old: new for old, new, *_ in RENAMES}


@pytest.mark.parametrize(("old", "new", "raw", "attribute", "expected"), RENAMES)
def test_the_new_name_works_without_a_warning(old, new, raw, attribute, expected):
    new_value = "external" if new == "PAYOUTS_SIGNING_MODE" else raw
    config = load_config({**BASE, new: new_value})
    assert getattr(config, attribute) == expected
    assert config.renamed_in_use == ()


@pytest.mark.parametrize(("old", "new", "raw", "attribute", "expected"), RENAMES)
def test_the_old_name_still_works_and_warns_naming_the_new_one(
    old, new, raw, attribute, expected, caplog
):
    config = load_config({**BASE, old: raw})
    assert getattr(config, attribute) == expected
    assert config.renamed_in_use == (old,)
    with caplog.at_level(logging.WARNING):
        warn_renamed(config, logging.getLogger("payout_service"))
    [record] = caplog.records
    assert record.getMessage() == "deprecated environment variable"
    assert (record.variable, record.use_instead) == (old, new)  # type: ignore[attr-defined]
    assert raw not in record.getMessage()


@pytest.mark.parametrize(("old", "new", "raw", "attribute", "expected"), RENAMES)
def test_old_and_new_set_to_different_values_are_refused(old, new, raw, attribute, expected):
    other = "signer" if new == "PAYOUTS_SIGNING_MODE" else "11"
    with pytest.raises(ConfigError) as caught:
        load_config({**BASE, old: raw, new: other})
    message = str(caught.value)
    assert old in message and new in message and "disagree" in message


@pytest.mark.parametrize(("old", "new", "raw", "attribute", "expected"), RENAMES)
def test_old_and_new_set_to_the_same_value_is_accepted_with_the_warning(
    old, new, raw, attribute, expected
):
    same = str(expected)
    config = load_config({**BASE, old: raw, new: same})
    assert getattr(config, attribute) == expected
    assert config.renamed_in_use == (old,)


def test_the_hot_key_alias_true_means_signing_by_the_signer_service():
    # In the seed, "hot key" signing was automatic signing; the key now lives in the signer.
    assert load_config({**BASE, "PAYOUTS_SIGN_WITH_HOT_KEY": "true"}).signing_mode == "signer"
    with pytest.raises(ConfigError, match="disagree"):
        load_config({**BASE, "PAYOUTS_SIGN_WITH_HOT_KEY": "true",
                     "PAYOUTS_SIGNING_MODE": "external"})


@pytest.mark.parametrize(("env", "words"), [
    ({"PAYOUTS_BATCH_SIZE": "many"}, ["PAYOUTS_BATCH_SIZE", "PAYOUTS_CLAIM_SIZE", "integer"]),
    ({"PAYOUTS_MAX_BATCH_ITEMS": "0"}, ["PAYOUTS_MAX_BATCH_ITEMS", "at least 1"]),
    ({"PAYOUTS_SIGN_WITH_HOT_KEY": "perhaps"}, ["PAYOUTS_SIGN_WITH_HOT_KEY", "true or false"]),
    ({"PAYOUTS_CLAIM_SIZE": "0"}, ["PAYOUTS_CLAIM_SIZE", "at least 1"]),
    ({"PAYOUTS_MAX_BULK_ITEMS": "x"}, ["PAYOUTS_MAX_BULK_ITEMS", "integer"]),
    ({"PAYOUTS_SIGNING_MODE": "hot"}, ["PAYOUTS_SIGNING_MODE", "'signer' or 'external'"]),
])
def test_a_bad_value_names_the_variable_the_operator_set_and_the_rule(env, words):
    with pytest.raises(ConfigError) as caught:
        load_config({**BASE, **env})
    for word in words:
        assert word in str(caught.value)


def test_defaults_of_the_renamed_and_merged_settings():
    config = load_config(BASE)
    assert config.claim_size == 25
    assert config.max_bulk_items == 500
    assert config.signing_mode == "signer"
    assert config.log_level == "INFO"
    assert config.otlp_endpoint is None and config.failpoint is None
    programs = config.programs
    assert programs.scheduler_interval == 30.0 and programs.settle_interval == 5.0
    assert programs.alert_interval == 30.0 and programs.outbox_interval == 1.0
    assert programs.reconcile_interval == 3600.0
    assert programs.events_retention_days == 400.0
    assert programs.events_retention_interval == 3600.0
    assert programs.webhooks.urls == () and programs.thresholds.pending_count == 50


def test_the_program_settings_are_part_of_the_one_configuration():
    config = load_config({
        **BASE, "PAYOUTS_SETTLE_INTERVAL_SECONDS": "0.5", "PAYOUTS_ALERT_PENDING_COUNT": "9",
        "PAYOUTS_WEBHOOK_URLS": "https://hooks.example/p", "PAYOUTS_WEBHOOK_SECRET": "whsec-x",
        "PAYOUTS_EVENTS_RETENTION_DAYS": "0",
    })
    assert config.programs.settle_interval == 0.5
    assert config.programs.thresholds.pending_count == 9
    assert config.programs.webhooks.urls == ("https://hooks.example/p",)
    assert config.programs.events_retention_days == 0
    assert "whsec-x" not in repr(config)


@pytest.mark.parametrize(("env", "variable"), [
    ({"PAYOUTS_SETTLE_INTERVAL_SECONDS": "0"}, "PAYOUTS_SETTLE_INTERVAL_SECONDS"),
    ({"PAYOUTS_RECONCILE_INTERVAL_SECONDS": "nan"}, "PAYOUTS_RECONCILE_INTERVAL_SECONDS"),
    ({"PAYOUTS_WEBHOOK_URLS": "ftp://x"}, "PAYOUTS_WEBHOOK_URLS"),
    ({"PAYOUTS_WEBHOOK_URLS": "https://x"}, "PAYOUTS_WEBHOOK_SECRET"),
    ({"PAYOUTS_ALERT_AMOUNT_24H": "lots"}, "PAYOUTS_ALERT_AMOUNT_24H"),
    ({"PAYOUTS_LOG_LEVEL": "chatty"}, "PAYOUTS_LOG_LEVEL"),
    ({"PAYOUTS_FAILPOINT": "nowhere"}, "PAYOUTS_FAILPOINT"),
])
def test_bad_program_and_process_settings_name_the_variable(env, variable):
    with pytest.raises(ConfigError, match=variable):
        load_config({**BASE, **env})


def test_process_settings_are_read_once_into_the_config():
    config = load_config({
        **BASE, "PAYOUTS_LOG_LEVEL": "warning", "PAYOUTS_FAILPOINT": "after_sign",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317",
    })
    assert config.log_level == "WARNING"
    assert config.failpoint == "after_sign"
    assert config.otlp_endpoint == "http://collector:4317"
    assert load_config({**BASE, "PAYOUTS_OTLP_ENDPOINT": "http://mine:4317",
                        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://other:4317"}
                       ).otlp_endpoint == "http://mine:4317"


@pytest.mark.parametrize(("spelling", "level"), [
    ("warn", "WARNING"), ("WARN", "WARNING"), ("fatal", "CRITICAL"), ("notset", "DEBUG"),
    ("error", "ERROR"),
])
def test_every_level_spelling_logging_accepts_is_accepted(spelling, level):
    """signer-service hands the same variable to logging as it is: a spelling one service
    takes must not stop the other from starting."""
    assert logging.getLevelName(spelling.upper()) != f"Level {spelling.upper()}"
    assert load_config({**BASE, "PAYOUTS_LOG_LEVEL": spelling}).log_level == level


@pytest.mark.parametrize(("old", "new", "raw", "attribute", "expected"), RENAMES)
def test_old_and_new_spelled_differently_but_meaning_the_same_are_accepted(
    old, new, raw, attribute, expected
):
    # The parser reads `050` as 50 and ` external ` as external: only a different value
    # disagrees.
    spelled = " external " if new == "PAYOUTS_SIGNING_MODE" else f"0{expected}"
    config = load_config({**BASE, old: raw, new: spelled})
    assert getattr(config, attribute) == expected


def test_a_command_line_tool_warns_on_stderr_naming_both_variables(capsys):
    config = load_config({**BASE, "PAYOUTS_BATCH_SIZE": "7"})
    warn_renamed(config)
    err = capsys.readouterr().err
    assert "PAYOUTS_BATCH_SIZE" in err and "PAYOUTS_CLAIM_SIZE" in err and "7" not in err
