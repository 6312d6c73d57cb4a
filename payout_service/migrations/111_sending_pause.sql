-- Sending paused (one row, read by every replica's sender): set by an operator
-- (PauseSending) or by the watchdog on an unexplained outflow or a payout paid twice when
-- PAYOUTS_WATCHDOG_PAUSE_ON_FINDING is on; only an operator resumes (ResumeSending). Every
-- change is audited with who and why.
CREATE TABLE sending_pause (
    id          integer PRIMARY KEY CHECK (id = 1),
    paused      boolean NOT NULL,
    reason      text NOT NULL,
    changed_by  text NOT NULL,
    changed_at  timestamptz NOT NULL DEFAULT now(),
    -- The finding that paused it, when the watchdog did.
    finding_id  bigint REFERENCES watchdog_findings (id),
    CHECK (NOT paused OR reason <> '')
);
INSERT INTO sending_pause (id, paused, reason, changed_by) VALUES (1, false, '', 'migration');

CREATE TABLE sending_pause_audit (
    id              bigserial PRIMARY KEY,
    paused          boolean NOT NULL,
    reason          text NOT NULL,
    actor           text NOT NULL,
    correlation_id  text NOT NULL DEFAULT '',
    finding_id      bigint REFERENCES watchdog_findings (id),
    at              timestamptz NOT NULL DEFAULT now()
);
