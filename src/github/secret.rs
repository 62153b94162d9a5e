//! A token that must never be printed: its `Debug` and `Display` show a short fingerprint.
//!
//! The fingerprint is the first 12 hex digits of the SHA-256 of the token. It identifies a token
//! in logs and summaries without revealing any of its characters (a prefix would).

use std::fmt;

use ring::digest;

/// An installation token, or any other secret string we hold.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The secret itself, for the few places that must send or store it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `sha256:` and the first 12 hex digits of the SHA-256 of the secret.
    pub fn fingerprint(&self) -> String {
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
    fn fingerprint_is_stable_and_short() {
        // sha256("abc") = ba7816bf8f01cfea...
        assert_eq!(
            Secret::new("abc".into()).fingerprint(),
            "sha256:ba7816bf8f01"
        );
    }
}
