-- Aggregates that keep reads flat as history grows: GetPayoutStats, GetSystemHealth,
-- the monitoring loop and the /metrics gauges read these few rows instead of scanning payouts.
--
-- They are maintained by the database itself, by statement-level triggers on payouts that see
-- every inserted, updated or deleted row (transition tables), in the same statement and so in
-- the same SQL transaction as the write. The creation path's insert and the one transition
-- point (adapters/transitions.py) are the writers in practice; no writer can forget them, and
-- a bulk statement costs one aggregate upsert, not one per row.
--
-- Contention: every row is sharded (shard 0..63). A writing transaction takes one shard with
-- a transaction-scoped advisory lock and writes only that shard's rows, so concurrent writers
-- never wait on the same aggregate row and cannot deadlock on them. Readers sum the shards.
-- Sums are numeric (many int64 amounts can pass int64).

-- Count and sums per state: overall (scope 'all', key ''), per asset, per destination.
CREATE TABLE payout_totals (
    scope   text NOT NULL CHECK (scope IN ('all', 'asset', 'destination')),
    key     text NOT NULL,
    state   text NOT NULL,
    shard   smallint NOT NULL CHECK (shard BETWEEN 0 AND 63),
    count   bigint NOT NULL DEFAULT 0,
    gross   numeric(40, 0) NOT NULL DEFAULT 0,
    fee     numeric(40, 0) NOT NULL DEFAULT 0,
    net     numeric(40, 0) NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, key, state, shard)
);

-- Per-minute buckets for the health windows (last hour, last 24 hours):
--   failed     FAILED payouts by the minute of their last update, per failure_code;
--   confirmed  CONFIRMED payouts by the minute they were confirmed;
--   live       gross of payouts that are not FAILED or CANCELLED, by creation minute.
-- Buckets older than 25 hours are deleted by the monitoring loop.
CREATE TABLE payout_minutes (
    kind    text NOT NULL CHECK (kind IN ('failed', 'confirmed', 'live')),
    minute  timestamptz NOT NULL,
    code    text NOT NULL DEFAULT '',
    shard   smallint NOT NULL CHECK (shard BETWEEN 0 AND 63),
    count   bigint NOT NULL DEFAULT 0,
    gross   numeric(40, 0) NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, minute, code, shard)
);

CREATE INDEX payout_minutes_minute_idx ON payout_minutes (minute);

-- What one payout row contributes, signed +1 (it exists now) or -1 (it existed before).
CREATE TYPE payout_contribution AS (
    sign          integer,
    state         text,
    destination   text,
    asset         text,
    gross         bigint,
    fee           bigint,
    net           bigint,
    created_at    timestamptz,
    updated_at    timestamptz,
    confirmed_at  timestamptz,
    failure_code  text
);

-- The shard this transaction writes: the first one free, starting from the backend's own.
-- Held (advisory, transaction-scoped) until commit, so no two writers share a shard.
CREATE FUNCTION payout_aggregate_shard() RETURNS smallint LANGUAGE plpgsql AS $$
DECLARE
    first integer := pg_backend_pid() % 64;
    candidate integer;
BEGIN
    FOR i IN 0..63 LOOP
        candidate := (first + i) % 64;
        -- 1346459988 = 'PAYT': the aggregate shards' advisory lock space.
        IF pg_try_advisory_xact_lock(1346459988, candidate) THEN
            RETURN candidate;
        END IF;
    END LOOP;
    PERFORM pg_advisory_xact_lock(1346459988, first);  -- 64 writers at once: wait for one
    RETURN first;
END $$;

CREATE FUNCTION payout_aggregates_apply(changes payout_contribution[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    s smallint;
BEGIN
    IF cardinality(changes) = 0 THEN
        RETURN;
    END IF;
    s := payout_aggregate_shard();
    -- Rows that did not change cancel out (+1 and -1 on the same key) and write nothing.
    INSERT INTO payout_totals AS t (scope, key, state, shard, count, gross, fee, net)
    SELECT k.scope, k.key, c.state, s, sum(c.sign), sum(c.sign * c.gross::numeric),
           sum(c.sign * c.fee::numeric), sum(c.sign * c.net::numeric)
    FROM unnest(changes) AS c
    CROSS JOIN LATERAL (VALUES ('all', ''), ('asset', c.asset), ('destination', c.destination))
        AS k(scope, key)
    GROUP BY k.scope, k.key, c.state
    HAVING sum(c.sign) <> 0 OR sum(c.sign * c.gross::numeric) <> 0
    ORDER BY k.scope, k.key, c.state
    ON CONFLICT (scope, key, state, shard) DO UPDATE
        SET count = t.count + EXCLUDED.count, gross = t.gross + EXCLUDED.gross,
            fee = t.fee + EXCLUDED.fee, net = t.net + EXCLUDED.net;

    INSERT INTO payout_minutes AS m (kind, minute, code, shard, count, gross)
    SELECT b.kind, b.minute, b.code, s, sum(c.sign), sum(c.sign * b.gross)
    FROM unnest(changes) AS c
    CROSS JOIN LATERAL (
        SELECT 'failed' AS kind, date_trunc('minute', c.updated_at) AS minute,
               COALESCE(c.failure_code, '') AS code, 0::numeric AS gross
        WHERE c.state = 'FAILED'
        UNION ALL
        SELECT 'confirmed', date_trunc('minute', COALESCE(c.confirmed_at, c.updated_at)), '', 0
        WHERE c.state = 'CONFIRMED'
        UNION ALL
        SELECT 'live', date_trunc('minute', c.created_at), '', c.gross::numeric
        WHERE c.state NOT IN ('FAILED', 'CANCELLED')
    ) AS b
    GROUP BY b.kind, b.minute, b.code
    HAVING sum(c.sign) <> 0 OR sum(c.sign * b.gross) <> 0
    ORDER BY b.kind, b.minute, b.code
    ON CONFLICT (kind, minute, code, shard) DO UPDATE
        SET count = m.count + EXCLUDED.count, gross = m.gross + EXCLUDED.gross;
END $$;

CREATE FUNCTION payouts_aggregate_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM payout_aggregates_apply(ARRAY(
            SELECT ROW(1, n.state, n.destination, n.asset, n.gross_stroops, n.fee_stroops,
                       n.net_stroops, n.created_at, n.updated_at, n.confirmed_at,
                       n.failure_code)::payout_contribution
            FROM new_rows n));
    ELSIF TG_OP = 'UPDATE' THEN
        PERFORM payout_aggregates_apply(ARRAY(
            SELECT ROW(1, n.state, n.destination, n.asset, n.gross_stroops, n.fee_stroops,
                       n.net_stroops, n.created_at, n.updated_at, n.confirmed_at,
                       n.failure_code)::payout_contribution
            FROM new_rows n
            UNION ALL
            SELECT ROW(-1, o.state, o.destination, o.asset, o.gross_stroops, o.fee_stroops,
                       o.net_stroops, o.created_at, o.updated_at, o.confirmed_at,
                       o.failure_code)::payout_contribution
            FROM old_rows o));
    ELSE
        PERFORM payout_aggregates_apply(ARRAY(
            SELECT ROW(-1, o.state, o.destination, o.asset, o.gross_stroops, o.fee_stroops,
                       o.net_stroops, o.created_at, o.updated_at, o.confirmed_at,
                       o.failure_code)::payout_contribution
            FROM old_rows o));
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER payouts_aggregate_insert AFTER INSERT ON payouts
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION payouts_aggregate_trigger();
CREATE TRIGGER payouts_aggregate_update AFTER UPDATE ON payouts
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION payouts_aggregate_trigger();
CREATE TRIGGER payouts_aggregate_delete AFTER DELETE ON payouts
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION payouts_aggregate_trigger();

-- Payouts stored before this migration, counted once (shard 0).
SELECT payout_aggregates_apply(ARRAY(
    SELECT ROW(1, state, destination, asset, gross_stroops, fee_stroops, net_stroops,
               created_at, updated_at, confirmed_at, failure_code)::payout_contribution
    FROM payouts));

-- History queries on indexes: each ListPayouts filter walks its own index in page order
-- (keyset on created_at, id), and the oldest pending / SUBMITTED payout is the first entry
-- of a partial index.
DROP INDEX payouts_state_idx;
CREATE INDEX payouts_state_created_idx ON payouts (state, created_at DESC, id DESC);
DROP INDEX payouts_destination_idx;
CREATE INDEX payouts_destination_created_idx ON payouts (destination, created_at DESC, id DESC);
DROP INDEX payouts_round_idx;
CREATE INDEX payouts_round_created_idx ON payouts (round_id, created_at DESC, id DESC)
    WHERE round_id IS NOT NULL;
DROP INDEX payouts_batch_idx;
CREATE INDEX payouts_batch_created_idx ON payouts (batch_id, created_at DESC, id DESC)
    WHERE batch_id IS NOT NULL;
CREATE INDEX payouts_pending_created_idx ON payouts (created_at)
    WHERE state IN ('ACCEPTED', 'AWAITING_SIGNATURE', 'QUEUED', 'SUBMITTED');
CREATE INDEX payouts_submitted_updated_idx ON payouts (updated_at) WHERE state = 'SUBMITTED';
-- Reconciliation re-checks the payouts confirmed in its window: read through this index, the
-- window's rows only, not every CONFIRMED payout ever.
CREATE INDEX payouts_confirmed_at_idx ON payouts ((COALESCE(confirmed_at, updated_at)))
    WHERE state = 'CONFIRMED';
