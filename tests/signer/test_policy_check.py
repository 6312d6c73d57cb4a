"""`signerctl policy check FILE XDR`: the signer's decision, explained node by node."""

from __future__ import annotations

import subprocess
import sys

import pytest
from stellar_sdk import Asset, TransactionEnvelope
from stellar_sdk import xdr as sx

from signer_service.certs import generate_dev_certs
from signer_service.config import ConfigError
from tests.signer.envelopes import PASSPHRASE, SOURCE, XLM_SAC
from tests.signer.test_auth_tree import (
    APPROVE,
    address_entry,
    node,
    source_entry,
    transfer,
    tx_with,
)
from tests.signer.test_batch_policy import batch

CONFIG = """
[server]
listen_addr = "127.0.0.1:0"
network_passphrase = "{pp}"
[tls]
cert = "{d}/server.pem"
key = "{d}/server.key"
client_ca = "{d}/ca.pem"
[audit]
path = "{d}/audit.log"
[[keys]]
id = "payout"
backend = "hot"
allowed_clients = ["payout-service"]
[keys.policy]
network_passphrase = "{pp}"
source_accounts = ["*"]
max_fee_stroops = 2000000
max_amount_stroops_per_tx = 1000
max_amount_stroops_per_day = 5000
max_time_window_seconds = 300
max_signature_expiration_ledgers = 50
[[keys.policy.calls]]
contract_ids = ["{sac}"]
function = "transfer"
args = ["from: address", "to: address", "amount: amount"]
[keys.policy.payments]
assets = ["native"]
"""


def check(tmp_path, xdr: str, *extra: str) -> subprocess.CompletedProcess[str]:
    generate_dev_certs(tmp_path, ["payout-service"])
    config = tmp_path / "signer.toml"
    config.write_text(CONFIG.format(d=tmp_path, pp=PASSPHRASE, sac=XLM_SAC))
    return subprocess.run(
        [sys.executable, "-m", "signer_service.cli", "policy", "check", str(config), xdr, *extra],
        capture_output=True, text=True, check=False, timeout=60)


def envelope(tx) -> str:  # noqa: ANN001
    return TransactionEnvelope(tx, PASSPHRASE).to_xdr()


def test_an_allowed_transaction_lists_its_nodes_and_the_amount(tmp_path):
    out = check(tmp_path, envelope(tx_with(transfer(5), source_entry(node(transfer(5))))))
    assert out.returncode == 0, out.stderr
    assert "call" in out.stdout and "auth[0]" in out.stdout
    assert out.stdout.strip().endswith("ALLOW: amount 5 stroops counts toward the limits")


def test_a_refused_transaction_names_the_node_and_the_rule(tmp_path):
    tx = tx_with(transfer(5), source_entry(node(transfer(5), node(APPROVE))))
    out = check(tmp_path, envelope(tx))
    assert out.returncode == 1
    bad = [line for line in out.stdout.splitlines() if "REFUSED" in line]
    assert len(bad) == 1 and bad[0].startswith("auth[0].sub[0]") and ".approve" in bad[0]
    assert "REFUSE: policy rule function_names refused" in out.stdout


def test_an_authorization_entry_is_checked_with_its_ledgers(tmp_path):
    entry = address_entry(node(transfer(7))).to_xdr()
    ok = check(tmp_path, entry, "--current-ledger", "100", "--expiration-ledger", "150")
    assert ok.returncode == 0 and "ALLOW: amount 7" in ok.stdout
    far = check(tmp_path, entry, "--current-ledger", "100", "--expiration-ledger", "151")
    assert far.returncode == 1 and "max_signature_expiration_ledgers" in far.stdout


def test_garbage_is_one_clear_line(tmp_path):
    out = check(tmp_path, "not-xdr")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "neither a TransactionEnvelope nor a SorobanAuthorizationEntry" in out.stderr


def load(tmp_path, edit):  # noqa: ANN001, ANN201
    from signer_service.config import load_config

    generate_dev_certs(tmp_path, ["payout-service"])
    config = tmp_path / "signer.toml"
    config.write_text(edit(CONFIG.format(d=tmp_path, pp=PASSPHRASE, sac=XLM_SAC)))
    return load_config(config)


def test_the_calls_table_parses_into_one_rule_per_function(tmp_path):
    policy = load(tmp_path, lambda c: c).keys[0].policy
    (rule,) = policy.calls
    assert (rule.function, [(a.name, a.type) for a in rule.args]) == (
        "transfer", [("from", "address"), ("to", "address"), ("amount", "amount")])
    assert policy.max_signature_expiration_ledgers == 50


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.replace('function = "transfer"', 'function = "transfer"\nbogus = 1'),
     "unknown setting 'bogus'"),
    (lambda c: c.replace('"amount: amount"', '"amount: u256"'), "must be 'name: type'"),
    (lambda c: c.replace("max_time_window_seconds = 300", 'max_time_window_seconds = 300\n'
                         'contract_ids = ["*"]'), "function_names"),
    (lambda c: c.replace("max_time_window_seconds", "max_time_window_secs"),
     "unknown setting 'max_time_window_secs'"),
    (lambda c: c.replace("[[keys.policy.calls]]", "[[keys.policy.calls]]\n")
     + '[[keys.policy.calls]]\ncontract_ids = ["*"]\nfunction = "transfer"\nargs = []\n',
     "two schemas"),
    (lambda c: c[:c.index("[[keys.policy.calls]]")], "no call is allowed"),
    (lambda c: c.replace("max_time_window_seconds = 300", "max_time_window_seconds = 300\n"
                         'function_names = ["*"]\ncontract_ids = ["*"]'), "'*'"),
])
def test_policy_mistakes_fail_at_start_naming_the_setting(tmp_path, edit, message):
    with pytest.raises(ConfigError, match=message.replace("*", r"\*").replace("(", r"\(")):
        load(tmp_path, edit)


def xdr_envelope(tx: sx.Transaction) -> str:
    return sx.TransactionEnvelope(sx.EnvelopeType.ENVELOPE_TYPE_TX,
                                  v1=sx.TransactionV1Envelope(tx, [])).to_xdr()


def test_a_classic_batch_is_explained_operation_by_operation(tmp_path):
    ops = [("pay", Asset.native(), 100), ("create", Asset.native(), 200)]
    out = check(tmp_path, xdr_envelope(batch(ops)), "--account", SOURCE)
    assert out.returncode == 0, out.stderr
    assert "op[0]" in out.stdout and "CREATE_ACCOUNT 200 native" in out.stdout
    assert out.stdout.strip().endswith("ALLOW: amount 300 stroops counts toward the limits")


def test_a_refused_batch_names_the_operation_and_the_rule(tmp_path):
    tx = batch([("pay", Asset.native(), 5)] * 3 + [("pay", Asset("EURT", SOURCE), 5)])
    out = check(tmp_path, xdr_envelope(tx), "--account", SOURCE)
    assert out.returncode == 1
    assert "op[3]" in out.stdout and "REFUSED policy rule assets" in out.stdout
    over = check(tmp_path, xdr_envelope(batch([("pay", Asset.native(), 600)] * 2)),
                 "--account", SOURCE)
    assert "REFUSE: policy rule max_amount_stroops_per_tx refused: amount 1200 > 1000" in \
        over.stdout
