//! A server's clock as we know it (GitHub's, AWS's): the offset from ours that its `Date`
//! header shows.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::UNIX_EPOCH;

use reqwest::header::HeaderMap;

use crate::clock::{Offset, ServerTime, unix_now};

/// The offset of a server's clock from ours, in seconds (the server minus us).
#[derive(Debug)]
pub(crate) struct Clock(AtomicI64);

impl Clock {
    pub(crate) fn new(offset: Offset) -> Self {
        Self(AtomicI64::new(offset.0))
    }

    pub(crate) fn offset(&self) -> Offset {
        Offset(self.0.load(Ordering::Relaxed))
    }

    fn set(&self, offset: Offset) {
        self.0.store(offset.0, Ordering::Relaxed);
    }

    /// Keep the offset the answer's `Date` shows, when it drifts from the one known.
    pub(crate) fn learn(&self, headers: &HeaderMap) {
        let Some(server) = header_date(headers) else {
            return;
        };
        let measured = Offset::between(server, unix_now());
        // `Date` has one-second resolution: ignore jitter around the known offset.
        if (measured.0 - self.offset().0).abs() > 2 {
            self.set(measured);
        }
    }

    /// Now in the server's clock.
    pub(crate) fn server_now(&self) -> ServerTime {
        self.offset().theirs(unix_now())
    }
}

/// The time an answer's `Date` header gives.
fn header_date(headers: &HeaderMap) -> Option<ServerTime> {
    http_date(headers.get(reqwest::header::DATE)?.to_str().ok()?)
}

/// An HTTP date (`Thu, 01 Jan 1970 00:00:30 GMT`), on the clock of the server that sent it.
pub(super) fn http_date(text: &str) -> Option<ServerTime> {
    let at = httpdate::parse_http_date(text).ok()?;
    Some(ServerTime(
        at.duration_since(UNIX_EPOCH).ok()?.as_secs() as i64
    ))
}
