//! When to re-mint: a pure decision on the cached token, the time and the thresholds.
//!
//! Ages and expiries are judged in our clock: the cache records when we received the token (our
//! clock) and its expiry in GitHub's clock with the offset between the two, so a runner whose clock
//! drifts still refreshes on time and never serves a token GitHub considers expired.

use std::time::Duration;

use crate::clock::{LocalTime, Offset, ServerTime};

/// A brand-new token can be refused for a few seconds, and a stale checkout header or a repository
/// outside the token's reach also makes git send `erase`: erase only tokens older than this.
const ERASE_MIN_AGE: i64 = 60;
/// Re-mints caused by `erase` happen at most once per this many seconds.
const ERASE_MIN_INTERVAL: i64 = 60;
/// Refresh when less than this is left, or half the token's lifetime if that is less.
const EXPIRY_MARGIN: i64 = 300;

/// A token's life as the policy judges it; the cached token carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Lifetime {
    /// When we received the token, our clock.
    pub(crate) minted_at: LocalTime,
    /// Its expiry, GitHub's clock.
    pub(crate) expires_at: ServerTime,
    /// How far GitHub's clock ran ahead of ours.
    pub(crate) clock_offset: Offset,
}

impl Lifetime {
    /// The expiry in our clock.
    pub(crate) fn local_expiry(&self) -> LocalTime {
        self.clock_offset.ours(self.expires_at)
    }

    pub(crate) fn age(&self, now: LocalTime) -> i64 {
        now - self.minted_at
    }

    /// Whether GitHub still accepts it at `now` (our clock).
    pub(crate) fn is_valid(&self, now: LocalTime) -> bool {
        now < self.local_expiry()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    Fresh,
    Refresh(Reason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    Age,
    NearExpiry,
    Erased,
}

/// Whether the cached token should be replaced at `now` (our clock); `erased` when git said it
/// was refused.
pub(crate) fn decide(
    now: LocalTime,
    facts: &Lifetime,
    erased: bool,
    refresh_after: Duration,
) -> Decision {
    let lifetime = facts.local_expiry() - facts.minted_at;
    let margin = EXPIRY_MARGIN.min(lifetime / 2);
    if erased {
        Decision::Refresh(Reason::Erased)
    } else if facts.age(now) >= refresh_after.as_secs() as i64 {
        Decision::Refresh(Reason::Age)
    } else if facts.local_expiry() - now <= margin {
        Decision::Refresh(Reason::NearExpiry)
    } else {
        Decision::Fresh
    }
}

/// When `decide` will first call for a refresh, unless git erases the token first.
pub(crate) fn refresh_at(facts: &Lifetime, refresh_after: Duration) -> LocalTime {
    let lifetime = facts.local_expiry() - facts.minted_at;
    let margin = EXPIRY_MARGIN.min(lifetime / 2);
    let by_age = facts.minted_at + refresh_after.as_secs() as i64;
    by_age.min(facts.local_expiry() - margin)
}

/// Whether git's `erase` of the cached token should mark it stale.
pub(crate) fn erase_counts(
    now: LocalTime,
    facts: &Lifetime,
    last_erase_mint: Option<LocalTime>,
) -> bool {
    facts.age(now) >= ERASE_MIN_AGE
        && last_erase_mint.is_none_or(|at| now - at >= ERASE_MIN_INTERVAL)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Offset, ServerTime};

    fn at(secs: i64) -> LocalTime {
        LocalTime(secs)
    }

    const FIFTY_MINUTES: Duration = Duration::from_secs(50 * 60);

    fn hour_token(minted_at: i64) -> Lifetime {
        Lifetime {
            minted_at: at(minted_at),
            expires_at: ServerTime(minted_at + 3600),
            clock_offset: Offset(0),
        }
    }

    #[test]
    fn a_young_token_is_fresh() {
        assert_eq!(
            decide(at(1000 + 49 * 60), &hour_token(1000), false, FIFTY_MINUTES),
            Decision::Fresh
        );
    }

    #[test]
    fn an_old_token_is_refreshed() {
        assert_eq!(
            decide(at(1000 + 50 * 60), &hour_token(1000), false, FIFTY_MINUTES),
            Decision::Refresh(Reason::Age)
        );
    }

    #[test]
    fn a_token_near_its_expiry_is_refreshed_whatever_its_age() {
        // GitHub gave a token with only ten minutes left.
        let short = Lifetime {
            expires_at: ServerTime(1000 + 600),
            ..hour_token(1000)
        };
        assert_eq!(
            decide(at(1000 + 299), &short, false, FIFTY_MINUTES),
            Decision::Fresh
        );
        assert_eq!(
            decide(at(1000 + 300), &short, false, FIFTY_MINUTES),
            Decision::Refresh(Reason::NearExpiry)
        );
    }

    #[test]
    fn a_fresh_answer_leaves_the_caller_ten_minutes() {
        let facts = hour_token(0);
        for now in 0..4000 {
            if decide(at(now), &facts, false, FIFTY_MINUTES) == Decision::Fresh {
                assert!(facts.local_expiry() - at(now) > 600, "at {now}");
            }
        }
    }

    #[test]
    fn expiry_is_judged_in_our_clock() {
        // GitHub runs five minutes ahead: its expiry is five minutes earlier in our clock.
        let facts = Lifetime {
            clock_offset: Offset(300),
            expires_at: ServerTime(300 + 3600),
            ..hour_token(0)
        };
        assert_eq!(facts.local_expiry(), at(3600));
        assert!(facts.is_valid(at(3599)));
        assert!(!facts.is_valid(at(3600)));
    }

    #[test]
    fn an_erased_token_is_refreshed() {
        assert_eq!(
            decide(at(1), &hour_token(0), true, FIFTY_MINUTES),
            Decision::Refresh(Reason::Erased)
        );
    }

    #[test]
    fn short_lived_tokens_keep_a_proportional_margin() {
        // The end-to-end tests use tokens that live 3 s with `refresh-after: 1s`.
        let facts = Lifetime {
            minted_at: at(0),
            expires_at: ServerTime(3),
            clock_offset: Offset(0),
        };
        let one_second = Duration::from_secs(1);
        assert_eq!(decide(at(0), &facts, false, one_second), Decision::Fresh);
        assert_eq!(
            decide(at(1), &facts, false, one_second),
            Decision::Refresh(Reason::Age)
        );
    }

    #[test]
    fn refresh_at_is_when_decide_first_refreshes() {
        for (facts, after) in [
            (hour_token(1000), FIFTY_MINUTES),
            (hour_token(1000), Duration::from_secs(3590)),
            (
                Lifetime {
                    minted_at: at(0),
                    expires_at: ServerTime(3),
                    clock_offset: Offset(0),
                },
                FIFTY_MINUTES,
            ),
        ] {
            let due = refresh_at(&facts, after);
            assert_eq!(decide(due - 1, &facts, false, after), Decision::Fresh);
            assert_ne!(decide(due, &facts, false, after), Decision::Fresh);
        }
    }

    #[test]
    fn erase_needs_an_old_token_and_a_quiet_minute() {
        let facts = hour_token(0);
        assert!(!erase_counts(at(59), &facts, None), "too young");
        assert!(erase_counts(at(60), &facts, None));
        assert!(
            !erase_counts(at(100), &facts, Some(at(50))),
            "re-minted for an erase 50 s ago"
        );
        assert!(erase_counts(at(110), &facts, Some(at(50))));
    }
}
