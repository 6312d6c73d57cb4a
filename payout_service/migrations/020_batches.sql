-- Many payouts in one transaction. A batch is one Stellar transaction shared by the
-- attempts of its payouts: every payout keeps its own attempt row (its own lifecycle, moved
-- only by adapters/transitions.py), and the rows of one batch carry the same batch_id,
-- source, sequence number, envelope and hash, plus the index of the payout's operation.
ALTER TABLE payout_attempts
    ADD COLUMN batch_id uuid,
    ADD COLUMN op_index integer CHECK (op_index >= 0),
    ADD CONSTRAINT batch_member_has_op_index CHECK ((batch_id IS NULL) = (op_index IS NULL));

-- One operation per payout inside a batch.
CREATE UNIQUE INDEX payout_attempts_batch_op_idx ON payout_attempts (batch_id, op_index)
    WHERE batch_id IS NOT NULL;

-- A payout is in at most one live batch (or has at most one live single attempt): invariant 1
-- held by the database, not only by the queues. ABANDONED counts as live: it may still land.
CREATE UNIQUE INDEX payout_attempts_one_live_per_payout_idx ON payout_attempts (payout_id)
    WHERE status IN ('built', 'signed', 'sent', 'abandoned');

-- A sequence number and a hash belong to one transaction: a single attempt, or a batch,
-- represented in these indexes by its lead member (op_index 0). Members of a batch move
-- together (attempt_store's batch functions), so the lead is live exactly when the batch is.
DROP INDEX payout_attempts_live_sequence_idx;
CREATE UNIQUE INDEX payout_attempts_live_sequence_idx ON payout_attempts (source_account, sequence)
    WHERE status NOT IN ('rejected', 'superseded', 'dead', 'cancelled', 'abandoned')
      AND COALESCE(op_index, 0) = 0;
DROP INDEX payout_attempts_live_hash_idx;
CREATE UNIQUE INDEX payout_attempts_live_hash_idx ON payout_attempts (tx_hash)
    WHERE status NOT IN ('rejected', 'superseded', 'dead', 'cancelled')
      AND COALESCE(op_index, 0) = 0;
CREATE INDEX payout_attempts_batch_idx ON payout_attempts (batch_id) WHERE batch_id IS NOT NULL;
