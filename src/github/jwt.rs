//! The App JWT (RS256) that authenticates us as the App.
//!
//! A JWT is two base64url JSON parts, the signing input, and an RS256 signature over them, which
//! the signer gives: the App's key here, or a command or KMS that holds it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

use super::signer::{SignError, Signer};
use crate::clock::ServerTime;
use crate::secret::Secret;

/// GitHub refuses an `iat` in its future; backdating covers small clock drift.
const BACKDATE_SECS: i64 = 60;
/// GitHub allows `exp` at most 10 minutes ahead; keep a margin under it.
const LIFETIME_SECS: i64 = 540;

/// The one header we send.
const HEADER: &str = r#"{"alg":"RS256","typ":"JWT"}"#;

#[derive(Debug, Serialize, PartialEq, Eq)]
pub(crate) struct Claims<'a> {
    pub(crate) iat: ServerTime,
    pub(crate) exp: ServerTime,
    pub(crate) iss: &'a str,
}

impl<'a> Claims<'a> {
    /// Claims for `now`, in GitHub's clock (our clock plus the measured offset).
    pub(crate) fn new(issuer: &'a str, server_now: ServerTime) -> Self {
        Self {
            iat: ServerTime(server_now.0 - BACKDATE_SECS),
            exp: ServerTime(server_now.0 + LIFETIME_SECS),
            iss: issuer,
        }
    }
}

/// The signing input for `issuer` at `server_now`: `base64url(header).base64url(claims)`. Not
/// a secret on its own: without the signature it is no credential.
fn signing_input(issuer: &str, server_now: ServerTime) -> String {
    let mut input = URL_SAFE_NO_PAD.encode(HEADER);
    input.push('.');
    // Claims of two numbers and a string always serialise.
    let claims = serde_json::to_vec(&Claims::new(issuer, server_now)).unwrap_or_default();
    URL_SAFE_NO_PAD.encode_string(claims, &mut input);
    input
}

/// Sign the App JWT for `issuer` (app id or client id) at `server_now`. It is a
/// secret: for ten minutes it acts as the App, on every installation.
pub(crate) async fn sign(
    issuer: &str,
    signer: &Signer,
    server_now: ServerTime,
) -> Result<Secret, SignError> {
    let mut jwt = signing_input(issuer, server_now);
    let signature = signer.sign(jwt.as_bytes()).await?;
    jwt.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut jwt);
    Ok(Secret::new(jwt))
}

#[cfg(test)]
mod tests {
    use ring::signature::{KeyPair, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};

    use super::*;
    use crate::github::PrivateKey;

    const PKCS1: &str = include_str!("../../tests/fixtures/app-key.pem");
    const PKCS8: &str = include_str!("../../tests/fixtures/app-key.pkcs8.pem");

    fn verify(jwt: &str, key: &PrivateKey) -> serde_json::Value {
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header, serde_json::json!({"alg": "RS256", "typ": "JWT"}));
        let signed = format!("{}.{}", parts[0], parts[1]);
        let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        let public = key.pair().public_key().as_ref().to_vec();
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public)
            .verify(signed.as_bytes(), &sig)
            .expect("signature verifies with the public key");
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn jwt_is_signed_and_carries_the_claims() {
        for pem in [PKCS1, PKCS8] {
            let key = PrivateKey::parse(pem).unwrap();
            let signer = Signer::Key(key.clone());
            let jwt = sign("Iv23liabc", &signer, ServerTime(1_700_000_000))
                .await
                .unwrap();
            let claims = verify(jwt.expose(), &key);
            assert_eq!(claims["iss"], "Iv23liabc");
            assert_eq!(claims["iat"], 1_700_000_000 - 60);
            assert_eq!(claims["exp"], 1_700_000_000 + 540);
        }
    }

    #[tokio::test]
    async fn a_jwt_does_not_verify_with_another_key() {
        let key = PrivateKey::parse(PKCS1).unwrap();
        let other = PrivateKey::parse(include_str!("../../tests/fixtures/other-key.pem")).unwrap();
        let jwt = sign("1", &Signer::Key(key), ServerTime(0)).await.unwrap();
        let parts: Vec<&str> = jwt.expose().rsplitn(2, '.').collect();
        let sig = URL_SAFE_NO_PAD.decode(parts[0]).unwrap();
        let public = other.pair().public_key().as_ref().to_vec();
        assert!(
            UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public)
                .verify(parts[1].as_bytes(), &sig)
                .is_err()
        );
    }
}
