-- Programs built on payouts: game rounds, scheduled runs of accrued earnings,
-- health alerts and system errors. Amounts are bigint stroops.

CREATE TABLE rounds (
    round_id      text PRIMARY KEY,
    state         text NOT NULL DEFAULT 'OPEN'
                      CHECK (state IN ('OPEN', 'CLOSED', 'RESOLVED', 'SETTLED')),
    asset         text NOT NULL,
    winner_count  integer NOT NULL DEFAULT 0,
    total_stroops bigint NOT NULL DEFAULT 0,
    resolved_by   text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    closed_at     timestamptz,
    resolved_at   timestamptz,
    settled_at    timestamptz
);

CREATE INDEX rounds_state_idx ON rounds (state, created_at DESC);

-- Earnings accrue per destination and asset; a scheduled run pays the unpaid ones whose sum
-- reaches the threshold and marks them with its run id in the payout's SQL transaction.
CREATE TABLE earnings (
    earning_id     text PRIMARY KEY,
    destination    text NOT NULL,
    asset          text NOT NULL,
    amount_stroops bigint NOT NULL CHECK (amount_stroops > 0),
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    run_id         text,
    payout_id      text
);

CREATE INDEX earnings_unpaid_idx ON earnings (destination, asset) WHERE run_id IS NULL;

-- The single schedule of the service (id is always 1).
CREATE TABLE payout_schedule (
    id             integer PRIMARY KEY CHECK (id = 1),
    enabled        boolean NOT NULL DEFAULT false,
    frequency      text NOT NULL DEFAULT 'MONTHLY'
                       CHECK (frequency IN ('DAILY', 'WEEKLY', 'MONTHLY')),
    day_of_week    integer NOT NULL DEFAULT 0 CHECK (day_of_week BETWEEN 0 AND 6),
    day_of_month   integer NOT NULL DEFAULT 1 CHECK (day_of_month BETWEEN 1 AND 28),
    hour           integer NOT NULL DEFAULT 9 CHECK (hour BETWEEN 0 AND 23),
    minute         integer NOT NULL DEFAULT 0 CHECK (minute BETWEEN 0 AND 59),
    timezone       text NOT NULL DEFAULT 'UTC',
    minimum_threshold_stroops bigint NOT NULL DEFAULT 250000000
                       CHECK (minimum_threshold_stroops >= 0),
    next_run_at    timestamptz,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

INSERT INTO payout_schedule (id) VALUES (1);

CREATE TABLE scheduled_runs (
    run_id          text PRIMARY KEY,
    dry_run         boolean NOT NULL,
    trigger         text NOT NULL,
    correlation_id  text NOT NULL DEFAULT '',
    payout_count    integer NOT NULL DEFAULT 0,
    skipped_below_threshold integer NOT NULL DEFAULT 0,
    total_stroops   bigint NOT NULL DEFAULT 0,
    errors          jsonb NOT NULL DEFAULT '[]'::jsonb,
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    next_run_at     timestamptz
);

CREATE INDEX scheduled_runs_started_idx ON scheduled_runs (started_at DESC);

CREATE TABLE alerts (
    alert_id        uuid PRIMARY KEY,
    kind            text NOT NULL CHECK (kind IN ('FAILURE_RATE', 'PENDING_THRESHOLD',
                        'PROCESSING_DELAY', 'AMOUNT_THRESHOLD', 'SYSTEM_ERROR')),
    severity        text NOT NULL CHECK (severity IN ('WARNING', 'CRITICAL')),
    status          text NOT NULL DEFAULT 'ACTIVE'
                        CHECK (status IN ('ACTIVE', 'ACKNOWLEDGED', 'RESOLVED')),
    message         text NOT NULL,
    raised_at       timestamptz NOT NULL DEFAULT now(),
    acknowledged_at timestamptz,
    acknowledged_by text NOT NULL DEFAULT '',
    resolved_at     timestamptz
);

-- One open (active or acknowledged) alert per kind, whatever the number of replicas.
CREATE UNIQUE INDEX alerts_one_open_per_kind_idx ON alerts (kind) WHERE status <> 'RESOLVED';

-- Errors of the background programs themselves (a loop that crashed, a run that broke),
-- counted by the SYSTEM_ERROR alert.
CREATE TABLE system_errors (
    id          bigserial PRIMARY KEY,
    source      text NOT NULL,
    message     text NOT NULL,
    at          timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX system_errors_at_idx ON system_errors (at);
