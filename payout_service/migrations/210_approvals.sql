-- Four-eyes approvals: a payout above its asset's threshold waits in AWAITING_APPROVAL until
-- enough distinct approvers signed its statement (payout_approvals/statement.py); the signer
-- checks those signatures again before it signs, so these rows are evidence, not trust.
-- AWAITING_FUNDS is listed too so this migration and 220 hold in either order.
ALTER TABLE payouts DROP CONSTRAINT payouts_state_check;
ALTER TABLE payouts ADD CONSTRAINT payouts_state_check CHECK (state IN (
    'ACCEPTED', 'BUILT', 'AWAITING_SIGNATURE', 'QUEUED', 'SUBMITTED', 'CONFIRMED', 'FAILED',
    'CANCELLED', 'AWAITING_APPROVAL', 'AWAITING_FUNDS'));

-- One approval per payout and approval key: an approver approving twice counts once.
CREATE TABLE payout_approvals (
    payout_id            uuid NOT NULL REFERENCES payouts (id),
    approver_identity    text NOT NULL,
    approver_public_key  text NOT NULL CHECK (approver_public_key ~ '^G[A-Z2-7]{55}$'),
    signature            bytea NOT NULL CHECK (octet_length(signature) = 64),
    expires_at           timestamptz NOT NULL,
    created_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (payout_id, approver_public_key)
);
