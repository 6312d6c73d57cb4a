-- Each amount fits int64 stroops (a Stellar amount is an int64); a sum of them need not: a
-- round of a thousand winners or a run over many destinations can pass 2^63-1. Stored sums
-- are numeric, so no total ever overflows; the API reports them as an exact decimal string
-- (Amount.decimal) with Amount.stroops saturated at the int64 maximum.
ALTER TABLE rounds ALTER COLUMN total_stroops TYPE numeric(40, 0);
ALTER TABLE scheduled_runs ALTER COLUMN total_stroops TYPE numeric(40, 0);

-- A dry run stores the payouts it would have created, so ListRuns can show them later
-- (a real run's payouts are the payouts whose batch_id is the run id).
ALTER TABLE scheduled_runs ADD COLUMN planned jsonb NOT NULL DEFAULT '[]'::jsonb;
