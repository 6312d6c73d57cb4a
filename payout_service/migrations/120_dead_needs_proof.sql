-- An attempt is DEAD only with a proof from the chain (core/proofs.py): its payout then gets
-- a new attempt, so a DEAD row without one is how a payout gets paid twice. NOT VALID: the
-- rule is for every row written from now on; older rows are not re-checked at start-up.
ALTER TABLE payout_attempts
    ADD CONSTRAINT payout_attempts_dead_has_proof CHECK (status <> 'dead' OR proof IS NOT NULL)
    NOT VALID;
