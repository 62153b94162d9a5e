//! KMS's JSON protocol, the two calls the App's JWT needs: `GetPublicKey`, checked to be a key
//! that can sign RS256, and `Sign` of the JWT's signing input with `MessageType` `RAW`.
//!
//! KMS hashes a `RAW` message itself (SHA-256 for `RSASSA_PKCS1_V1_5_SHA_256`), as RS256 wants.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::json;
use url::Url;

use super::credentials::Credentials;
use super::error::{Answered, AwsError};
use super::http::{Aws, Call};
use super::sigv4::Scope;
use crate::messages;

/// The one signing algorithm of RS256.
pub(crate) const ALGORITHM: &str = "RSASSA_PKCS1_V1_5_SHA_256";

/// A KMS key and how it is reached: the endpoint of its region, and who asks.
pub(crate) struct Kms {
    pub(crate) aws: Aws,
    pub(crate) url: Url,
    pub(crate) region: String,
    /// Key id, alias (`alias/…`) or ARN.
    pub(crate) key: String,
    pub(crate) credentials: Credentials,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PublicKeyAnswer {
    public_key: String,
    key_usage: Option<String>,
    key_spec: Option<String>,
    customer_master_key_spec: Option<String>,
    /// Absent, or `null` in moto's answer, for a key that does not sign.
    signing_algorithms: Option<Vec<String>>,
}

impl Kms {
    /// The key's public key, DER SubjectPublicKeyInfo, once the key is known to sign RS256.
    pub(crate) async fn public_key(&self) -> Result<Vec<u8>, AwsError> {
        let body = json!({ "KeyId": self.key });
        let answer: PublicKeyAnswer = self.call("GetPublicKey", &body).await?;
        check_signs_rs256(&answer).map_err(|why| AwsError::WrongKeyType {
            key: self.key.clone(),
            why: why.to_string(),
        })?;
        STANDARD
            .decode(answer.public_key.trim())
            .map_err(|e| self.undecodable(format!("its `PublicKey` is not base64 ({e})")))
    }

    /// The key's RS256 signature of `message`.
    pub(crate) async fn sign(&self, message: &[u8]) -> Result<Vec<u8>, AwsError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Signed {
            signature: String,
        }
        let body = json!({
            "KeyId": self.key,
            "Message": STANDARD.encode(message),
            "MessageType": "RAW",
            "SigningAlgorithm": ALGORITHM,
        });
        let answer: Signed = self.call("Sign", &body).await?;
        STANDARD
            .decode(answer.signature.trim())
            .map_err(|e| self.undecodable(format!("its `Signature` is not base64 ({e})")))
    }

    fn undecodable(&self, detail: String) -> AwsError {
        AwsError::Decode {
            service: "KMS".into(),
            detail,
        }
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        action: &str,
        body: &serde_json::Value,
    ) -> Result<T, AwsError> {
        let target = format!("TrentService.{action}");
        let body = body.to_string();
        let call = Call {
            service: "KMS",
            url: &self.url,
            signed: Some((
                &self.credentials,
                Scope {
                    region: &self.region,
                    service: "kms",
                },
            )),
            headers: &[
                ("content-type", "application/x-amz-json-1.1"),
                ("x-amz-target", &target),
            ],
            body: body.as_bytes(),
        };
        match self.aws.post(&call).await? {
            Ok(answer) => serde_json::from_slice(&answer)
                .map_err(|e| self.undecodable(messages::json_error(&e))),
            Err(refused) => Err(self.refused(action, refused)),
        }
    }

    /// The error KMS's refusal of `action` stands for.
    fn refused(&self, action: &str, refused: Answered) -> AwsError {
        if let Some(err) = refused.credentials_error(&self.credentials.from) {
            return err;
        }
        let key = self.key.clone();
        match refused.code.as_str() {
            "NotFoundException" => AwsError::NotFound {
                key,
                region: self.region.clone(),
            },
            "DisabledException" | "KMSInvalidStateException" => AwsError::Disabled {
                key,
                code: refused.code,
            },
            // Real KMS says `InvalidKeyUsageException`; moto says `ValidationException` for a key
            // of the wrong usage or type.
            "InvalidKeyUsageException"
            | "UnsupportedOperationException"
            | "ValidationException" => AwsError::WrongKeyType {
                key,
                why: refused.message,
            },
            "AccessDeniedException" | "AccessDenied" => AwsError::Denied {
                action: format!("kms:{action}"),
                key,
                from: self.credentials.from.clone(),
                message: refused.message,
            },
            _ => refused.into_error("KMS"),
        }
    }
}

/// Why a key cannot sign RS256: its type, its usage or its algorithms (cleaned, as KMS named them).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
enum CannotSignRs256 {
    #[error("it is a `{0}` key, and only RSA keys sign RS256")]
    NotRsa(String),
    #[error("its key usage is `{0}`")]
    Usage(String),
    #[error("it does not offer `{ALGORITHM}`")]
    NoPkcs1Sha256,
}

/// Why a key cannot sign RS256, if it cannot: its usage, its type, its algorithms.
fn check_signs_rs256(answer: &PublicKeyAnswer) -> Result<(), CannotSignRs256> {
    let spec = answer
        .key_spec
        .as_deref()
        .or(answer.customer_master_key_spec.as_deref())
        .unwrap_or("");
    if !spec.is_empty() && !spec.starts_with("RSA_") {
        return Err(CannotSignRs256::NotRsa(messages::foreign(spec)));
    }
    match answer.key_usage.as_deref() {
        Some("SIGN_VERIFY") | None => {}
        Some(other) => {
            return Err(CannotSignRs256::Usage(messages::foreign(other)));
        }
    }
    if !answer
        .signing_algorithms
        .iter()
        .flatten()
        .any(|a| a == ALGORITHM)
    {
        return Err(CannotSignRs256::NoPkcs1Sha256);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(
        spec: Option<&str>,
        legacy: Option<&str>,
        usage: &str,
        algorithms: &[&str],
    ) -> PublicKeyAnswer {
        PublicKeyAnswer {
            public_key: String::new(),
            key_usage: Some(usage.into()),
            key_spec: spec.map(Into::into),
            customer_master_key_spec: legacy.map(Into::into),
            signing_algorithms: Some(algorithms.iter().map(|a| (*a).to_owned()).collect()),
        }
    }

    #[test]
    fn an_rsa_signing_key_with_pkcs1_sha256_signs_rs256() {
        let rsa = answer(
            Some("RSA_2048"),
            None,
            "SIGN_VERIFY",
            &["RSASSA_PSS_SHA_256", ALGORITHM],
        );
        assert_eq!(check_signs_rs256(&rsa), Ok(()));
        // moto gives only the older field.
        let legacy = answer(None, Some("RSA_3072"), "SIGN_VERIFY", &[ALGORITHM]);
        assert_eq!(check_signs_rs256(&legacy), Ok(()));
    }

    #[test]
    fn an_ecc_key_is_refused_by_its_type() {
        let ecc = answer(
            Some("ECC_NIST_P256"),
            None,
            "SIGN_VERIFY",
            &["ECDSA_SHA_256"],
        );
        assert_eq!(
            check_signs_rs256(&ecc).unwrap_err().to_string(),
            "it is a `ECC_NIST_P256` key, and only RSA keys sign RS256"
        );
        let legacy = answer(
            None,
            Some("ECC_NIST_P384"),
            "SIGN_VERIFY",
            &["ECDSA_SHA_384"],
        );
        assert!(check_signs_rs256(&legacy).is_err());
    }

    #[test]
    fn an_encryption_key_is_refused_by_its_usage() {
        let encrypting = answer(Some("RSA_2048"), None, "ENCRYPT_DECRYPT", &[]);
        assert_eq!(
            check_signs_rs256(&encrypting).unwrap_err().to_string(),
            "its key usage is `ENCRYPT_DECRYPT`"
        );
        let pss_only = answer(
            Some("RSA_2048"),
            None,
            "SIGN_VERIFY",
            &["RSASSA_PSS_SHA_256"],
        );
        assert!(
            check_signs_rs256(&pss_only)
                .unwrap_err()
                .to_string()
                .contains(ALGORITHM)
        );
    }
}
