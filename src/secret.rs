//! Secrets we hold (tokens, JWTs, identity tokens): never printed, and scrubbed from what is.
//!
//! A `Secret` shows as a short fingerprint: the first 12 hex digits of its SHA-256, which names it
//! in logs and summaries without revealing any of its characters (a prefix would). Every secret
//! this process makes is also held in one registry, so that `scrub` can take it out of any text we
//! print, whoever quoted it (a server echoing our bearer in its error message), and so that a step
//! that owns its stdout can register each one with the runner's masker as it arrives.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Mutex, MutexGuard};

use ring::digest;

/// Shorter values are not scrubbed: they would take common words out of messages, and none of
/// the secrets we handle is this short.
const SHORTEST_SCRUBBED: usize = 8;

/// An installation token, or any other secret string we hold.
#[derive(Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub(crate) struct Secret(String);

impl Secret {
    pub(crate) fn new(value: String) -> Self {
        hold(&value);
        Self(value)
    }

    /// A token as a server hands it over, checked: what goes into an HTTP header, a file
    /// command or git's credential protocol must not carry a line break, a blank or a control
    /// character that the next reader would take as the end of the value.
    pub(crate) fn checked(value: String) -> Result<Self, &'static str> {
        const MAX_LEN: usize = 4096;
        if value.is_empty() {
            return Err("is empty");
        }
        if value.len() > MAX_LEN {
            return Err("is longer than any token GitHub issues");
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || "_-.~+/=".contains(c);
        if !value.chars().all(allowed) {
            return Err("has characters no token has (a blank, a line break or a symbol)");
        }
        Ok(Self::new(value))
    }

    /// The secret itself, for the few places that must send or store it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// `sha256:` and the first 12 hex digits of the SHA-256 of the secret.
    pub(crate) fn fingerprint(&self) -> String {
        fingerprint(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret::new)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", self.fingerprint())
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.fingerprint())
    }
}

fn fingerprint(value: &str) -> String {
    let hash = digest::digest(&digest::SHA256, value.as_bytes());
    let hex: String = hash.as_ref()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// Every secret value this process has made, and who to tell of each new one.
struct Held {
    values: Vec<String>,
    announce: Option<fn(&str)>,
}

static HELD: Mutex<Held> = Mutex::new(Held {
    values: Vec::new(),
    announce: None,
});

fn held() -> MutexGuard<'static, Held> {
    HELD.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn hold(value: &str) {
    if value.len() < SHORTEST_SCRUBBED {
        return;
    }
    let mut held = held();
    if held.values.iter().any(|v| v == value) {
        return;
    }
    held.values.push(value.to_owned());
    if let Some(announce) = held.announce {
        announce(value);
    }
}

/// From now on, `announce` hears of every secret as it is made, and at once of those made
/// already: a step that owns its stdout masks each one with the runner before it is used.
pub(crate) fn announce_with(announce: fn(&str)) {
    let mut held = held();
    held.announce = Some(announce);
    for value in &held.values {
        announce(value);
    }
}

/// `text` with every secret this process holds replaced by its fingerprint.
pub(crate) fn scrub(text: &str) -> Cow<'_, str> {
    let held = held();
    let mut text = Cow::Borrowed(text);
    // The longest first: a value that held a shorter one would otherwise be cut in two.
    let mut values: Vec<&String> = held
        .values
        .iter()
        .filter(|v| text.contains(v.as_str()))
        .collect();
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    for value in values {
        text = Cow::Owned(text.replace(value.as_str(), &fingerprint(value)));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_never_shown() {
        let secret = Secret::new("ghs_supersecretvalue".into());
        let shown = format!("{secret} {secret:?} {secret:#?}");
        assert!(!shown.contains("supersecret"), "{shown}");
        assert!(!shown.contains("ghs_"), "{shown}");
    }

    #[test]
    fn tokens_are_checked_for_their_charset() {
        assert!(Secret::checked("ghs_16C7e42F292c6912E7710c838347Ae178B4a".into()).is_ok());
        assert!(Secret::checked("eyJhbGciOi.eyJzdWIi.c2ln-_".into()).is_ok());
        for bad in [
            "", "ghs_a\nb", "ghs_a\rb", "ghs_a\0b", "ghs a", "ghs_é", "a=b\n",
        ] {
            assert!(Secret::checked(bad.into()).is_err(), "{bad:?}");
        }
        assert!(Secret::checked("a".repeat(5000)).is_err());
    }

    #[test]
    fn fingerprint_is_stable_and_short() {
        // sha256("abc") = ba7816bf8f01cfea...
        assert_eq!(
            Secret::new("abc".into()).fingerprint(),
            "sha256:ba7816bf8f01"
        );
    }

    #[test]
    fn every_secret_made_is_scrubbed_from_text_whoever_quotes_it() {
        let made = Secret::new("eyJ-a-jwt-we-sent-once".into());
        let checked = Secret::checked("ghs_checked-on-arrival".into()).unwrap();
        let read: Secret = serde_json::from_str("\"ghs_read-from-the-state\"").unwrap();
        let quoted = "401: bad bearer eyJ-a-jwt-we-sent-once, ghs_checked-on-arrival; ghs_read-from-the-state";
        assert_eq!(
            scrub(quoted),
            format!(
                "401: bad bearer {}, {}; {}",
                made.fingerprint(),
                checked.fingerprint(),
                read.fingerprint()
            )
        );
        assert!(matches!(scrub("nothing secret here"), Cow::Borrowed(_)));
    }
}
