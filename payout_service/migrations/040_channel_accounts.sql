-- The channel pool: channel accounts are the sources of payout transactions, one
-- transaction in flight each. The registry is the one list the lease reads, so adding or
-- retiring a channel needs no restart. PAYOUTS_CHANNEL_ACCOUNTS seeds it at start-up.
CREATE TABLE channel_accounts (
    account                  text PRIMARY KEY CHECK (account ~ '^G[A-Z2-7]{55}$'),
    key_id                   text NOT NULL UNIQUE CHECK (length(key_id) BETWEEN 1 AND 128),
    state                    text NOT NULL CHECK (state IN
                                 ('pending', 'funding', 'active', 'draining', 'retired',
                                  'merging', 'merged')),
    origin                   text NOT NULL CHECK (origin IN ('seed', 'added', 'created')),
    -- Wanted funding: the CreateAccount starting balance of a pending channel, or a top-up.
    starting_balance_stroops bigint CHECK (starting_balance_stroops > 0),
    top_up_stroops           bigint CHECK (top_up_stroops > 0),
    -- A retired channel with this flag is merged into the funding account.
    merge_requested          boolean NOT NULL DEFAULT false,
    -- Why the pool stopped retrying this channel's create or merge (a permanent failure);
    -- cleared when an operator asks again.
    held_reason              text,
    balance_stroops          bigint CHECK (balance_stroops >= 0),
    balance_read_at          timestamptz,
    live_operation           uuid,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now(),
    retired_at               timestamptz,
    CHECK (state <> 'pending' OR starting_balance_stroops IS NOT NULL),
    -- A channel being created or merged always names the transaction doing it.
    CHECK (state NOT IN ('funding', 'merging') OR live_operation IS NOT NULL),
    CHECK ((state IN ('retired', 'merging', 'merged')) = (retired_at IS NOT NULL))
);
CREATE INDEX channel_accounts_active ON channel_accounts (account) WHERE state = 'active';
CREATE INDEX channel_accounts_work ON channel_accounts (state)
    WHERE state IN ('pending', 'draining') OR top_up_stroops IS NOT NULL OR merge_requested;

-- The lifecycle transactions (create, top-up, merge): the same exactly-once rules as payout
-- attempts. The envelope is stored before it is signed and sent; a new one is built only
-- after the previous one failed on chain or is proven dead.
CREATE TABLE channel_operations (
    id               uuid PRIMARY KEY,
    kind             text NOT NULL CHECK (kind IN ('create', 'top_up', 'merge')),
    source_account   text NOT NULL REFERENCES source_accounts (account),
    sequence         bigint NOT NULL,
    max_time         timestamptz NOT NULL,
    envelope_xdr     text NOT NULL,
    tx_hash          text NOT NULL UNIQUE,
    fee_stroops      bigint NOT NULL CHECK (fee_stroops > 0),
    total_stroops    bigint NOT NULL CHECK (total_stroops >= 0),
    status           text NOT NULL CHECK (status IN
                         ('built', 'signed', 'sent', 'included', 'failed_on_chain', 'dead',
                          'rejected')),
    submitted_ledger integer,
    last_rejection   text,
    result_code      text,
    ledger           integer,
    proof            text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CHECK (status <> 'dead' OR proof IS NOT NULL)
);
-- stellar-core keeps one pending transaction per source account; we keep one live lifecycle
-- transaction per source, so a re-sync after txBAD_SEQ never has two of ours to reckon with.
CREATE UNIQUE INDEX channel_operations_one_live_per_source ON channel_operations (source_account)
    WHERE status IN ('built', 'signed', 'sent');

CREATE TABLE channel_operation_items (
    operation_id   uuid NOT NULL REFERENCES channel_operations (id),
    account        text NOT NULL REFERENCES channel_accounts (account),
    amount_stroops bigint NOT NULL CHECK (amount_stroops >= 0),
    PRIMARY KEY (operation_id, account)
);

ALTER TABLE channel_accounts ADD CONSTRAINT channel_accounts_live_operation_fk
    FOREIGN KEY (live_operation) REFERENCES channel_operations (id);

-- Append-only: one row per state change of a channel, written with the change.
CREATE TABLE channel_events (
    id           bigserial PRIMARY KEY,
    account      text NOT NULL REFERENCES channel_accounts (account),
    from_state   text,
    to_state     text NOT NULL,
    actor        text NOT NULL,
    reason       text NOT NULL DEFAULT '',
    operation_id uuid REFERENCES channel_operations (id),
    at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX channel_events_by_account ON channel_events (account, id);
