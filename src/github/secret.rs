//! A token that must never be printed: its `Debug` and `Display` show a short fingerprint.
//!
//! The fingerprint is the first 12 hex digits of the SHA-256 of the token. It identifies a token
//! in logs and summaries without revealing any of its characters (a prefix would).

use std::fmt;

use ring::digest;

/// An installation token, or any other secret string we hold.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub(crate) struct Secret(String);

impl Secret {
    pub(crate) fn new(value: String) -> Self {
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
        Ok(Self(value))
    }

    /// The secret itself, for the few places that must send or store it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// `sha256:` and the first 12 hex digits of the SHA-256 of the secret.
    pub(crate) fn fingerprint(&self) -> String {
        let hash = digest::digest(&digest::SHA256, self.0.as_bytes());
        let hex: String = hash.as_ref()[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("sha256:{hex}")
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
}
