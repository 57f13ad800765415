//! One monotonic clock for the whole process. Publisher and worker run in the same process,
//! so a timestamp taken at publish and read back in the worker gives the publish-to-handled
//! latency without any clock skew.

use std::sync::OnceLock;
use std::time::Instant;

static ORIGIN: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since the first call in this process.
pub fn now_ns() -> u64 {
    let origin = ORIGIN.get_or_init(Instant::now);
    // u64 nanoseconds last 584 years.
    u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Nanoseconds from `earlier` (a [`now_ns`] reading) until now.
pub fn elapsed_ns(earlier: u64) -> u64 {
    now_ns().saturating_sub(earlier)
}
