-- The watchdog (docs/design.md invariant 9), the second line of defence: it reads the chain's own
-- record of every transaction (getTransactions, ledger after ledger) and matches each outflow
-- of the paying, channel and funding accounts to a payout attempt or a channel lifecycle
-- operation, whatever the pipeline believes. app/watchdog.py runs it, core/outflows.py judges.

-- A transaction's payouts by hash, whatever their attempts' status: an attempt recorded dead
-- or superseded that landed anyway is exactly what the watchdog is there to see, and the
-- live-hash index (migration 020) leaves those rows out. Equality only, so a hash index: a
-- 4-byte code per row instead of the 64-character hash.
CREATE INDEX payout_attempts_tx_hash_idx ON payout_attempts USING hash (tx_hash);

-- What the chain paid: one row per (payout, successful transaction) the watchdog read. Two
-- rows for one payout are a payout paid twice (a `paid_twice` finding names both). No foreign
-- key to payouts: its KEY SHARE locks would make the watchdog wait on (and deadlock with) the
-- pipeline's FOR UPDATE of the same payout rows; payouts are never deleted.
CREATE TABLE chain_payments (
    payout_id   uuid NOT NULL,
    tx_hash     text NOT NULL CHECK (tx_hash ~ '^[0-9a-f]{64}$'),
    ledger      integer NOT NULL CHECK (ledger > 0),
    attempt     integer NOT NULL CHECK (attempt > 0),
    seen_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (payout_id, tx_hash)
);

-- Where the watchdog stands (one row). Every ledger up to verified_ledger was read in full, or
-- declared a gap; `cursor` is the getTransactions cursor (a TOID: ledger << 32 | tx << 12 |
-- op) to resume from, always inside ledger verified_ledger + 1. One replica at a time holds
-- the lease; every write is guarded by the lease and the cursor it read (compare and set), so
-- a replica that lost the lease cannot move the position or record a page twice.
CREATE TABLE watchdog_state (
    id                      integer PRIMARY KEY CHECK (id = 1),
    start_ledger            integer NOT NULL CHECK (start_ledger > 0),
    verified_ledger         integer NOT NULL,
    cursor                  bigint NOT NULL,
    latest_ledger           integer NOT NULL,
    -- CONFIRMED payouts up to this confirmation time were checked against chain_payments.
    confirmed_checked_until timestamptz NOT NULL,
    transactions_read       bigint NOT NULL DEFAULT 0 CHECK (transactions_read >= 0),
    pages_read              bigint NOT NULL DEFAULT 0 CHECK (pages_read >= 0),
    -- feeCharged of the service's own transactions read so far (stroops).
    fees_charged_stroops    numeric NOT NULL DEFAULT 0 CHECK (fees_charged_stroops >= 0),
    lease_owner             text,
    lease_until             timestamptz,
    updated_at              timestamptz NOT NULL DEFAULT now(),
    CHECK (verified_ledger >= start_ledger - 1),
    CHECK ((cursor >> 32) = verified_ledger + 1)
);

-- What the watchdog found. dedupe_key makes a finding idempotent: reading the same page again
-- (after a crash, or by a replica that took the lease over) finds the same things once.
CREATE TABLE watchdog_findings (
    id               bigserial PRIMARY KEY,
    kind             text NOT NULL CHECK (kind IN ('unexplained_outflow', 'paid_twice',
                         'confirmed_unseen', 'watchdog_gap')),
    dedupe_key       text NOT NULL UNIQUE,
    tx_hash          text,
    ledger           integer,
    -- A gap: the last ledger that could not be read.
    ledger_to        integer,
    payout_id        uuid,
    accounts         text[] NOT NULL DEFAULT '{}',
    -- In the asset's smallest unit (stroops for XLM and classic assets), where known.
    amount           numeric,
    asset            text,
    detail           text NOT NULL,
    status           text NOT NULL DEFAULT 'open'
                         CHECK (status IN ('open', 'acknowledged', 'resolved')),
    first_seen       timestamptz NOT NULL DEFAULT now(),
    acknowledged_by  text,
    acknowledged_at  timestamptz,
    resolved_by      text,
    resolved_at      timestamptz,
    resolution       text,
    CHECK (status = 'open' OR (acknowledged_by IS NOT NULL AND acknowledged_at IS NOT NULL)),
    CHECK (status <> 'resolved'
           OR (resolved_by IS NOT NULL AND resolved_at IS NOT NULL AND resolution <> '')),
    CHECK (kind <> 'watchdog_gap' OR (ledger IS NOT NULL AND ledger_to >= ledger))
);
-- Health counts the open findings per kind on every evaluation.
CREATE INDEX watchdog_findings_open_idx ON watchdog_findings (kind) WHERE status <> 'resolved';
-- A confirmed payout in a ledger nobody could read is not judged "unseen".
CREATE INDEX watchdog_findings_gaps_idx ON watchdog_findings (ledger, ledger_to)
    WHERE kind = 'watchdog_gap';

-- The watchdog's findings raise alerts of their own kinds; a paused sender is one too.
ALTER TABLE alerts DROP CONSTRAINT alerts_kind_check;
ALTER TABLE alerts ADD CONSTRAINT alerts_kind_check CHECK (kind IN (
    'FAILURE_RATE', 'PENDING_THRESHOLD', 'PROCESSING_DELAY', 'AMOUNT_THRESHOLD', 'SYSTEM_ERROR',
    'UNEXPLAINED_OUTFLOW', 'PAID_TWICE', 'CONFIRMED_UNSEEN', 'WATCHDOG_GAP', 'SENDING_PAUSED'));
