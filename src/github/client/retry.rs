//! When to try a call again: a pure decision on each attempt's outcome, the time passed in.
//!
//! Calls are retried with exponential backoff and jitter on 5xx, 429, rate-limit 403s and
//! network errors, and never on other 4xx; a request that may have minted a token is repeated
//! once at most; a JWT refused for its times is retried once, on GitHub's clock.

use std::time::{Duration, Instant};

use reqwest::header::RETRY_AFTER;

use super::clock::http_date;
use super::error::is_untrusted_certificate;
use super::{Answer, Idempotency};
use crate::clock::ServerTime;

/// The longest pause of our own between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    Success,
    /// Worth another attempt, after the wait the server asked for (or our backoff).
    Retry(Option<Duration>),
    /// GitHub refused the JWT's times: retry once with its clock.
    Skew,
    Fail,
}

/// What one attempt came to, as far as the next one is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// GitHub (or a gateway before it) answered, with a status worth `Verdict`.
    Answered(Verdict),
    /// A gateway's 502 or 504: GitHub may have acted on the request before it failed.
    GatewayFailed(Verdict),
    /// No answer. `may_have_arrived` unless the connection itself failed.
    Unanswered { may_have_arrived: bool },
    /// The server's certificate is not trusted: retrying does not change that.
    Untrusted,
    /// The request cannot be built (a header value it cannot carry): it never will be.
    Unbuildable,
    /// The answer was larger than we read.
    Oversized,
}

impl Outcome {
    pub(super) fn of(answer: &Answer, server_now: ServerTime, app_auth: bool) -> Self {
        if answer.oversized {
            return Outcome::Oversized;
        }
        let verdict = judge(answer, server_now, app_auth);
        match answer.status {
            502 | 504 => Outcome::GatewayFailed(verdict),
            _ => Outcome::Answered(verdict),
        }
    }

    pub(super) fn of_network(err: &reqwest::Error) -> Self {
        if is_untrusted_certificate(err) {
            Outcome::Untrusted
        } else if err.is_builder() {
            Outcome::Unbuildable
        } else {
            Outcome::Unanswered {
                may_have_arrived: !err.is_connect(),
            }
        }
    }
}

/// What to do after an attempt that did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Next {
    GiveUp,
    /// At once: the skew was corrected.
    RetryNow,
    /// After the server's wait, or our backoff.
    RetryAfter(Option<Duration>),
}

/// What one call remembers from attempt to attempt. Pure: the outcome comes in.
#[derive(Debug)]
pub(super) struct Tries {
    idempotency: Idempotency,
    pub(super) attempts: u32,
    skew_retried: bool,
    /// Attempts that may have reached GitHub without us seeing its answer.
    unanswered: u32,
}

impl Tries {
    pub(super) fn new(idempotency: Idempotency) -> Self {
        Self {
            idempotency,
            attempts: 0,
            skew_retried: false,
            unanswered: 0,
        }
    }

    /// A request that may have reached GitHub and created something is repeated once: a flaky
    /// network must not fail the job, and at most one unseen token is left to expire unrevoked
    /// when the repeat succeeds.
    pub(super) fn next(&mut self, outcome: &Outcome) -> Next {
        self.attempts += 1;
        let creates = self.idempotency == Idempotency::CreatesSomething;
        let verdict = match *outcome {
            Outcome::Untrusted | Outcome::Unbuildable | Outcome::Oversized => return Next::GiveUp,
            Outcome::Unanswered { may_have_arrived } => {
                if creates && may_have_arrived {
                    self.unanswered += 1;
                }
                Verdict::Retry(None)
            }
            Outcome::GatewayFailed(verdict) => {
                if creates {
                    self.unanswered += 1;
                }
                verdict
            }
            Outcome::Answered(verdict) => verdict,
        };
        if self.unanswered > 1 {
            return Next::GiveUp;
        }
        match verdict {
            Verdict::Success | Verdict::Fail => Next::GiveUp,
            Verdict::Skew if !self.skew_retried => {
                self.skew_retried = true;
                Next::RetryNow
            }
            Verdict::Skew => Next::GiveUp,
            Verdict::Retry(wait) => Next::RetryAfter(wait),
        }
    }
}

/// Whether waiting `delay` from `now` still ends before `deadline`; a wait too long for the
/// clock to hold does not.
pub(crate) fn fits(now: Instant, delay: Duration, deadline: Instant) -> bool {
    now.checked_add(delay).is_some_and(|then| then < deadline)
}

fn judge(answer: &Answer, server_now: ServerTime, app_auth: bool) -> Verdict {
    // A success's body is the caller's to read; only a failure's message says what to do.
    if is_success(answer.status) {
        return Verdict::Success;
    }
    decide(
        answer.status,
        answer.message(),
        &RateHeaders {
            retry_after: answer.header(RETRY_AFTER.as_str()),
            remaining: answer.header("x-ratelimit-remaining"),
            reset: answer.header("x-ratelimit-reset"),
        },
        server_now,
        app_auth,
    )
}

struct RateHeaders<'a> {
    retry_after: Option<&'a str>,
    remaining: Option<&'a str>,
    reset: Option<&'a str>,
}

/// What to do with an answer. Pure: the time comes in.
fn decide(
    status: u16,
    message: &str,
    rate: &RateHeaders<'_>,
    server_now: ServerTime,
    app_auth: bool,
) -> Verdict {
    let server_wait = || {
        retry_after(rate.retry_after, server_now).or_else(|| {
            (rate.remaining == Some("0"))
                .then(|| rate.reset?.trim().parse::<i64>().ok())
                .flatten()
                .map(|reset| Duration::from_secs(reset.saturating_sub(server_now.0).max(1) as u64))
        })
    };
    let lower = message.to_ascii_lowercase();
    match status {
        _ if is_success(status) => Verdict::Success,
        401 if app_auth && mentions_jwt_times(&lower) => Verdict::Skew,
        429 | 500..=599 => Verdict::Retry(server_wait()),
        403 if lower.contains("rate limit")
            || rate.remaining == Some("0")
            || rate.retry_after.is_some() =>
        {
            Verdict::Retry(server_wait())
        }
        _ => Verdict::Fail,
    }
}

fn is_success(status: u16) -> bool {
    (200..=299).contains(&status)
}

fn mentions_jwt_times(lower_message: &str) -> bool {
    ["'iat'", "'exp'", "issued at", "expiration time"]
        .iter()
        .any(|needle| lower_message.contains(needle))
}

/// `Retry-After` as seconds or as an HTTP date.
fn retry_after(value: Option<&str>, server_now: ServerTime) -> Option<Duration> {
    let value = value?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = http_date(value)?;
    Some(Duration::from_secs(
        at.0.saturating_sub(server_now.0).max(0) as u64,
    ))
}

/// Exponential backoff with "equal jitter": between half and all of `base * 2^(attempt-1)`.
pub(crate) fn backoff(base: Duration, attempt: u32) -> Duration {
    let full = base
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(MAX_BACKOFF);
    let mut byte = [0u8; 1];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut byte);
    full / 2 + (full / 2).mul_f64(f64::from(byte[0]) / 255.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: RateHeaders<'static> = RateHeaders {
        retry_after: None,
        remaining: None,
        reset: None,
    };

    #[test]
    fn a_token_request_without_an_answer_is_repeated_once() {
        let mut tries = Tries::new(Idempotency::CreatesSomething);
        let lost = Outcome::Unanswered {
            may_have_arrived: true,
        };
        assert_eq!(tries.next(&lost), Next::RetryAfter(None));
        assert_eq!(tries.next(&lost), Next::GiveUp);
        let mut tries = Tries::new(Idempotency::CreatesSomething);
        let gateway = Outcome::GatewayFailed(Verdict::Retry(None));
        assert_eq!(tries.next(&gateway), Next::RetryAfter(None));
        assert_eq!(tries.next(&lost), Next::GiveUp, "both may have minted");
    }

    #[test]
    fn refused_connections_and_safe_requests_are_retried_until_the_deadline() {
        let mut tries = Tries::new(Idempotency::CreatesSomething);
        let refused = Outcome::Unanswered {
            may_have_arrived: false,
        };
        for _ in 0..5 {
            assert_eq!(tries.next(&refused), Next::RetryAfter(None));
        }
        let mut tries = Tries::new(Idempotency::Safe);
        let lost = Outcome::Unanswered {
            may_have_arrived: true,
        };
        for _ in 0..5 {
            assert_eq!(tries.next(&lost), Next::RetryAfter(None));
        }
        assert_eq!(tries.attempts, 5);
    }

    #[test]
    fn skew_is_retried_once_at_once() {
        let mut tries = Tries::new(Idempotency::Safe);
        assert_eq!(
            tries.next(&Outcome::Answered(Verdict::Skew)),
            Next::RetryNow
        );
        assert_eq!(tries.next(&Outcome::Answered(Verdict::Skew)), Next::GiveUp);
    }

    #[test]
    fn what_retrying_cannot_mend_is_given_up_at_once() {
        for outcome in [
            Outcome::Untrusted,
            Outcome::Unbuildable,
            Outcome::Oversized,
            Outcome::Answered(Verdict::Fail),
        ] {
            assert_eq!(
                Tries::new(Idempotency::Safe).next(&outcome),
                Next::GiveUp,
                "{outcome:?}"
            );
        }
        let wait = Some(Duration::from_secs(3));
        assert_eq!(
            Tries::new(Idempotency::Safe).next(&Outcome::Answered(Verdict::Retry(wait))),
            Next::RetryAfter(wait)
        );
    }

    #[test]
    fn a_wait_fits_only_before_the_deadline() {
        let now = Instant::now();
        let deadline = now + Duration::from_secs(10);
        assert!(fits(now, Duration::from_secs(9), deadline));
        assert!(!fits(now, Duration::from_secs(10), deadline));
        assert!(!fits(now, Duration::MAX, deadline), "past the end of time");
    }

    #[test]
    fn success_and_plain_client_errors_are_final() {
        assert_eq!(
            decide(201, "", &NONE, ServerTime(0), true),
            Verdict::Success
        );
        for status in [400, 401, 403, 404, 422] {
            assert_eq!(
                decide(status, "Not Found", &NONE, ServerTime(0), true),
                Verdict::Fail,
                "{status}"
            );
        }
    }

    #[test]
    fn server_errors_and_429_are_retried() {
        for status in [500, 502, 503, 504, 429] {
            assert_eq!(
                decide(status, "", &NONE, ServerTime(0), false),
                Verdict::Retry(None),
                "{status}"
            );
        }
    }

    #[test]
    fn retry_after_is_honoured_in_seconds_and_as_a_date() {
        let secs = RateHeaders {
            retry_after: Some("7"),
            ..NONE
        };
        assert_eq!(
            decide(429, "", &secs, ServerTime(0), false),
            Verdict::Retry(Some(Duration::from_secs(7)))
        );
        let date = RateHeaders {
            retry_after: Some("Thu, 01 Jan 1970 00:00:30 GMT"),
            ..NONE
        };
        assert_eq!(
            decide(503, "", &date, ServerTime(10), false),
            Verdict::Retry(Some(Duration::from_secs(20)))
        );
    }

    #[test]
    fn waits_from_the_end_of_time_are_read_without_panicking() {
        let huge = RateHeaders {
            retry_after: Some("18446744073709551615"),
            ..NONE
        };
        assert_eq!(
            decide(503, "", &huge, ServerTime(0), false),
            Verdict::Retry(Some(Duration::from_secs(u64::MAX)))
        );
        for reset in ["-9223372036854775808", "9223372036854775807"] {
            let exhausted = RateHeaders {
                remaining: Some("0"),
                reset: Some(reset),
                ..NONE
            };
            assert!(matches!(
                decide(403, "", &exhausted, ServerTime(1_700_000_000), false),
                Verdict::Retry(Some(_))
            ));
        }
    }

    #[test]
    fn secondary_rate_limit_403_is_retried() {
        let msg = "You have exceeded a secondary rate limit. Please wait a few minutes.";
        let with_wait = RateHeaders {
            retry_after: Some("3"),
            ..NONE
        };
        assert_eq!(
            decide(403, msg, &with_wait, ServerTime(0), false),
            Verdict::Retry(Some(Duration::from_secs(3)))
        );
        assert_eq!(
            decide(403, msg, &NONE, ServerTime(0), false),
            Verdict::Retry(None)
        );
    }

    #[test]
    fn exhausted_primary_limit_waits_for_the_reset() {
        let rate = RateHeaders {
            retry_after: None,
            remaining: Some("0"),
            reset: Some("1000"),
        };
        assert_eq!(
            decide(
                403,
                "API rate limit exceeded",
                &rate,
                ServerTime(990),
                false
            ),
            Verdict::Retry(Some(Duration::from_secs(10)))
        );
    }

    #[test]
    fn jwt_time_complaints_are_skew_only_for_app_auth() {
        let msg = "'Expiration time' claim ('exp') is too far in the future";
        assert_eq!(decide(401, msg, &NONE, ServerTime(0), true), Verdict::Skew);
        assert_eq!(decide(401, msg, &NONE, ServerTime(0), false), Verdict::Fail);
        let iat = "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued";
        assert_eq!(decide(401, iat, &NONE, ServerTime(0), true), Verdict::Skew);
        assert_eq!(
            decide(
                401,
                "A JSON web token could not be decoded",
                &NONE,
                ServerTime(0),
                true
            ),
            Verdict::Fail
        );
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let base = Duration::from_millis(100);
        for attempt in 1..=4 {
            let full = base * (1 << (attempt - 1));
            let got = backoff(base, attempt);
            assert!(got >= full / 2 && got <= full, "attempt {attempt}: {got:?}");
        }
        assert!(backoff(base, 30) <= MAX_BACKOFF);
    }
}
