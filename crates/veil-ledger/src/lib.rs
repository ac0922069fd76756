//! veil-ledger
