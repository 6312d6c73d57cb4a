-- Who holds a sequence number on a source account: one definition for every re-sync, release
-- and reservation (adapters/sequences.py). Payout attempts and channel lifecycle transactions
-- both reserve numbers through reserve_sequence, often on the same account (the payer funds
-- channels by default), so a re-sync after txBAD_SEQ that counted only one kind would free a
-- number the other still holds: the next reservation would take it and collide.

-- The statuses that hold their number: core/states.py HOLDS_SEQUENCE and core/channels.py
-- HOLDS_SEQUENCE (tests/db/test_sequence_holders.py checks they agree).
CREATE FUNCTION attempt_holds_sequence(status text) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN status IN ('built', 'signed', 'sent', 'included', 'failed_on_chain');
CREATE FUNCTION operation_holds_sequence(status text) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN status IN ('built', 'signed', 'sent', 'included', 'failed_on_chain');

-- One row per holding row; `holder` names the transaction (the members of a batch share it,
-- and every member counts: a batch partly superseded by a re-sync still holds its number
-- through the members another worker held).
CREATE VIEW sequence_holders AS
    SELECT source_account AS account, sequence,
           COALESCE('batch:' || batch_id::text,
                    'attempt:' || payout_id::text || '/' || number::text) AS holder
    FROM payout_attempts WHERE attempt_holds_sequence(status)
    UNION ALL
    SELECT source_account, sequence, 'channel_operation:' || id::text
    FROM channel_operations WHERE operation_holds_sequence(status);

CREATE INDEX channel_operations_held_sequence ON channel_operations (source_account, sequence)
    WHERE operation_holds_sequence(status);

-- The database refuses a second holder of one (source, sequence) across both tables (each
-- table's own unique indexes cannot see the other). Reservations take the source row's lock
-- (sequences.lock_source); the check takes it too, so two concurrent inserts for one source
-- are checked one after the other, the second against the first's committed row.
-- Statement-level: one check per batch of 100 attempts, not per row. Inserts only: the one
-- update that makes a row hold again (an ABANDONED envelope landed after all) records what
-- the chain did, and its replacement at that number can then never land.
CREATE FUNCTION refuse_second_sequence_holder() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    taken record;
    holders text[];
BEGIN
    -- One number per statement in practice (an attempt, a batch, an operation): each is
    -- looked up on its own, through the indexes (a join with the transition table, which
    -- has no statistics, was planned as a scan of every attempt).
    FOR taken IN SELECT DISTINCT source_account, sequence FROM new_holders
                  ORDER BY source_account, sequence LOOP
        PERFORM 1 FROM source_accounts WHERE account = taken.source_account FOR UPDATE;
        SELECT array_agg(DISTINCT holder) INTO holders FROM sequence_holders
        WHERE account = taken.source_account AND sequence = taken.sequence;
        IF cardinality(holders) > 1 THEN
            RAISE EXCEPTION 'sequence number % of % already held (%)',
                taken.sequence, taken.source_account, array_to_string(holders[1:3], ', ')
                USING ERRCODE = 'unique_violation',
                      CONSTRAINT = 'sequence_holders_one_per_number';
        END IF;
    END LOOP;
    RETURN NULL;
END $$;

CREATE TRIGGER payout_attempts_one_holder_per_number AFTER INSERT ON payout_attempts
    REFERENCING NEW TABLE AS new_holders
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_second_sequence_holder();
CREATE TRIGGER channel_operations_one_holder_per_number AFTER INSERT ON channel_operations
    REFERENCING NEW TABLE AS new_holders
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_second_sequence_holder();

-- A free number somebody holds is not free: the next reservation would collide with its
-- holder, on every prepare pass. No such row may stay.
DELETE FROM released_sequences r
WHERE EXISTS (SELECT 1 FROM sequence_holders h
              WHERE h.account = r.account AND h.sequence = r.sequence);
