//! veil-redact
