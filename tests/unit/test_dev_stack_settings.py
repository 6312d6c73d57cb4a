"""Which of the caller's settings the dev stack hands to payout-service."""

from local_stack.__main__ import passed_through


def test_webhook_alert_tracing_and_log_settings_reach_the_service():
    environ = {"PAYOUTS_WEBHOOK_URLS": "http://127.0.0.1:9/hook",
               "PAYOUTS_WEBHOOK_SECRETS": "new,old", "PAYOUTS_ALERT_PENDING_COUNT": "5",
               "PAYOUTS_OTLP_ENDPOINT": "http://127.0.0.1:4317",
               "PAYOUTS_WATCHDOG_PAUSE_ON_FINDING": "true", "PAYOUTS_LOG_LEVEL": "INFO",
               "HOME": "/root"}
    assert passed_through(environ) == environ


def test_the_stacks_own_settings_never_come_from_the_callers_shell():
    environ = {"PAYOUT_SOURCE_ACCOUNT": "G" + "A" * 55, "PAYOUTS_BATCH_MODE": "contract",
               "PAYOUTS_SIGNING_MODE": "external", "PAYOUTS_PLAINTEXT": "true",
               "PATH": "/usr/bin"}
    assert passed_through(environ) == {"PATH": "/usr/bin"}
