//! The App's private key: accept every way people paste it, refuse the wrong kinds clearly.
//!
//! GitHub issues PKCS#1 PEM (`BEGIN RSA PRIVATE KEY`); people also pass PKCS#8, PEM with literal
//! `\n` sequences or CRLF, or the whole PEM base64-encoded once more. The key's text never goes
//! into an error: errors say which kind of input was found and where to get the right `.pem`.

use std::fmt;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::signature::RsaKeyPair;

const WHERE_TO_GET: &str = "generate one under `Private keys` in the App's settings and pass the whole downloaded `.pem` file";

/// Why a private key was refused. Never carries any of the key's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum KeyError {
    #[error("the private key is empty: {WHERE_TO_GET}")]
    Empty,
    #[error(
        "the private key is an OpenSSH key, not the App's PEM key: {WHERE_TO_GET} (it starts with `-----BEGIN RSA PRIVATE KEY-----`)"
    )]
    OpenSsh,
    #[error("the private key is a public key: {WHERE_TO_GET}")]
    Public,
    #[error("the private key is encrypted with a passphrase: {WHERE_TO_GET}, unencrypted")]
    Encrypted,
    #[error("the private key is not an RSA key (found {}): {WHERE_TO_GET}", found(*.0))]
    NotRsa(Option<&'static str>),
    #[error(
        "the private key looks like the App's client secret, not its private key: {WHERE_TO_GET}"
    )]
    ClientSecret,
    #[error(
        "the private key is truncated: its `-----END` line is missing; pass the whole `.pem` file, for example from a secret that holds all of it"
    )]
    Truncated,
    #[error("the private key's PEM body is damaged ({0}): {WHERE_TO_GET}")]
    Damaged(&'static str),
    #[error("the private key is not PEM: {WHERE_TO_GET}")]
    NotPem,
}

fn found(label: Option<&str>) -> String {
    label.map_or_else(
        || "a PEM block of another kind".to_owned(),
        |label| format!("`{label}`"),
    )
}

/// A parsed RSA private key: `ring`'s key pair, parsed once, and the DER it came from.
#[derive(Clone)]
pub(crate) struct PrivateKey {
    pair: Arc<RsaKeyPair>,
    der: Vec<u8>,
    format: KeyFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyFormat {
    Pkcs1,
    Pkcs8,
}

impl PrivateKey {
    /// Parse the key as the `private-key` input gives it.
    pub(crate) fn parse(input: &str) -> Result<Self, KeyError> {
        let text = normalise(input);
        if text.is_empty() {
            return Err(KeyError::Empty);
        }
        if !text.contains("-----BEGIN") {
            return parse_unarmoured(&text);
        }
        let (label, body) = pem_block(&text)?;
        let format = match label {
            "RSA PRIVATE KEY" => KeyFormat::Pkcs1,
            "PRIVATE KEY" => KeyFormat::Pkcs8,
            "OPENSSH PRIVATE KEY" => return Err(KeyError::OpenSsh),
            "PUBLIC KEY" | "RSA PUBLIC KEY" | "SSH2 PUBLIC KEY" => return Err(KeyError::Public),
            "ENCRYPTED PRIVATE KEY" => return Err(KeyError::Encrypted),
            other => return Err(KeyError::NotRsa(known_label(other))),
        };
        if body.contains("Proc-Type:") {
            return Err(KeyError::Encrypted);
        }
        // A key pasted into a one-line field has spaces, or escaped newlines that were escaped
        // once more (`\\n`), where its line breaks were.
        let compact: String = body
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '\\')
            .collect();
        let der = STANDARD
            .decode(compact)
            .map_err(|_| KeyError::Damaged("not valid base64"))?;
        Self::from_der(der, format)
    }

    fn from_der(der: Vec<u8>, format: KeyFormat) -> Result<Self, KeyError> {
        let parsed = match format {
            KeyFormat::Pkcs1 => RsaKeyPair::from_der(&der),
            KeyFormat::Pkcs8 => RsaKeyPair::from_pkcs8(&der),
        };
        match parsed {
            Ok(pair) => Ok(Self {
                pair: Arc::new(pair),
                der,
                format,
            }),
            // PKCS#8 also wraps EC and Ed25519 keys.
            Err(_) if format == KeyFormat::Pkcs8 && !contains_rsa_oid(&der) => {
                Err(KeyError::NotRsa(Some("PRIVATE KEY")))
            }
            Err(_) => Err(KeyError::Damaged("not a complete RSA key")),
        }
    }

    /// The key pair that signs.
    pub(crate) fn pair(&self) -> &RsaKeyPair {
        &self.pair
    }

    #[cfg(test)]
    pub(crate) fn format(&self) -> KeyFormat {
        self.format
    }

    /// The key as PEM, as we store it for later re-mints.
    pub(crate) fn to_pem(&self) -> String {
        let label = match self.format {
            KeyFormat::Pkcs1 => "RSA PRIVATE KEY",
            KeyFormat::Pkcs8 => "PRIVATE KEY",
        };
        pem(label, &self.der)
    }
}

/// `der` as a PEM block labelled `label`, its base64 in lines of 64.
pub(super) fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    for chunk in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({:?}, {} bytes)", self.format, self.der.len())
    }
}

/// Literal `\n` sequences to newlines, CRLF to LF, surrounding blanks and quotes removed.
pub(super) fn normalise(input: &str) -> String {
    let text = input
        .trim()
        .trim_matches('"')
        .replace("\\r\\n", "\n")
        .replace("\\n", "\n")
        .replace('\r', "");
    text.lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_owned()
}

/// The first PEM block's label and body, wherever its armour lines break: a key pasted into a
/// one-line field has its `-----BEGIN …-----` line run into the body.
pub(super) fn pem_block(text: &str) -> Result<(&str, &str), KeyError> {
    let start = text.find("-----BEGIN ").ok_or(KeyError::NotPem)? + "-----BEGIN ".len();
    let rest = &text[start..];
    let label_end = rest.find("-----").ok_or(KeyError::NotPem)?;
    let label = rest[..label_end].trim();
    let after = rest[label_end..].trim_start_matches('-');
    match after.find("-----END ") {
        Some(end) => Ok((label, &after[..end])),
        None => match label {
            "OPENSSH PRIVATE KEY" => Err(KeyError::OpenSsh),
            "PUBLIC KEY" | "RSA PUBLIC KEY" => Err(KeyError::Public),
            _ => Err(KeyError::Truncated),
        },
    }
}

/// A PEM label worth naming in an error: only the standard ones, so that whatever a broken
/// armour line swept into the label (the key's own text) is never shown.
fn known_label(label: &str) -> Option<&'static str> {
    const KNOWN: [&str; 12] = [
        "EC PRIVATE KEY",
        "DSA PRIVATE KEY",
        "CERTIFICATE",
        "CERTIFICATE REQUEST",
        "NEW CERTIFICATE REQUEST",
        "X509 CRL",
        "PKCS7",
        "CMS",
        "EC PARAMETERS",
        "PGP PRIVATE KEY BLOCK",
        "PGP PUBLIC KEY BLOCK",
        "DH PARAMETERS",
    ];
    KNOWN.into_iter().find(|known| *known == label)
}

/// Text without `-----BEGIN`: the PEM base64-encoded once more, or something else entirely.
fn parse_unarmoured(text: &str) -> Result<PrivateKey, KeyError> {
    if text.starts_with("ssh-rsa ") || text.starts_with("ssh-ed25519 ") {
        return Err(KeyError::Public);
    }
    if text.len() == 40 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(KeyError::ClientSecret);
    }
    let compact: String = text.split_whitespace().collect();
    match STANDARD.decode(compact) {
        Ok(decoded) => match String::from_utf8(decoded) {
            Ok(inner) if inner.contains("-----BEGIN") => PrivateKey::parse(&inner),
            _ => Err(KeyError::NotPem),
        },
        Err(_) => Err(KeyError::NotPem),
    }
}

/// Whether DER bytes hold the rsaEncryption OID (1.2.840.113549.1.1.1).
pub(super) fn contains_rsa_oid(der: &[u8]) -> bool {
    const RSA_OID: [u8; 11] = [
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
    ];
    der.windows(RSA_OID.len()).any(|w| w == RSA_OID)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PKCS1: &str = include_str!("../../tests/fixtures/app-key.pem");
    const PKCS8: &str = include_str!("../../tests/fixtures/app-key.pkcs8.pem");
    const OPENSSH: &str = include_str!("../../tests/fixtures/openssh-key");
    const PUBLIC: &str = include_str!("../../tests/fixtures/app-key.pub.pem");
    const EC: &str = include_str!("../../tests/fixtures/ec-key.pem");

    fn parse(text: &str) -> Result<KeyFormat, KeyError> {
        PrivateKey::parse(text).map(|k| k.format())
    }

    #[test]
    fn pkcs1_as_github_issues_it_is_accepted() {
        assert_eq!(parse(PKCS1), Ok(KeyFormat::Pkcs1));
    }

    #[test]
    fn pkcs8_is_accepted() {
        assert_eq!(parse(PKCS8), Ok(KeyFormat::Pkcs8));
    }

    #[test]
    fn escaped_newlines_are_accepted() {
        let escaped = PKCS1.trim().replace('\n', "\\n");
        assert_eq!(parse(&escaped), Ok(KeyFormat::Pkcs1));
    }

    #[test]
    fn a_key_pasted_on_one_line_is_accepted() {
        let lines: Vec<&str> = PKCS1.trim().lines().collect();
        assert_eq!(parse(&lines.join(" ")), Ok(KeyFormat::Pkcs1));
        assert_eq!(parse(&lines.join("\\\\n")), Ok(KeyFormat::Pkcs1));
    }

    #[test]
    fn an_unknown_label_is_not_quoted() {
        let odd = PKCS1.replace("RSA PRIVATE KEY", "RSA PRIVATE KEY MIIEpAIBAAKCAQEA");
        let err = PrivateKey::parse(&odd).unwrap_err();
        assert_eq!(err, KeyError::NotRsa(None));
        assert!(!err.to_string().contains("MIIE"), "{err}");
    }

    #[test]
    fn crlf_and_surrounding_blanks_are_accepted() {
        let crlf = format!("\n  {}  \n\n", PKCS1.replace('\n', "\r\n"));
        assert_eq!(parse(&crlf), Ok(KeyFormat::Pkcs1));
    }

    #[test]
    fn base64_wrapped_pem_is_accepted() {
        let wrapped = STANDARD.encode(PKCS8);
        assert_eq!(parse(&wrapped), Ok(KeyFormat::Pkcs8));
    }

    #[test]
    fn both_formats_sign_the_same() {
        let one = PrivateKey::parse(PKCS1).unwrap();
        let eight = PrivateKey::parse(PKCS8).unwrap();
        assert_eq!(one.pair().public().as_ref(), eight.pair().public().as_ref());
    }

    #[test]
    fn pem_round_trips() {
        let key = PrivateKey::parse(PKCS1).unwrap();
        let again = PrivateKey::parse(&key.to_pem()).unwrap();
        assert_eq!(key.der, again.der);
    }

    #[test]
    fn each_wrong_kind_is_named() {
        let truncated = &PKCS1[..PKCS1.len() / 2];
        let damaged = PKCS1.replacen("MII", "MIX", 1);
        let cut_body = {
            let lines: Vec<&str> = PKCS1.lines().collect();
            let mut kept = lines[..lines.len() / 2].to_vec();
            kept.push(lines[lines.len() - 1]);
            kept.join("\n")
        };
        let cases: [(&str, KeyError); 9] = [
            ("", KeyError::Empty),
            ("   \n ", KeyError::Empty),
            (OPENSSH, KeyError::OpenSsh),
            (PUBLIC, KeyError::Public),
            (
                "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ user@host",
                KeyError::Public,
            ),
            (
                "0123456789abcdef0123456789abcdef01234567",
                KeyError::ClientSecret,
            ),
            (truncated, KeyError::Truncated),
            (&cut_body, KeyError::Damaged("not a complete RSA key")),
            ("just some words", KeyError::NotPem),
        ];
        for (input, expected) in cases {
            assert_eq!(parse(input), Err(expected), "input: {input:?}");
        }
        assert!(matches!(parse(&damaged), Err(KeyError::Damaged(_))));
        assert_eq!(parse(EC), Err(KeyError::NotRsa(Some("EC PRIVATE KEY"))));
    }

    #[test]
    fn errors_never_quote_the_key() {
        let body_line = PKCS1.lines().nth(3).unwrap();
        let broken = PKCS1.replace("-----END RSA PRIVATE KEY-----", "");
        let err = PrivateKey::parse(&broken).unwrap_err().to_string();
        assert!(!err.contains(body_line), "{err}");
        assert!(err.contains("truncated"), "{err}");
    }

    #[test]
    fn debug_does_not_show_the_key() {
        let key = PrivateKey::parse(PKCS1).unwrap();
        let shown = format!("{key:?}");
        assert!(shown.starts_with("PrivateKey(Pkcs1"), "{shown}");
        assert!(!shown.contains("MII"), "{shown}");
    }
}
