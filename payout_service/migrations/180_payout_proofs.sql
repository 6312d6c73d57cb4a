-- Proof of payment: what the chain recorded for a confirmed payout, written in the same SQL
-- transaction that marks it CONFIRMED and never recomputed (core/payment_proofs.py). Kept as
-- long as the payout row is (events retention never touches it): a proof is what an auditor
-- or a payee asks for long after the RPC's history window has moved on.
CREATE TABLE payout_proofs (
    payout_id         uuid PRIMARY KEY REFERENCES payouts (id),
    tx_hash           text NOT NULL CHECK (tx_hash ~ '^[0-9a-f]{64}$'),
    ledger            bigint NOT NULL CHECK (ledger > 0),
    ledger_closed_at  timestamptz NOT NULL,
    -- A transaction has at most 100 operations (stellar-core MAX_OPS_PER_TX).
    op_index          integer NOT NULL CHECK (op_index >= 0 AND op_index < 100),
    -- stellar-rpc getEvents id of the transfer event; '' when the record carried none.
    event_id          text NOT NULL DEFAULT '',
    fee_charged       bigint NOT NULL CHECK (fee_charged >= 0),
    fee_share         bigint NOT NULL CHECK (fee_share >= 0),
    memo              text NOT NULL DEFAULT '',
    muxed_id          numeric(20, 0) CHECK (muxed_id BETWEEN 0 AND 18446744073709551615),
    treasury          text NOT NULL,
    recorded_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT fee_share_within_fee CHECK (fee_share <= fee_charged)
);

CREATE INDEX payout_proofs_tx_hash ON payout_proofs (tx_hash);

-- The proof joins its payout.confirmed webhook event in the confirming transaction: found by
-- payout, not by scanning an outbox that grows with every event.
CREATE INDEX outbox_events_confirmed_payout_idx ON outbox_events (payout_id, id)
    WHERE event_type = 'payout.confirmed';
