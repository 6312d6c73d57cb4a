-- Payouts the paying account cannot cover wait in AWAITING_FUNDS, with an alert while any does.
-- AWAITING_APPROVAL is listed too, so this constraint holds whichever of the two states'
-- migrations runs first.
ALTER TABLE payouts DROP CONSTRAINT payouts_state_check;
ALTER TABLE payouts ADD CONSTRAINT payouts_state_check CHECK (state IN ('ACCEPTED', 'BUILT',
    'AWAITING_SIGNATURE', 'QUEUED', 'SUBMITTED', 'CONFIRMED', 'FAILED', 'CANCELLED',
    'AWAITING_APPROVAL', 'AWAITING_FUNDS'));

ALTER TABLE alerts DROP CONSTRAINT alerts_kind_check;
ALTER TABLE alerts ADD CONSTRAINT alerts_kind_check CHECK (kind IN (
    'FAILURE_RATE', 'PENDING_THRESHOLD', 'PROCESSING_DELAY', 'AMOUNT_THRESHOLD', 'SYSTEM_ERROR',
    'UNEXPLAINED_OUTFLOW', 'PAID_TWICE', 'CONFIRMED_UNSEEN', 'WATCHDOG_GAP', 'SENDING_PAUSED',
    'CHANNELS_HELD', 'WEBHOOKS_DEAD_LETTERED', 'AWAITING_FUNDS'));
