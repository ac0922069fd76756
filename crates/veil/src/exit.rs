//! Exit codes of the `veil` binary. `main` is the one place that maps outcomes to them.

/// Everything asked was done: every image redacted or verified clean.
pub const OK: i32 = 0;
/// The run finished but some images failed (no output was written for them), or a check found
/// a problem (e.g. `models verify` found an altered file; a missing one is listed, not an error:
/// it is fetched on first use).
pub const FAILURES: i32 = 1;
/// Usage or setup error: bad arguments, unusable directories, missing or altered runtime or
/// model, CUDA requested but unusable. Nothing was processed.
pub const USAGE_OR_SETUP: i32 = 2;
