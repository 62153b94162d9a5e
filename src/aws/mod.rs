//! AWS KMS as the App's JWT signer: a key named by id, alias or ARN in a region, its public key
//! asked once, each JWT signed there.
//!
//! Only what that needs of AWS is here, by hand on the project's own HTTP client and ring:
//! SigV4 (`sigv4`), the credential chain (`credentials`, with STS's web identity exchange in
//! `sts`), the endpoint and region variables (`endpoints`), KMS's JSON protocol (`kms`), the
//! transport and AWS's clock (`http`), and the errors (`error`). Nothing secret is kept: the
//! credentials are found again by every process that signs, from its own environment.

mod credentials;
mod endpoints;
mod error;
mod http;
mod kms;
mod sigv4;
mod sts;

use std::time::Duration;

pub(crate) use self::credentials::ActionsIdentity;
pub(crate) use self::error::AwsError;
pub(crate) use self::http::Aws;

use self::credentials::Credentials;
use self::endpoints::Service;
use self::kms::Kms;
use crate::env::Env;
use crate::github::client::Knobs;

/// A KMS key ready to sign: where it is, the credentials that reach it, and its public key.
pub(crate) struct KmsKey {
    aws: Aws,
    url: url::Url,
    region: String,
    key: String,
    credentials: Credentials,
    public_key: Vec<u8>,
}

impl std::fmt::Debug for KmsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KmsKey({} in {})", self.key, self.region)
    }
}

impl KmsKey {
    /// The key `key` in `region` (or the region `env` names), reached with the credentials
    /// `env` configures; its public key asked for and checked to sign RS256.
    pub(crate) async fn open(
        aws: Aws,
        env: &Env,
        key: &str,
        region: Option<&str>,
        actions: Option<ActionsIdentity<'_>>,
    ) -> Result<Self, AwsError> {
        let key = key.trim();
        if key.is_empty() {
            return Err(AwsError::Setup(
                "the KMS key is empty: give its id, alias (`alias/…`) or ARN".into(),
            ));
        }
        let region = endpoints::region(region, env, key)?;
        endpoints::check_key_region(key, &region)?;
        let url = endpoints::endpoint(env, Service::Kms, &region)?;
        let credentials = credentials::find(&aws, env, &region, actions).await?;
        let public_key = Kms {
            aws: &aws,
            url: &url,
            region: &region,
            key,
            credentials: &credentials,
        }
        .public_key()
        .await?;
        Ok(Self {
            aws,
            url,
            region,
            key: key.to_owned(),
            credentials,
            public_key,
        })
    }

    /// The key's public key, DER SubjectPublicKeyInfo.
    pub(crate) fn public_key(&self) -> &[u8] {
        &self.public_key
    }

    /// The RS256 signature of `message`.
    pub(crate) async fn sign(&self, message: &[u8]) -> Result<Vec<u8>, AwsError> {
        Kms {
            aws: &self.aws,
            url: &self.url,
            region: &self.region,
            key: &self.key,
            credentials: &self.credentials,
        }
        .sign(message)
        .await
    }
}

/// For tests against a KMS API: `message` signed with `key`, and the key's public key (DER
/// SubjectPublicKeyInfo), with the credentials, endpoints and region `vars` configure; or the
/// one line that says why not.
pub fn sign_for_test(
    vars: &[(&str, &str)],
    key: &str,
    region: Option<&str>,
    message: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), String> {
    let env = Env::from_pairs(vars.iter().copied());
    let knobs = Knobs::from_env(&env).map_err(|e| e.to_string())?;
    let aws = Aws::new(Duration::from_secs(20), None, 0, &knobs).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let key = KmsKey::open(aws, &env, key, region, None)
            .await
            .map_err(|e| e.to_string())?;
        let signature = key.sign(message).await.map_err(|e| e.to_string())?;
        Ok((signature, key.public_key().to_vec()))
    })
}
