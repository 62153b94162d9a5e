//! Our clock: the one place that reads the system time, how times are written, and a server's
//! clock told apart from ours. Logic takes `now` as an argument.
//!
//! Our times are `LocalTime`. A server's (GitHub's, AWS's) are `ServerTime`, and reach ours only
//! through the `Offset` its `Date` showed: a runner whose clock drifts still judges a token's
//! expiry right. Both are unix seconds; spans between them are seconds, `i64`.

use std::ops::{Add, Sub};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A moment on a server's clock, unix seconds: a token's expiry as GitHub states it, or the time
/// a JWT or a request claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct ServerTime(pub(crate) i64);

impl ServerTime {
    /// As RFC 3339 (`2026-11-25T18:00:00Z`).
    pub(crate) fn rfc3339(self) -> String {
        rfc3339(self.0)
    }
}

/// A moment on our clock, unix seconds: when we received a token, when a mint failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct LocalTime(pub(crate) i64);

/// `seconds` later.
impl Add<i64> for LocalTime {
    type Output = LocalTime;
    fn add(self, seconds: i64) -> LocalTime {
        LocalTime(self.0.saturating_add(seconds))
    }
}

/// `seconds` earlier.
impl Sub<i64> for LocalTime {
    type Output = LocalTime;
    fn sub(self, seconds: i64) -> LocalTime {
        LocalTime(self.0.saturating_sub(seconds))
    }
}

/// The seconds from `earlier` to this moment.
impl Sub for LocalTime {
    type Output = i64;
    fn sub(self, earlier: LocalTime) -> i64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// How far a server's clock runs ahead of ours, seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct Offset(pub(crate) i64);

impl Offset {
    /// The offset that a server's moment `theirs`, seen at our moment `ours`, shows.
    pub(crate) fn between(theirs: ServerTime, ours: LocalTime) -> Self {
        Offset(theirs.0.saturating_sub(ours.0))
    }

    /// The server's moment `at`, on our clock.
    pub(crate) fn ours(self, at: ServerTime) -> LocalTime {
        LocalTime(at.0.saturating_sub(self.0))
    }

    /// Our moment `now`, on the server's clock.
    pub(crate) fn theirs(self, now: LocalTime) -> ServerTime {
        ServerTime(now.0.saturating_add(self.0))
    }
}

/// Our clock, now.
pub(crate) fn unix_now() -> LocalTime {
    LocalTime(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0),
    )
}

/// Unix seconds as RFC 3339 (`2026-11-25T18:00:00Z`).
fn rfc3339(unix: i64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix.max(0) as u64))
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offset_carries_a_moment_between_the_clocks() {
        let ahead = Offset(300);
        assert_eq!(ahead.theirs(LocalTime(1_000)), ServerTime(1_300));
        assert_eq!(ahead.ours(ServerTime(1_300)), LocalTime(1_000));
    }

    #[test]
    fn rfc3339_formats_utc_seconds() {
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
