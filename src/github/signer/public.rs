//! The App's public key, to check a signer's signatures before GitHub sees them.
//!
//! `ring` verifies with a PKCS#1 `RSAPublicKey`. Tools hand out a SubjectPublicKeyInfo instead
//! (`openssl rsa -pubout`, AWS's `GetPublicKey`, `pkcs11-tool --read-object`), which wraps one in
//! a BIT STRING beside the algorithm's OID: both are taken, as PEM, as DER, or as the DER's
//! base64, and the SPKI unwrapped here with the few DER rules these two structures need.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};

use super::SignError;
use crate::github::key::{normalise, pem, pem_block};

/// How to get the public key, as each message says it.
macro_rules! how {
    () => {
        "(`openssl rsa -in app.pem -pubout` prints it)"
    };
}

/// rsaEncryption, 1.2.840.113549.1.1.1, as an OID's DER contents.
const RSA_ENCRYPTION: [u8; 9] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OID: u8 = 0x06;

/// An RSA public key, as `ring` verifies with it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct PublicKey {
    /// PKCS#1 `RSAPublicKey` DER.
    pkcs1: Vec<u8>,
    /// The modulus's length in bytes: every signature's length.
    modulus_len: usize,
}

impl PublicKey {
    /// Parse a public key given as PEM (`PUBLIC KEY` or `RSA PUBLIC KEY`), DER, or the DER's
    /// base64.
    pub(crate) fn parse(input: &[u8]) -> Result<Self, SignError> {
        let Ok(text) = std::str::from_utf8(input) else {
            return Self::from_der(input);
        };
        let text = normalise(text);
        if text.is_empty() {
            return Err(SignError::PublicKey(concat!(
                "is empty: pass the App's public key ",
                how!()
            )));
        }
        if !text.contains("-----BEGIN") {
            let compact: String = text.split_whitespace().collect();
            return match STANDARD.decode(compact) {
                Ok(der) => Self::from_der(&der),
                Err(_) => Err(not_a_key()),
            };
        }
        let (label, body) = pem_block(&text).map_err(|_| damaged())?;
        let compact: String = body.split_whitespace().collect();
        let der = STANDARD.decode(compact).map_err(|_| damaged())?;
        match label {
            "PUBLIC KEY" => Self::from_spki(&der),
            "RSA PUBLIC KEY" => Self::from_pkcs1(&der),
            "RSA PRIVATE KEY" | "PRIVATE KEY" | "ENCRYPTED PRIVATE KEY" => {
                Err(SignError::PublicKey(concat!(
                    "is a private key: pass its public half alone ",
                    how!(),
                    ", and keep the private key out of the job"
                )))
            }
            _ => Err(not_a_key()),
        }
    }

    /// DER: a SubjectPublicKeyInfo, or a bare `RSAPublicKey`.
    fn from_der(der: &[u8]) -> Result<Self, SignError> {
        if der.first() != Some(&SEQUENCE) {
            return Err(not_a_key());
        }
        Self::from_spki(der).or_else(|spki| Self::from_pkcs1(der).map_err(|_| spki))
    }

    /// Unwrap a SubjectPublicKeyInfo: `SEQUENCE { SEQUENCE { OID, params }, BIT STRING }`, the
    /// BIT STRING's first byte the count of unused bits (none), then the `RSAPublicKey`.
    fn from_spki(der: &[u8]) -> Result<Self, SignError> {
        let (info, _) = element(der, SEQUENCE).ok_or_else(damaged)?;
        let (algorithm, rest) = element(info, SEQUENCE).ok_or_else(damaged)?;
        let (oid, _) = element(algorithm, OID).ok_or_else(damaged)?;
        if oid != RSA_ENCRYPTION {
            return Err(SignError::PublicKey(
                "is not an RSA key: RS256 needs the App's RSA key, and no other kind (an EC key, say) can sign it",
            ));
        }
        match element(rest, BIT_STRING) {
            Some(([0, pkcs1 @ ..], _)) => Self::from_pkcs1(pkcs1),
            _ => Err(damaged()),
        }
    }

    /// `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }`.
    fn from_pkcs1(der: &[u8]) -> Result<Self, SignError> {
        let (key, rest) = element(der, SEQUENCE).ok_or_else(damaged)?;
        let (modulus, after) = element(key, INTEGER).ok_or_else(damaged)?;
        element(after, INTEGER).ok_or_else(damaged)?;
        // A positive INTEGER whose top bit is set starts with a zero byte.
        let modulus = match modulus {
            [0, rest @ ..] => rest,
            all => all,
        };
        if !(256..=1024).contains(&modulus.len()) {
            return Err(SignError::PublicKey(
                "is not between 2048 and 8192 bits long, as the App's keys are",
            ));
        }
        let used = der.len() - rest.len();
        Ok(Self {
            pkcs1: der[..used].to_vec(),
            modulus_len: modulus.len(),
        })
    }

    /// The length of each of its signatures, in bytes.
    pub(crate) fn modulus_len(&self) -> usize {
        self.modulus_len
    }

    /// Whether `signature` is this key's RS256 signature of `message`.
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), SignError> {
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &self.pkcs1)
            .verify(message, signature)
            .map_err(|_| SignError::Mismatch)
    }

    /// The key as PEM (`RSA PUBLIC KEY`), as a store keeps it.
    pub(crate) fn to_pem(&self) -> String {
        pem("RSA PUBLIC KEY", &self.pkcs1)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey(RSA {} bits)", self.modulus_len * 8)
    }
}

fn not_a_key() -> SignError {
    SignError::PublicKey(concat!(
        "is not a public key in PEM (`PUBLIC KEY` or `RSA PUBLIC KEY`) or DER: pass the App's public key ",
        how!()
    ))
}

fn damaged() -> SignError {
    SignError::PublicKey(concat!("is damaged: pass the whole public key ", how!()))
}

/// The contents of the DER element at the start of `der` if its tag is `tag`, and what follows
/// it. Definite lengths only, as DER has.
fn element(der: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, rest) = rest.split_at(count);
        let len = bytes
            .iter()
            .fold(0usize, |len, byte| len << 8 | usize::from(*byte));
        (len, rest)
    };
    if found != tag || rest.len() < len {
        return None;
    }
    Some(rest.split_at(len))
}

#[cfg(test)]
mod tests {
    use ring::signature::KeyPair;

    use super::*;
    use crate::github::PrivateKey;

    const SPKI_PEM: &[u8] = include_bytes!("../../../tests/fixtures/app-key.pub.pem");
    const PRIVATE: &str = include_str!("../../../tests/fixtures/app-key.pem");
    const EC_PUBLIC: &[u8] = include_bytes!("../../../tests/fixtures/ec-key.pub.pem");

    fn spki_der() -> Vec<u8> {
        let text = std::str::from_utf8(SPKI_PEM).unwrap();
        let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
        STANDARD.decode(body).unwrap()
    }

    /// What `ring` verifies with: the key pair's own `RSAPublicKey`.
    fn pkcs1() -> Vec<u8> {
        let key = PrivateKey::parse(PRIVATE).unwrap();
        key.pair().public_key().as_ref().to_vec()
    }

    #[test]
    fn an_spki_unwraps_to_the_pkcs1_key_ring_verifies_with() {
        let key = PublicKey::parse(SPKI_PEM).unwrap();
        assert_eq!(key.pkcs1, pkcs1());
        assert_eq!(key.modulus_len(), 256);
    }

    #[test]
    fn every_form_of_the_key_is_the_same_key() {
        let from_pem = PublicKey::parse(SPKI_PEM).unwrap();
        let rsa_pem = from_pem.to_pem();
        assert!(
            rsa_pem.starts_with("-----BEGIN RSA PUBLIC KEY-----\n"),
            "{rsa_pem}"
        );
        let escaped = std::str::from_utf8(SPKI_PEM).unwrap().replace('\n', "\\n");
        for form in [
            rsa_pem.into_bytes(),
            spki_der(),
            pkcs1(),
            STANDARD.encode(spki_der()).into_bytes(),
            escaped.into_bytes(),
        ] {
            assert_eq!(PublicKey::parse(&form), Ok(from_pem.clone()));
        }
    }

    #[test]
    fn what_is_not_the_apps_public_key_is_named() {
        let said = |input: &[u8]| PublicKey::parse(input).unwrap_err().to_string();
        assert!(said(PRIVATE.as_bytes()).contains("is a private key"));
        assert!(said(EC_PUBLIC).contains("is not an RSA key"));
        assert!(said(b"").contains("is empty"));
        assert!(said(b"hello there").contains("is not a public key"));
        assert!(said(&spki_der()[..100]).contains("damaged"));
        let mut cut = std::str::from_utf8(SPKI_PEM).unwrap().to_owned();
        cut.replace_range(40..48, "");
        assert!(
            said(cut.as_bytes()).contains("damaged"),
            "{}",
            said(cut.as_bytes())
        );
        assert!(!said(PRIVATE.as_bytes()).contains("MII"));
    }

    #[test]
    fn a_signature_by_the_key_verifies_and_any_other_does_not() {
        let key = PrivateKey::parse(PRIVATE).unwrap();
        let other =
            PrivateKey::parse(include_str!("../../../tests/fixtures/other-key.pem")).unwrap();
        let public = PublicKey::parse(SPKI_PEM).unwrap();
        let sign = |key: &PrivateKey, message: &[u8]| {
            let mut signature = vec![0; 256];
            key.pair()
                .sign(
                    &ring::signature::RSA_PKCS1_SHA256,
                    &ring::rand::SystemRandom::new(),
                    message,
                    &mut signature,
                )
                .unwrap();
            signature
        };
        let signature = sign(&key, b"header.claims");
        assert_eq!(public.verify(b"header.claims", &signature), Ok(()));
        assert_eq!(
            public.verify(b"header.claimz", &signature),
            Err(SignError::Mismatch)
        );
        assert_eq!(
            public.verify(b"header.claims", &sign(&other, b"header.claims")),
            Err(SignError::Mismatch)
        );
    }
}
