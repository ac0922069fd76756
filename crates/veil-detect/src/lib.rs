//! veil-detect
