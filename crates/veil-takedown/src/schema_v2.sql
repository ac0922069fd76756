-- Schema 2: no table changes. From here on every event records the rows it wrote (`writes`) and
-- the digest of the state after it (`state`); the migration's event holds the whole state
-- (`snapshot`) so that `veil ledger verify` can replay from it (see replay.rs).
SELECT 1;
