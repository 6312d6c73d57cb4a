"""Isolated signer: holds payout keys, policy-checks and audits every signature (DESIGN.md §5)."""
