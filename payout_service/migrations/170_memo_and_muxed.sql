-- Exchange deposits: the transaction memo a payout must carry, and the id of a muxed (M...)
-- destination. The limits are the network's (Stellar-transaction.x: `string text<28>` in
-- bytes, `uint64 id`, 32-byte `hash` and `retHash`), so a row the network could not carry
-- cannot be stored. Text is stored as given, id in decimal, hash and return in lowercase hex.
ALTER TABLE payouts
    ADD COLUMN memo_type  text CHECK (memo_type IN ('text', 'id', 'hash', 'return')),
    ADD COLUMN memo_value text,
    ADD COLUMN muxed_id   numeric(20, 0)
        CHECK (muxed_id BETWEEN 0 AND 18446744073709551615),
    ADD CONSTRAINT memo_type_and_value_together CHECK ((memo_type IS NULL) = (memo_value IS NULL)),
    ADD CONSTRAINT memo_value_fits_its_type CHECK (
        memo_type IS NULL
        OR (memo_type = 'text' AND octet_length(memo_value) <= 28)
        OR (memo_type = 'id' AND memo_value ~ '^[0-9]{1,20}$'
            AND memo_value::numeric <= 18446744073709551615)
        OR (memo_type IN ('hash', 'return') AND memo_value ~ '^[0-9a-f]{64}$')),
    -- An M... destination always has its id stored, and only an M... destination has one.
    ADD CONSTRAINT muxed_id_iff_muxed_destination
        CHECK ((muxed_id IS NOT NULL) = (destination LIKE 'M%'));
