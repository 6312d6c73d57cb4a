"""`scripts/dev-stack`: payout-service, signer-service, soroban-sandbox and PostgreSQL,
on one machine with embedded defaults."""
