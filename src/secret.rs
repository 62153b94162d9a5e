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

/// What kind of secret a text holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    PrivateKey,
    Jwt,
    Token,
}

impl Kind {
    /// The secret, as a message names it.
    pub(crate) fn what(self) -> &'static str {
        match self {
            Kind::PrivateKey => "a private key",
            Kind::Jwt => "a JWT",
            Kind::Token => "a token",
        }
    }

    /// How to pass it instead.
    pub(crate) fn fix(self) -> &'static str {
        match self {
            Kind::PrivateKey => {
                "put the key in a file and pass `--private-key-file PATH`, or name the variable that holds it with `--private-key-env NAME`"
            }
            Kind::Jwt | Kind::Token => {
                "pass where it is kept (a file, or the name of the variable that holds it), never the value itself"
            }
        }
    }
}

/// Whether `text` looks like it holds a secret, and which: a private key (PEM armour anywhere, or
/// a long run of base64 as a key's DER starts, `MII…`), a JWT (`eyJ…` and a dot: identity tokens,
/// our App's), or a token (GitHub's prefixes, or a run of 32 or more token characters mixing
/// capitals, small letters and digits, as no path, name or URL of ours does).
pub(crate) fn kind_in(text: &str) -> Option<Kind> {
    if text.contains("-----BEGIN") || text.contains("PRIVATE KEY") {
        return Some(Kind::PrivateKey);
    }
    // Each kind read in the words of its own alphabet.
    let words = |alphabet: fn(char) -> bool| text.split(move |c: char| !alphabet(c));
    let token_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-');
    let base64 = words(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='));
    if base64
        .into_iter()
        .any(|word| word.len() >= 100 && word.starts_with("MII"))
    {
        return Some(Kind::PrivateKey);
    }
    let jwt = words(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if jwt.into_iter().any(|word| {
        word.split_once('.')
            .is_some_and(|(header, _)| header.starts_with("eyJ") && header.len() >= 10)
    }) {
        return Some(Kind::Jwt);
    }
    let token = words(token_char).any(|piece| {
        let github = ["ghs_", "ghp_", "gho_", "ghu_", "ghr_", "github_pat_"]
            .iter()
            .any(|prefix| piece.starts_with(prefix));
        let mixed = piece.len() >= 32
            && piece.chars().any(|c| c.is_ascii_uppercase())
            && piece.chars().any(|c| c.is_ascii_lowercase())
            && piece.chars().any(|c| c.is_ascii_digit());
        (github && piece.len() >= 20) || mixed
    });
    if token {
        return Some(Kind::Token);
    }
    None
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
    fn keys_jwts_and_tokens_are_told_from_paths_names_and_urls() {
        let key_body = format!("MIIEowIBAAKCAQEA{}", "q".repeat(120));
        for (text, kind) in [
            ("-----BEGIN RSA PRIVATE KEY----- MIIE", Kind::PrivateKey),
            ("/tmp/-----BEGIN PRIVATE KEY-----", Kind::PrivateKey),
            (key_body.as_str(), Kind::PrivateKey),
            ("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", Kind::Jwt),
            ("https://x/?t=eyJhbGciOiJSUzI1NiJ9.e30", Kind::Jwt),
            ("ghs_16C7e42F292c6912E7710c838347Ae178B4a", Kind::Token),
            ("github_pat_11ABCDEFG0123456789", Kind::Token),
            ("https://api.example/ghp_abcdefghij0123456789", Kind::Token),
            ("Zk3mQ9xVtL2pR8wNcY5hJ1bD7sF4gA6e", Kind::Token),
        ] {
            assert_eq!(kind_in(text), Some(kind), "{text}");
        }
        for text in [
            "/home/runner/work/_temp/app-key.pem",
            "/tmp/token-keeper-1000/jenkins-MyProject-build-1234/setup-Ab3dE9",
            "https://ghes.example.com/api/v3",
            "Octo-Org",
            "CI_OIDC_TOKEN",
            "buildkite-agent oidc request-token --audience octo-sts.dev",
            "3f2a9c1e-7b4d-4e8a-9c2f-1a2b3c4d5e6f",
            "contents=write",
            "50m",
        ] {
            assert_eq!(kind_in(text), None, "{text}");
        }
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
