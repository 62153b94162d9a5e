//! The App JWT (RS256) that authenticates us as the App, signed with `ring`.
//!
//! `jsonwebtoken` builds and encodes the token; its signing goes through a small
//! `CryptoProvider` of ours whose RS256 signer is `ring`'s `RsaKeyPair`: `ring` signs in well under
//! a millisecond with no one-time initialisation, which every main step and every re-mint pays.

use std::sync::Once;

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::signature;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use serde::Serialize;

use super::key::{KeyFormat, PrivateKey};

/// GitHub refuses an `iat` in its future; backdating covers small clock drift.
pub const BACKDATE_SECS: i64 = 60;
/// GitHub allows `exp` at most 10 minutes ahead; keep a margin under it.
pub const LIFETIME_SECS: i64 = 540;

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Claims<'a> {
    pub iat: i64,
    pub exp: i64,
    pub iss: &'a str,
}

impl<'a> Claims<'a> {
    /// Claims for `now`, in GitHub's clock (our clock plus the measured offset).
    pub fn new(issuer: &'a str, server_now: i64) -> Self {
        Self {
            iat: server_now - BACKDATE_SECS,
            exp: server_now + LIFETIME_SECS,
            iss: issuer,
        }
    }
}

/// Sign the App JWT for `issuer` (app id or client id) at `server_now` (unix seconds).
pub fn sign(
    issuer: &str,
    key: &PrivateKey,
    server_now: i64,
) -> Result<String, jsonwebtoken::errors::Error> {
    install_provider();
    let der_key = match key.format() {
        KeyFormat::Pkcs1 => EncodingKey::from_rsa_der(key.der()),
        // Tag PKCS#8 so the signer factory knows which parser to use.
        KeyFormat::Pkcs8 => EncodingKey::from_rsa_der(&[PKCS8_TAG, key.der()].concat()),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &Claims::new(issuer, server_now),
        &der_key,
    )
}

const PKCS8_TAG: &[u8] = b"pkcs8:";

static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: ring_signer,
    verifier_factory: no_verifier,
    key_utils: KeyUtils::new_unimplemented(),
};

fn install_provider() {
    static INSTALL: Once = Once::new();
    // A second install attempt only fails if one is in place, which is then ours.
    INSTALL.call_once(|| {
        let _ = PROVIDER.install_default();
    });
}

struct RingRs256(RsaKeyPair);

impl signature::Signer<Vec<u8>> for RingRs256 {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        let mut sig = vec![0; self.0.public().modulus_len()];
        self.0
            .sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), msg, &mut sig)
            .map_err(|_| signature::Error::new())?;
        Ok(sig)
    }
}

impl JwtSigner for RingRs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::RS256
    }
}

fn ring_signer(
    alg: &Algorithm,
    key: &EncodingKey,
) -> jsonwebtoken::errors::Result<Box<dyn JwtSigner>> {
    if *alg != Algorithm::RS256 {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    let bytes = key.as_bytes();
    let pair = match bytes.strip_prefix(PKCS8_TAG) {
        Some(pkcs8) => RsaKeyPair::from_pkcs8(pkcs8),
        None => RsaKeyPair::from_der(bytes),
    }
    .map_err(|_| ErrorKind::InvalidRsaKey("rejected by ring".into()))?;
    Ok(Box::new(RingRs256(pair)))
}

fn no_verifier(
    _: &Algorithm,
    _: &DecodingKey,
) -> jsonwebtoken::errors::Result<Box<dyn JwtVerifier>> {
    Err(ErrorKind::InvalidAlgorithm.into())
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use ring::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};

    use super::*;

    const PKCS1: &str = include_str!("../../tests/fixtures/app-key.pem");
    const PKCS8: &str = include_str!("../../tests/fixtures/app-key.pkcs8.pem");

    fn verify(jwt: &str, key: &PrivateKey) -> serde_json::Value {
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "RS256");
        let signed = format!("{}.{}", parts[0], parts[1]);
        let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        let public = key.key_pair().public().as_ref().to_vec();
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public)
            .verify(signed.as_bytes(), &sig)
            .expect("signature verifies with the public key");
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap()
    }

    #[test]
    fn jwt_is_signed_and_carries_the_claims() {
        for pem in [PKCS1, PKCS8] {
            let key = PrivateKey::parse(pem).unwrap();
            let claims = verify(&sign("Iv23liabc", &key, 1_700_000_000).unwrap(), &key);
            assert_eq!(claims["iss"], "Iv23liabc");
            assert_eq!(claims["iat"], 1_700_000_000 - 60);
            assert_eq!(claims["exp"], 1_700_000_000 + 540);
        }
    }

    #[test]
    fn a_jwt_does_not_verify_with_another_key() {
        let key = PrivateKey::parse(PKCS1).unwrap();
        let other = PrivateKey::parse(include_str!("../../tests/fixtures/other-key.pem")).unwrap();
        let jwt = sign("1", &key, 0).unwrap();
        let parts: Vec<&str> = jwt.rsplitn(2, '.').collect();
        let sig = URL_SAFE_NO_PAD.decode(parts[0]).unwrap();
        let public = other.key_pair().public().as_ref().to_vec();
        assert!(
            UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public)
                .verify(parts[1].as_bytes(), &sig)
                .is_err()
        );
    }
}
