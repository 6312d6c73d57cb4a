-- Reconciliation's window read (programs/reconcile.py confirmed_since: CONFIRMED payouts with
-- COALESCE(confirmed_at, updated_at) in the last hours) must stay O(window) at 10^7 payouts.
-- payouts_confirmed_at_idx (migration 030) serves it, but the planner keeps no statistics for
-- the expression of a *partial* index, so it guessed a third of all CONFIRMED payouts matched
-- and chose a parallel scan of the whole table (bench_reads.py at 10^7: 1.5 s, plus JIT).
-- Statistics on the expression itself give it the real (tiny) share: the index, ~11 ms for
-- the ~6,800 rows of a 2-hour window at 10^7. They are filled by the next ANALYZE (autovacuum's).
-- No ANALYZE here: on a new, empty database it would record "payouts is empty", and every
-- statement prepared afterwards (asyncpg caches plans per connection) would be planned for an
-- empty table until the next ANALYZE; with autovacuum off the group-commit insert then slowed
-- as the table grew (bench_api.py: 1,000/s offered, 598/s done, p99 13 s).
CREATE STATISTICS payouts_confirmed_window_stats ON (COALESCE(confirmed_at, updated_at))
    FROM payouts;
