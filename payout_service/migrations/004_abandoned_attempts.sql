-- ABANDONED attempts (core/states.py): we never send them again but a copy may exist
-- outside, so they may land until proven dead. Their sequence number goes to the next
-- reservation on the same source (a replacement at the same number), so they no longer hold
-- it in the unique index: two attempts may share a number only when at most one can land.
ALTER TABLE payout_attempts DROP CONSTRAINT payout_attempts_status_check;
ALTER TABLE payout_attempts ADD CONSTRAINT payout_attempts_status_check
    CHECK (status IN ('built', 'signed', 'sent', 'included', 'failed_on_chain', 'dead',
                      'rejected', 'superseded', 'cancelled', 'abandoned'));

DROP INDEX payout_attempts_live_sequence_idx;
CREATE UNIQUE INDEX payout_attempts_live_sequence_idx ON payout_attempts (source_account, sequence)
    WHERE status NOT IN ('rejected', 'superseded', 'dead', 'cancelled', 'abandoned');

CREATE INDEX payout_attempts_abandoned_idx ON payout_attempts (next_poll_at)
    WHERE status = 'abandoned';
