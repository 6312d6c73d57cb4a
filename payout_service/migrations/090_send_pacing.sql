-- Send pacing: what is offered to the network follows what its queue takes.
--
-- last_sent_ledger: the latest ledger seen when the envelope was last sent or re-sent. A node
-- drops a queued transaction only at a ledger boundary, so a NOT_FOUND attempt is re-sent at
-- most once per closed ledger (core/pacing.resend_due), not on every confirm poll. It is not
-- submitted_ledger: that one anchors the proof of death and never moves forward.
ALTER TABLE payout_attempts ADD COLUMN last_sent_ledger integer;
ALTER TABLE channel_operations ADD COLUMN last_sent_ledger integer;

-- classic_ops: the classic operations this attempt row puts in the network's queue (1 for a
-- member of a classic batch, 0 for a Soroban transaction), set when it is claimed for
-- sending. The sender keeps the sum over sent rows under the queue's capacity
-- (core/pacing.admit_for_sending); this partial index makes that sum a small scan.
ALTER TABLE payout_attempts
    ADD COLUMN classic_ops integer NOT NULL DEFAULT 0 CHECK (classic_ops >= 0);
CREATE INDEX payout_attempts_classic_in_flight_idx ON payout_attempts (classic_ops)
    WHERE status = 'sent' AND classic_ops > 0;
