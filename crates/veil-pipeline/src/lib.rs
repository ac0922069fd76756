//! veil-pipeline
