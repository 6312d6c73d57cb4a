"""A receiver trusts a webhook only when a v1 signature over `<t>.<body>` matches one of its
secrets and t is within its tolerance: a tampered body, an old or future timestamp and a
rotated-out secret are refused, and several active secrets sign side by side."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import replace

import pytest

from examples.webhook_receiver import Rejected as ExampleRejected
from examples.webhook_receiver import verify as example_verify
from payout_service.config import ConfigError, load_webhooks
from payout_service.core.health import (
    AlertKind,
    AlertThresholds,
    HealthMetrics,
    Level,
    conditions,
)
from payout_service.core.webhooks import (
    DEFAULT_TOLERANCE_SECONDS,
    SignatureRejected,
    budget_spent,
    parse_event_id,
    sign,
    verify,
)

OLD, NEW = "whsec-old-secret", "whsec-new-secret"
BODY = b'{"data":{"payout_id":"p-1"},"id":7,"type":"payout.confirmed"}'
T = 1_800_000_000


def test_v1_is_hmac_sha256_of_timestamp_dot_body():
    expected = hmac.new(NEW.encode(), f"{T}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(BODY, T, [NEW]) == f"t={T},v1={expected}"


def test_a_fresh_delivery_verifies_and_returns_its_timestamp():
    assert verify(BODY, sign(BODY, T, [NEW]), [NEW], now=T + 10) == T


def test_a_tampered_body_is_refused():
    header = sign(BODY, T, [NEW])
    with pytest.raises(SignatureRejected, match="no signature matches"):
        verify(BODY.replace(b"p-1", b"p-2"), header, [NEW], now=T)


def test_a_replaced_timestamp_breaks_the_signature():
    header = sign(BODY, T, [NEW]).replace(f"t={T}", f"t={T + 1000}")
    with pytest.raises(SignatureRejected, match="no signature matches"):
        verify(BODY, header, [NEW], now=T + 1000)


@pytest.mark.parametrize("skew", [DEFAULT_TOLERANCE_SECONDS + 1, -(DEFAULT_TOLERANCE_SECONDS + 1)])
def test_a_timestamp_outside_the_tolerance_is_refused(skew):
    header = sign(BODY, T, [NEW])
    with pytest.raises(SignatureRejected, match="outside the 300 s tolerance"):
        verify(BODY, header, [NEW], now=T + skew)
    assert verify(BODY, header, [NEW], now=T + skew, tolerance_seconds=abs(skew)) == T


def test_several_secrets_sign_side_by_side_for_rotation():
    header = sign(BODY, T, [NEW, OLD])
    assert header.count("v1=") == 2
    assert verify(BODY, header, [OLD], now=T) == T, "a receiver not yet rolled"
    assert verify(BODY, header, [NEW], now=T) == T, "a receiver already rolled"


def test_a_rotated_out_secret_no_longer_verifies():
    header = sign(BODY, T, [NEW])  # the sender dropped OLD
    with pytest.raises(SignatureRejected):
        verify(BODY, header, [OLD], now=T)


@pytest.mark.parametrize("header", [
    "", "garbage", "v1=abc", "t=abc,v1=abc", f"t={T}", f"t={T},t={T},v1=abc",
    # Anything a stranger can send is a refusal, never another exception: a non-ASCII
    # signature (compare_digest raises TypeError on it), a digit int() refuses.
    f"t={T},v1=é", f"t={T},v1=", "t=²,v1=ab", f"t={T},v1=ABCDEF\u00e9",
])
def test_a_malformed_header_is_refused(header):
    with pytest.raises(SignatureRejected):
        verify(BODY, header, [NEW], now=T)
    with pytest.raises(ExampleRejected):
        example_verify(BODY, header, [NEW], now=T)


def test_unknown_schemes_beside_v1_are_skipped():
    header = sign(BODY, T, [NEW]) + ",v0=deadbeef,ed25519=abc"
    assert verify(BODY, header, [NEW], now=T) == T


def test_an_empty_secret_never_verifies():
    with pytest.raises(SignatureRejected):
        verify(BODY, sign(BODY, T, [NEW]), [""], now=T)
    with pytest.raises(ValueError):
        sign(BODY, T, [])


@pytest.mark.parametrize(("text", "event_id", "alert"), [
    ("42", "42", False), ("alert-7", "alert-7", True),
])
def test_event_ids_name_their_outbox(text, event_id, alert):
    ref = parse_event_id(text)
    assert ref is not None and ref.event_id == event_id and ref.alert is alert


@pytest.mark.parametrize("text", ["", "0", "-1", "alert-", "alert-x", "x7", "٣",
                                  "9" * 20, str(2**63)])
def test_malformed_event_ids_are_not_parsed(text):
    assert parse_event_id(text) is None


def test_the_retry_budget_counts_attempts_since_the_event_was_queued():
    assert not budget_spent(29, 30)
    assert budget_spent(30, 30)


def test_secrets_for_rotation_and_the_single_secret_variable():
    urls = {"PAYOUTS_WEBHOOK_URLS": "https://hooks.example/p"}
    both = load_webhooks({**urls, "PAYOUTS_WEBHOOK_SECRETS": f"{NEW}, {OLD}"})
    assert both.secrets == (NEW, OLD)
    assert NEW not in repr(both) and OLD not in repr(both)
    # The single-secret variable is read whole, as before (a comma is part of the secret).
    assert load_webhooks({**urls, "PAYOUTS_WEBHOOK_SECRET": "a,b"}).secrets == ("a,b",)
    assert load_webhooks({**urls, "PAYOUTS_WEBHOOK_SECRET": NEW,
                          "PAYOUTS_WEBHOOK_SECRETS": f"{NEW},{OLD}"}).secrets == (NEW, OLD)
    with pytest.raises(ConfigError, match="PAYOUTS_WEBHOOK_SECRET and PAYOUTS_WEBHOOK_SECRETS"):
        load_webhooks({**urls, "PAYOUTS_WEBHOOK_SECRET": "x",
                       "PAYOUTS_WEBHOOK_SECRETS": NEW})
    with pytest.raises(ConfigError, match="twice"):
        load_webhooks({**urls, "PAYOUTS_WEBHOOK_SECRETS": f"{NEW},{NEW}"})
    with pytest.raises(ConfigError, match="PAYOUTS_WEBHOOK_SECRETS"):
        load_webhooks(urls)
    assert load_webhooks({**urls, "PAYOUTS_WEBHOOK_SECRETS": NEW}).max_attempts == 30
    with pytest.raises(ConfigError, match="PAYOUTS_WEBHOOK_MAX_ATTEMPTS"):
        load_webhooks({**urls, "PAYOUTS_WEBHOOK_SECRETS": NEW,
                       "PAYOUTS_WEBHOOK_MAX_ATTEMPTS": "0"})


def test_the_readme_receiver_example_verifies_what_the_service_signs():
    header = sign(BODY, T, [NEW, OLD])
    assert example_verify(BODY, header, [OLD], now=T + 299) == T
    for body, secrets, now in [(BODY + b" ", [NEW], T), (BODY, ["whsec-gone"], T),
                               (BODY, [NEW], T + 301)]:
        with pytest.raises(ExampleRejected):
            example_verify(body, header, secrets, now=now)


def test_a_dead_lettered_webhook_is_an_alert_of_its_own_kind():
    quiet = HealthMetrics(failure_rate=0.0, pending_count=0, oldest_pending_age_seconds=0.0,
                          amount_last_24h_stroops=0, system_errors_last_hour=0)
    assert conditions(quiet, AlertThresholds()) == []
    [found] = conditions(replace(quiet, webhooks_dead_lettered=2), AlertThresholds())
    assert (found.kind, found.severity) == (AlertKind.WEBHOOKS_DEAD_LETTERED, Level.WARNING)
    assert "2 webhook event(s) dead-lettered" in found.message
