-- Payouts, their submission attempts, per-source sequence numbers and the audit trail.
-- Amounts are bigint stroops; no floating point anywhere near money.

CREATE TABLE payouts (
    id               uuid PRIMARY KEY,
    payout_id        text NOT NULL UNIQUE,
    idempotency_key  text NOT NULL UNIQUE,
    fingerprint      text NOT NULL,
    parameters       jsonb NOT NULL,
    destination      text NOT NULL,
    asset            text NOT NULL,
    gross_stroops    bigint NOT NULL CHECK (gross_stroops > 0),
    fee_stroops      bigint NOT NULL CHECK (fee_stroops >= 0),
    net_stroops      bigint NOT NULL CHECK (net_stroops > 0),
    state            text NOT NULL CHECK (state IN ('ACCEPTED', 'BUILT', 'AWAITING_SIGNATURE',
                         'QUEUED', 'SUBMITTED', 'CONFIRMED', 'FAILED', 'CANCELLED')),
    mode             text NOT NULL CHECK (mode IN ('BUILD_ONLY', 'SIGNER_SERVICE', 'EXTERNAL')),
    unsigned_envelope_xdr text,
    attempt_count    integer NOT NULL DEFAULT 0,
    failure_code     text,
    failure_message  text,
    metadata         jsonb NOT NULL DEFAULT '{}'::jsonb,
    reference        text NOT NULL DEFAULT '',
    round_id         text,
    batch_id         text,
    correlation_id   text NOT NULL DEFAULT '',
    -- W3C traceparent of the CreatePayout span: the pipeline's spans continue that trace.
    trace_context    text NOT NULL DEFAULT '',
    -- Live modes: the preparer must build a (new) attempt once next_attempt_at has passed.
    needs_attempt    boolean NOT NULL DEFAULT false,
    next_attempt_at  timestamptz,
    network_fee_stroops bigint,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    confirmed_at     timestamptz,
    CONSTRAINT gross_is_fee_plus_net CHECK (gross_stroops = fee_stroops + net_stroops)
);

CREATE INDEX payouts_state_idx ON payouts (state);
CREATE INDEX payouts_needs_attempt_idx ON payouts (next_attempt_at) WHERE needs_attempt;
CREATE INDEX payouts_destination_idx ON payouts (destination, created_at DESC);
CREATE INDEX payouts_created_idx ON payouts (created_at DESC, id DESC);
CREATE INDEX payouts_round_idx ON payouts (round_id) WHERE round_id IS NOT NULL;
CREATE INDEX payouts_batch_idx ON payouts (batch_id) WHERE batch_id IS NOT NULL;
CREATE INDEX payouts_reference_idx ON payouts (reference) WHERE reference <> '';

-- One row per submission try. The signed envelope and hash are stored before sending
-- (invariant 3); a payout gets a new attempt only once the previous one is proven dead.
CREATE TABLE payout_attempts (
    payout_id       uuid NOT NULL REFERENCES payouts (id),
    number          integer NOT NULL CHECK (number > 0),
    source_account  text NOT NULL,
    sequence        bigint NOT NULL,
    min_time        timestamptz NOT NULL,
    max_time        timestamptz NOT NULL,
    envelope_xdr    text NOT NULL,
    signed          boolean NOT NULL DEFAULT false,
    tx_hash         text NOT NULL,
    fee_stroops     bigint NOT NULL,
    -- built -> signed -> sent -> included | failed_on_chain | dead (proven never to land);
    -- rejected at submission (consumed nothing); superseded (never sent, re-sequenced).
    status          text NOT NULL CHECK (status IN ('built', 'signed', 'sent', 'included',
                        'failed_on_chain', 'dead', 'rejected', 'superseded', 'cancelled')),
    result_code     text,
    ledger          integer,
    submitted_at    timestamptz,
    -- Latest ledger seen when first sent: proof of death needs oldestLedger <= this.
    submitted_ledger integer,
    next_poll_at    timestamptz,
    send_count      integer NOT NULL DEFAULT 0,
    poll_count      integer NOT NULL DEFAULT 0,
    proof           text,
    trace_context   text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (payout_id, number)
);

CREATE INDEX payout_attempts_status_idx ON payout_attempts (status, source_account, sequence);
-- A sequence number belongs to one attempt unless that attempt provably consumed nothing.
CREATE UNIQUE INDEX payout_attempts_live_sequence_idx ON payout_attempts (source_account, sequence)
    WHERE status NOT IN ('rejected', 'superseded', 'dead', 'cancelled');
-- A transaction that never left (refused, superseded) may be rebuilt byte for byte.
CREATE UNIQUE INDEX payout_attempts_live_hash_idx ON payout_attempts (tx_hash)
    WHERE status NOT IN ('rejected', 'superseded', 'dead', 'cancelled');

-- Next sequence number to use per source account, reserved in the SQL transaction that
-- creates the attempt (docs/design.md, "Sequence numbers never block the account").
CREATE TABLE source_accounts (
    account        text PRIMARY KEY,
    next_sequence  bigint NOT NULL,
    synced_at      timestamptz NOT NULL DEFAULT now()
);

-- Append-only audit trail: one row per state change, written in the same SQL transaction.
CREATE TABLE payout_events (
    id              bigserial PRIMARY KEY,
    payout_id       uuid NOT NULL REFERENCES payouts (id),
    from_state      text,
    to_state        text NOT NULL,
    attempt         integer,
    reason          text NOT NULL DEFAULT '',
    actor           text NOT NULL DEFAULT 'system',
    correlation_id  text NOT NULL DEFAULT '',
    at              timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX payout_events_payout_idx ON payout_events (payout_id, id);

-- Transactional outbox: payout.confirmed / payout.failed written in the same SQL transaction
-- as the state change, delivered afterwards (at least once) by the outbox worker.
CREATE TABLE outbox_events (
    id              bigserial PRIMARY KEY,
    payout_id       uuid NOT NULL REFERENCES payouts (id),
    event_type      text NOT NULL CHECK (event_type IN ('payout.confirmed', 'payout.failed')),
    payload         jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text
);

CREATE INDEX outbox_events_pending_idx ON outbox_events (next_attempt_at)
    WHERE delivered_at IS NULL;
