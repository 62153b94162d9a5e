//! Our clock: the one place that reads the system time. Logic takes `now` as an argument.

use std::time::{SystemTime, UNIX_EPOCH};

/// Our clock, unix seconds.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
