-- The account a payout attempt's CreateAccount operation creates (classic batches), NULL for
-- any other operation. Two CreateAccount operations for one destination would fail the later
-- one on chain (CREATE_ACCOUNT_ALREADY_EXIST, stellar-core CreateAccountOpFrame) and its whole
-- batch with it, so the preparer asks which destinations are being created before planning
-- (adapters/batch_store.accounts_being_created) and a payout to one of them waits until the
-- account exists, then gets a Payment.
ALTER TABLE payout_attempts ADD COLUMN creates_account text;

-- At most one CreateAccount in flight per destination, refused by the database: whichever
-- replica or pass planned it second is refused. ABANDONED counts: its envelope may still land.
-- Partial on live creates only: a handful of rows, whatever the size of the table.
CREATE UNIQUE INDEX payout_attempts_one_live_create_idx ON payout_attempts (creates_account)
    WHERE creates_account IS NOT NULL AND status IN ('built', 'signed', 'sent', 'abandoned');
