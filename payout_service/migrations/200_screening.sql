-- Destination screening: allow and deny lists managed at run time by admins
-- (PayoutAdminService/AddScreeningEntry...), read at creation and again before a payout is
-- built (core/screening.py decides). One entry per address and list; an M... destination is
-- screened by its own address and by its G... account, so both can be listed.
CREATE TABLE screening_entries (
    address     text NOT NULL CHECK (address ~ '^[GMC][A-Z2-7]{55}([A-Z2-7]{13})?$'),
    list_kind   text NOT NULL CHECK (list_kind IN ('allow', 'deny')),
    reason      text NOT NULL CHECK (char_length(reason) BETWEEN 1 AND 512),
    added_by    text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (address, list_kind)
);

-- Every change, written in the SQL transaction that makes it: payout_events needs a payout,
-- and an entry outlives none.
CREATE TABLE screening_changes (
    id              bigserial PRIMARY KEY,
    address         text NOT NULL,
    list_kind       text NOT NULL CHECK (list_kind IN ('allow', 'deny')),
    change          text NOT NULL CHECK (change IN ('added', 'removed')),
    reason          text NOT NULL,
    actor           text NOT NULL,
    correlation_id  text NOT NULL DEFAULT '',
    at              timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX screening_changes_address_idx ON screening_changes (address, id);
