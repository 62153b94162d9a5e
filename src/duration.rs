//! Durations as people write them: `90s`, `50m`, `1h`, `250ms`, or bare seconds.
//!
//! Not `humantime::parse_duration`, though humantime is a dependency: it refuses bare seconds
//! and reads `5M` as five months, where a `refresh-after` of `5M` is a slip for minutes that
//! must be refused, not a token kept for months.

use std::time::Duration;

use crate::messages::short;

/// Why a text is no duration we take; each holds the text, shortened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BadDuration {
    #[error("`{0}` is not a duration")]
    NotADuration(String),
    #[error("`{0}` is too long")]
    TooLong(String),
}

/// `90s`, `50m`, `1h`, `250ms` or bare seconds.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, BadDuration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| BadDuration::NotADuration(short(text)))?;
    let unit_ms: u64 = match unit.trim() {
        "" | "s" => 1000,
        "ms" => 1,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(BadDuration::NotADuration(short(text))),
    };
    number
        .checked_mul(unit_ms)
        .map(Duration::from_millis)
        .ok_or_else(|| BadDuration::TooLong(short(text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units_or_bare_seconds() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("50m"), Ok(Duration::from_secs(3000)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("120"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("5M").is_err());
        assert!(parse_duration("99999999999999999999h").is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_text_parses_without_panic(text in ".{0,24}") {
            let _ = parse_duration(&text);
        }

        #[test]
        fn written_durations_round_trip(n in 0u64..1_000_000, unit in "ms|s|m|h|") {
            let ms = match unit.as_str() { "ms" => 1, "m" => 60_000, "h" => 3_600_000, _ => 1000 };
            proptest::prop_assert_eq!(parse_duration(&format!("{n}{unit}")), Ok(Duration::from_millis(n * ms)));
        }
    }
}
