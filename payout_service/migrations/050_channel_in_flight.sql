-- The channel lease in O(1) of the pool: each channel row counts its payout attempts
-- in flight, so the lease reads "active and nothing in flight" from a partial index instead of
-- probing payout_attempts for every busy channel (bench/bench_channel_lease.py: 1.2 -> 4.1 ms
-- from 8 to 512 channels). The count is kept by triggers on payout_attempts, so whichever
-- statement changes an attempt's status (adapters/transitions.py, the one writer) keeps it
-- exact in the same SQL transaction; no writer has to remember it.

-- The in-flight statuses: core/states.py IN_FLIGHT (tests/integration/test_channel_in_flight.py
-- checks the two agree).
CREATE FUNCTION attempt_in_flight(status text) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN status IN ('built', 'signed', 'sent');

ALTER TABLE channel_accounts
    ADD COLUMN in_flight_attempts integer NOT NULL DEFAULT 0 CHECK (in_flight_attempts >= 0);

UPDATE channel_accounts c SET in_flight_attempts = (
    SELECT count(*) FROM payout_attempts a
    WHERE a.source_account = c.account AND attempt_in_flight(a.status));

CREATE INDEX channel_accounts_free ON channel_accounts (account)
    WHERE state = 'active' AND in_flight_attempts = 0;

-- Statement-level, with transition tables: one UPDATE per statement and channel, whatever the
-- number of rows (a batch of 100 attempts on one channel adds 100 at once).
CREATE FUNCTION channel_in_flight_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE channel_accounts c SET in_flight_attempts = c.in_flight_attempts + d.n
        FROM (SELECT source_account, count(*) AS n FROM new_attempts
              WHERE attempt_in_flight(status) GROUP BY source_account) d
        WHERE c.account = d.source_account;
    ELSIF TG_OP = 'DELETE' THEN
        UPDATE channel_accounts c SET in_flight_attempts = c.in_flight_attempts - d.n
        FROM (SELECT source_account, count(*) AS n FROM old_attempts
              WHERE attempt_in_flight(status) GROUP BY source_account) d
        WHERE c.account = d.source_account;
    ELSE
        UPDATE channel_accounts c SET in_flight_attempts = c.in_flight_attempts + d.n
        FROM (SELECT source_account, sum(n) AS n FROM (
                  SELECT source_account, 1 AS n FROM new_attempts WHERE attempt_in_flight(status)
                  UNION ALL
                  SELECT source_account, -1 FROM old_attempts WHERE attempt_in_flight(status)
              ) moved GROUP BY source_account HAVING sum(n) <> 0) d
        WHERE c.account = d.source_account;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER payout_attempts_in_flight_insert AFTER INSERT ON payout_attempts
    REFERENCING NEW TABLE AS new_attempts
    FOR EACH STATEMENT EXECUTE FUNCTION channel_in_flight_apply();
CREATE TRIGGER payout_attempts_in_flight_update AFTER UPDATE ON payout_attempts
    REFERENCING OLD TABLE AS old_attempts NEW TABLE AS new_attempts
    FOR EACH STATEMENT EXECUTE FUNCTION channel_in_flight_apply();
CREATE TRIGGER payout_attempts_in_flight_delete AFTER DELETE ON payout_attempts
    REFERENCING OLD TABLE AS old_attempts
    FOR EACH STATEMENT EXECUTE FUNCTION channel_in_flight_apply();

-- A channel registered after attempts already used its account as a source starts counted.
CREATE FUNCTION channel_in_flight_on_register() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.in_flight_attempts := (SELECT count(*) FROM payout_attempts a
                               WHERE a.source_account = NEW.account
                                 AND attempt_in_flight(a.status));
    RETURN NEW;
END $$;

CREATE TRIGGER channel_accounts_in_flight_on_register BEFORE INSERT ON channel_accounts
    FOR EACH ROW EXECUTE FUNCTION channel_in_flight_on_register();
