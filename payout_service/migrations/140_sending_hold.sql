-- A hold on sending: while its one row exists, no replica builds, signs or sends a
-- transaction (payout attempts and channel operations alike); the API still answers and
-- creates payouts, which wait. Set before a restored database (or a standby promoted after
-- asynchronous replication) is used: it may not know transactions the service sent after its
-- restore point, and building again for their payouts would pay them twice
-- (core/restore.py). Lifted by `python -m payout_service.cli.restore release`, which refuses
-- until a reconciliation against the chain has found nothing left for an operator.
CREATE TABLE sending_hold (
    only_row        boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    reason          text NOT NULL,
    -- The backup's time: the signer's audit records from then on are read.
    restore_point   timestamptz,
    -- Every envelope built before the hold has a max_time at or before this (seconds since
    -- the epoch, the chain's clock): once a ledger closes after it, nothing can land later.
    quiet_after     bigint NOT NULL,
    held_at         timestamptz NOT NULL DEFAULT now(),
    reconciled_at   timestamptz,
    CHECK (reconciled_at IS NULL OR restore_point IS NOT NULL)
);
