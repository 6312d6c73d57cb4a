"""Isolated signer: holds payout keys, policy-checks and audits every signature (docs/design.md)."""
