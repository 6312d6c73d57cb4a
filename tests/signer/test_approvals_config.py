"""The approvals table of a key's policy: parsed, off when absent, misconfiguration refused."""

from __future__ import annotations

import pytest
from stellar_sdk import Keypair

from signer_service.config import ConfigError, parse_config
from tests.signer.envelopes import XLM_SAC
from tests.signer.test_batch_policy import config_with

APPROVERS = [Keypair.from_raw_ed25519_seed(bytes([i] * 32)).public_key for i in (21, 22)]


def with_approvals(approvals: dict | None, tmp_path) -> dict:  # noqa: ANN001
    config = config_with({"assets": ["native"]}, tmp_path)
    if approvals is not None:
        config["keys"][0]["policy"]["approvals"] = approvals
    return config


def test_the_rule_is_off_without_the_table(tmp_path):
    assert parse_config(with_approvals(None, tmp_path)).keys[0].policy.approvals is None


def test_the_table_is_parsed(tmp_path):
    rule = parse_config(with_approvals({
        "approvers": APPROVERS, "required": 2,
        "thresholds": {"native": 100, XLM_SAC: 0}}, tmp_path)).keys[0].policy.approvals
    assert rule is not None
    assert (rule.approvers, rule.required) == (frozenset(APPROVERS), 2)
    assert rule.needs_approval("native", 101) and not rule.needs_approval("native", 100)
    assert rule.needs_approval("USDC:" + APPROVERS[0], 1)  # no threshold: every amount


@pytest.mark.parametrize(("approvals", "message"), [
    ({"approvers": APPROVERS, "required": 3}, "more than the 2 approvers"),
    ({"approvers": APPROVERS, "required": 0}, "required must be a positive integer"),
    ({"approvers": ["GABC"], "required": 1}, "not a G... public key"),
    ({"approvers": [APPROVERS[0]] * 2, "required": 1}, "lists a key twice"),
    ({"approvers": APPROVERS, "required": 1, "thresholds": {"XLM": 1}}, "is not 'native'"),
    ({"approvers": APPROVERS, "required": 1, "thresholds": {"native": -1}}, ">= 0"),
    ({"approvers": APPROVERS, "required": 1, "threshold": {}}, "unknown setting"),
])
def test_misconfiguration_is_refused(approvals, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        parse_config(with_approvals(approvals, tmp_path))
