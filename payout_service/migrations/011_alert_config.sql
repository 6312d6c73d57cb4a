-- Seed 003's alert configuration, changeable at run time (PayoutAdminService/UpdateAlertConfig).
-- One row (id 1), created from the PAYOUTS_ALERT_* variables on first start; every change is
-- audited. The CHECKs repeat the validation so no writer can store an impossible config.
CREATE TABLE alert_config (
    id                      integer PRIMARY KEY CHECK (id = 1),
    enabled                 boolean NOT NULL,
    failure_rate_warning    double precision NOT NULL
                                CHECK (failure_rate_warning >= 0 AND failure_rate_warning <= 1),
    failure_rate_critical   double precision NOT NULL
                                CHECK (failure_rate_critical >= failure_rate_warning
                                       AND failure_rate_critical <= 1),
    pending_count           bigint NOT NULL CHECK (pending_count >= 0),
    delay_seconds_warning   double precision NOT NULL
                                CHECK (delay_seconds_warning >= 0
                                       AND delay_seconds_warning <= 31536000),
    delay_seconds_critical  double precision NOT NULL
                                CHECK (delay_seconds_critical >= delay_seconds_warning
                                       AND delay_seconds_critical <= 31536000),
    amount_24h_stroops      bigint NOT NULL CHECK (amount_24h_stroops >= 0),
    system_errors           bigint NOT NULL CHECK (system_errors >= 0),
    webhook_urls            text[] NOT NULL DEFAULT '{}'
                                CHECK (cardinality(webhook_urls) <= 10),
    version                 bigint NOT NULL DEFAULT 1 CHECK (version >= 1),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    updated_by              text NOT NULL DEFAULT ''
);

CREATE TABLE alert_config_audit (
    id              bigserial PRIMARY KEY,
    version         bigint NOT NULL,
    actor           text NOT NULL,
    correlation_id  text NOT NULL DEFAULT '',
    previous        jsonb,
    config          jsonb NOT NULL,
    at              timestamptz NOT NULL DEFAULT now()
);

-- Alert notifications: an outbox written in the SQL transaction that raises, acknowledges or
-- resolves the alert, delivered at least once to the URLs configured at that moment.
CREATE TABLE alert_notifications (
    id              bigserial PRIMARY KEY,
    alert_id        uuid NOT NULL REFERENCES alerts (alert_id),
    event_type      text NOT NULL
                        CHECK (event_type IN ('alert.raised', 'alert.acknowledged',
                                              'alert.resolved')),
    payload         jsonb NOT NULL,
    urls            text[] NOT NULL CHECK (cardinality(urls) >= 1),
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text
);

CREATE INDEX alert_notifications_pending_idx ON alert_notifications (next_attempt_at)
    WHERE delivered_at IS NULL;
