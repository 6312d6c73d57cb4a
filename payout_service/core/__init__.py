"""The pure core: amounts, validation, states, fees, idempotency. No I/O here."""
