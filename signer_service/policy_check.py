"""`signerctl policy check`: the policy's decision on one XDR, explained node by node."""

from __future__ import annotations

import time
from pathlib import Path

from stellar_sdk import Address
from stellar_sdk import xdr as sx

from signer_service.approvals import approvals_refusal
from signer_service.config import ConfigError, KeyConfig, load_config
from signer_service.envelope import EnvelopeProblem, ParsedEnvelope, parse_envelope
from signer_service.ledger_claims import LedgerClaim, ledger_ceiling
from signer_service.policy import (
    Allow,
    TreeWalk,
    authorization_walk,
    check_authorization,
    check_transaction,
    iter_nodes,
    operations_walk,
    served_payers,
)


def _key(keys: tuple[KeyConfig, ...], key_id: str | None) -> KeyConfig:
    if key_id is None:
        if len(keys) != 1:
            raise ConfigError(f"the config has {len(keys)} keys: pass --key")
        return keys[0]
    for key in keys:
        if key.key_id == key_id:
            return key
    raise ConfigError(f"no key {key_id[:64]!r} in the config")


def explain(
    config_path: Path, xdr: str, *, key_id: str | None, current_ledger: int,
    expiration_ledger: int, spent: int, account: str | None = None,
) -> tuple[list[str], bool]:
    """Lines to print, and whether the signer would sign. The decision is the signer's own
    (check_transaction / check_authorization); the node lines come from the same walk.
    `account` is the key's G... account, the payer of classic batches (default: the policy's
    one listed source account); `spent` counts in the batch's asset."""
    config = load_config(config_path)
    key = _key(config.keys, key_id)
    policy, passphrase, now = key.policy, config.network_passphrase, time.time()
    try:
        envelope: ParsedEnvelope | None = parse_envelope(xdr)
    except EnvelopeProblem:  # not an envelope the signer takes: try an authorization entry
        envelope = None
    if envelope is not None:
        tx = envelope.tx
        # A channel key: the accounts its policy names (the signer adds its payout keys'
        # accounts, which only the token knows).
        payers = served_payers(policy, frozenset()) if key.role == "channel" else None
        walk = operations_walk(tx, policy, account, channel_payers=payers)
        lines = [f"transaction {envelope.hash(passphrase).hex()} for key {key.key_id}"]
        if isinstance(walk, TreeWalk):
            lines += list(iter_nodes(walk))
        decision = check_transaction(tx, policy, network_passphrase=passphrase,
                                     spent_last_24h=spent, now=int(now),
                                     signer_account=account, channel_payers=payers)
        if isinstance(decision, Allow):
            # An XDR carries no approvals: what needs them is refused, as the signer would.
            decision = approvals_refusal(tx, policy, passphrase, (), int(now)) or decision
    else:
        try:
            entry = sx.SorobanAuthorizationEntry.from_xdr(xdr)
        except Exception:  # noqa: BLE001 - neither shape
            raise ConfigError("the XDR is neither a TransactionEnvelope nor a "
                              "SorobanAuthorizationEntry") from None
        lines = [f"authorization entry for key {key.key_id}"]
        lines += list(iter_nodes(authorization_walk(entry, policy)))
        creds = entry.credentials.address
        address = ""
        if creds is not None:
            address = Address.from_xdr_sc_address(creds.address).address
        claim = LedgerClaim(current_ledger, expiration_ledger, ledger_ceiling(now, None))
        decision = check_authorization(entry, policy, network_passphrase=passphrase,
                                       signer_account=address, spent_last_24h=spent,
                                       ledgers=claim, channel=key.role == "channel")
        lines.append("(the entry's address is taken as the key's account; the signer checks it "
                     "against the key's public key)")
    if isinstance(decision, Allow):
        others = "".join(f", {n} stroops of {a}" for a, n in decision.asset_amounts)
        lines.append(f"ALLOW: amount {decision.amount_stroops} stroops{others} counts toward "
                     "the limits")
        return lines, True
    lines.append(f"REFUSE: {decision.message}")
    return lines, False
