-- Sequence numbers given back by attempts proven never to land, below the source's
-- next_sequence. The next reservation takes the lowest one first, so a dead attempt leaves
-- no gap that would hold every later transaction of the account at txBAD_SEQ.
CREATE TABLE released_sequences (
    account   text NOT NULL REFERENCES source_accounts (account),
    sequence  bigint NOT NULL,
    PRIMARY KEY (account, sequence)
);
