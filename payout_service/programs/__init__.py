"""Programs built on payouts: rounds, batches, stats, scheduled runs, health, events.

Pure rules live in small modules without I/O (round_states, schedule, health, webhooks);
SQL lives in the *_store modules; the servicers only decode, call and encode.
"""
