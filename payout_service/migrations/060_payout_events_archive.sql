-- Retention of the audit trail: payout_events keeps the events of payouts that are
-- live or settled recently; the events of payouts settled (CONFIRMED, FAILED, CANCELLED) more
-- than PAYOUTS_EVENTS_RETENTION_DAYS ago are moved, whole payout by whole payout, to
-- payout_events_archive by the retention loop (payout_store.archive_settled_events).
--
-- Why an archive table rather than monthly partitions of payout_events: every query on
-- payout_events selects by payout (payout_id, id), never by time, so partitions by month would
-- turn each of them into one index probe per partition; the archive keeps the table, its
-- primary key, its foreign key and its sequence as they are, and the move is one statement.
--
-- Nothing is lost or duplicated: a move is one statement (DELETE ... RETURNING into INSERT),
-- atomic by itself. Event ids come from payout_events' sequence, so a payout's trail is the
-- union of both tables in id order (PayoutStore.events_after reads it so). A FAILED payout
-- retried after its events were archived writes its new events to payout_events; they move
-- once it settles again and that settlement is old enough.
--
-- O(log N) per payout moved: the settled payouts are walked in (updated_at, id) order on a
-- partial index from a stored cursor (each payout is visited once: updated_at only grows, and
-- a payout that changes again is met again further on), and each one's events are found and
-- archived through (payout_id, id) indexes.

-- The same columns (LIKE: names, types, NOT NULL; no defaults, keys or sequence), and when.
CREATE TABLE payout_events_archive (
    LIKE payout_events,
    archived_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id)
);

CREATE INDEX payout_events_archive_payout_idx ON payout_events_archive (payout_id, id);

CREATE INDEX payouts_settled_updated_idx ON payouts (updated_at, id)
    WHERE state IN ('CONFIRMED', 'FAILED', 'CANCELLED');

-- The retention cursor: settled payouts up to (updated_at, payout) have been archived.
CREATE TABLE payout_events_retention (
    id              integer PRIMARY KEY CHECK (id = 1),
    after_updated   timestamptz NOT NULL DEFAULT '-infinity',
    after_payout    uuid NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000',
    payouts         bigint NOT NULL DEFAULT 0,
    events          bigint NOT NULL DEFAULT 0,
    ran_at          timestamptz
);

INSERT INTO payout_events_retention (id) VALUES (1);
