-- Webhook deliveries a receiver and an operator can follow: every attempt is logged, and an
-- event whose retry budget is spent is dead-lettered (kept, not retried, raising an alert)
-- until an operator redelivers it with the same event id.
ALTER TABLE outbox_events
    ADD COLUMN dead_lettered_at timestamptz,
    -- `attempts` when the event was last redelivered: the budget counts from there.
    ADD COLUMN attempts_at_requeue integer NOT NULL DEFAULT 0,
    ADD CONSTRAINT outbox_events_delivered_or_dead
        CHECK (delivered_at IS NULL OR dead_lettered_at IS NULL),
    ADD CONSTRAINT outbox_events_requeue_within_attempts
        CHECK (attempts_at_requeue BETWEEN 0 AND attempts);
ALTER TABLE alert_notifications
    ADD COLUMN dead_lettered_at timestamptz,
    ADD COLUMN attempts_at_requeue integer NOT NULL DEFAULT 0,
    ADD CONSTRAINT alert_notifications_delivered_or_dead
        CHECK (delivered_at IS NULL OR dead_lettered_at IS NULL),
    ADD CONSTRAINT alert_notifications_requeue_within_attempts
        CHECK (attempts_at_requeue BETWEEN 0 AND attempts);

DROP INDEX outbox_events_pending_idx;
CREATE INDEX outbox_events_pending_idx ON outbox_events (next_attempt_at)
    WHERE delivered_at IS NULL AND dead_lettered_at IS NULL;
DROP INDEX alert_notifications_pending_idx;
CREATE INDEX alert_notifications_pending_idx ON alert_notifications (next_attempt_at)
    WHERE delivered_at IS NULL AND dead_lettered_at IS NULL;
CREATE INDEX outbox_events_dead_idx ON outbox_events (id) WHERE dead_lettered_at IS NOT NULL;
CREATE INDEX alert_notifications_dead_idx ON alert_notifications (id)
    WHERE dead_lettered_at IS NOT NULL;

-- One row per POST: event id as the receiver saw it ('42', 'alert-7'), the claim's attempt
-- number, the URL without credentials or query, and what came back.
CREATE TABLE webhook_delivery_attempts (
    id           bigserial PRIMARY KEY,
    event_id     text NOT NULL CHECK (event_id ~ '^(alert-)?[0-9]+$'),
    attempt      integer NOT NULL CHECK (attempt >= 1),
    url          text NOT NULL,
    -- NULL: no HTTP answer (connection refused, timeout); `error` says which.
    status_code  integer CHECK (status_code BETWEEN 100 AND 599),
    latency_ms   integer NOT NULL CHECK (latency_ms >= 0),
    error        text NOT NULL DEFAULT '',
    attempted_at timestamptz NOT NULL DEFAULT now(),
    CHECK (status_code IS NOT NULL OR error <> '')
);
CREATE INDEX webhook_delivery_attempts_event_idx ON webhook_delivery_attempts (event_id, id);

-- Dead-lettered webhooks raise an alert of their own kind.
ALTER TABLE alerts DROP CONSTRAINT alerts_kind_check;
ALTER TABLE alerts ADD CONSTRAINT alerts_kind_check CHECK (kind IN (
    'FAILURE_RATE', 'PENDING_THRESHOLD', 'PROCESSING_DELAY', 'AMOUNT_THRESHOLD', 'SYSTEM_ERROR',
    'UNEXPLAINED_OUTFLOW', 'PAID_TWICE', 'CONFIRMED_UNSEEN', 'WATCHDOG_GAP', 'SENDING_PAUSED',
    'CHANNELS_HELD', 'WEBHOOKS_DEAD_LETTERED'));

-- ListWebhookDeliveries pages through each outbox newest first.
CREATE INDEX outbox_events_created_idx ON outbox_events (created_at, id);
CREATE INDEX alert_notifications_created_idx ON alert_notifications (created_at, id);
