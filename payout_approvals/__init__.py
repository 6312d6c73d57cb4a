"""Four-eyes approvals shared by payout-service and signer-service (pure, no I/O)."""
