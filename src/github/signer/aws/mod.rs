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

use std::sync::Arc;

pub(crate) use self::credentials::ActionsIdentity;
pub(crate) use self::error::AwsError;
pub(crate) use self::http::Aws;

use self::endpoints::Service;
use self::kms::Kms;
use crate::env::Env;
use crate::github::GitHub;
use crate::github::exchange::IdentityRequest;
use crate::github::signer::{PublicKey, SignError};

/// The App's key in AWS KMS, as a signer: what names it (nothing secret), and, once a process
/// first signs, the key reached there and its public key. Clones share them.
#[derive(Clone)]
pub(crate) struct AwsKms {
    /// Key id, alias (`alias/…`) or ARN.
    pub(crate) key: String,
    /// The region given, if any; once opened, `region()` is the one in use.
    pub(crate) region: Option<String>,
    opened: Arc<tokio::sync::OnceCell<Opened>>,
}

struct Opened {
    kms: Kms,
    public: PublicKey,
}

impl AwsKms {
    pub(crate) fn new(key: &str, region: Option<&str>) -> Self {
        Self {
            key: key.trim().to_owned(),
            region: region
                .map(|r| r.trim().to_owned())
                .filter(|r| !r.is_empty()),
            opened: Arc::default(),
        }
    }

    /// Open the key once per process: credentials from `env` (the job's identity asked through
    /// `gh` when a role needs it), the public key asked for and checked. Later calls do nothing.
    pub(crate) async fn open(
        &self,
        gh: &GitHub,
        env: &Env,
        identity: Option<&IdentityRequest>,
    ) -> Result<(), AwsError> {
        self.opened
            .get_or_try_init(|| async {
                let aws = Aws::new(gh)?;
                let actions = identity.map(|request| ActionsIdentity { gh, request });
                let kms = reach(aws, env, &self.key, self.region.as_deref(), actions).await?;
                let public = PublicKey::parse(&kms.public_key().await?).map_err(|e| {
                    AwsError::WrongKeyType {
                        key: self.key.clone(),
                        why: e.to_string(),
                    }
                })?;
                Ok(Opened { kms, public })
            })
            .await
            .map(|_| ())
    }

    /// The region in use, once opened.
    pub(crate) fn region(&self) -> Option<&str> {
        match self.opened.get() {
            Some(opened) => Some(&opened.kms.region),
            None => self.region.as_deref(),
        }
    }

    /// KMS's RS256 signature of `message`, checked with the key's public key.
    pub(crate) async fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        let opened = self.opened.get().ok_or_else(|| {
            SignError::Aws(format!(
                "the KMS key `{}` was not opened before signing",
                self.key
            ))
        })?;
        let signature = opened
            .kms
            .sign(message)
            .await
            .map_err(|e| SignError::Aws(e.to_string()))?;
        opened.public.verify(message, &signature)?;
        Ok(signature)
    }
}

impl std::fmt::Debug for AwsKms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AwsKms({} in {:?})", self.key, self.region())
    }
}

/// The key `key` in `region` (or the region `env` names), reached with the credentials `env`
/// configures.
async fn reach(
    aws: Aws,
    env: &Env,
    key: &str,
    region: Option<&str>,
    actions: Option<ActionsIdentity<'_>>,
) -> Result<Kms, AwsError> {
    if key.is_empty() {
        return Err(AwsError::Setup(
            "the KMS key is empty: give its id, alias (`alias/…`) or ARN".into(),
        ));
    }
    let region = endpoints::region(region, env, key)?;
    endpoints::check_key_region(key, &region)?;
    let url = endpoints::endpoint(env, Service::Kms, &region)?;
    let credentials = credentials::find(&aws, env, &region, actions).await?;
    Ok(Kms {
        aws,
        url,
        region,
        key: key.to_owned(),
        credentials,
    })
}

/// For tests against a KMS API: `message` signed by the KMS signer of `key`, with the
/// credentials, endpoints and region `vars` configure; or the one line that says why not.
pub fn sign_for_test(
    vars: &[(&str, &str)],
    key: &str,
    region: Option<&str>,
    message: &[u8],
) -> Result<Vec<u8>, String> {
    let env = Env::from_pairs(vars.iter().copied());
    let http_env = crate::github::client::HttpEnv::from_env(&env).map_err(|e| e.to_string())?;
    let unused = crate::github::client::Server {
        url: url::Url::parse("http://127.0.0.1:9/").map_err(|e| e.to_string())?,
        ca_certificates: None,
    };
    let (gh, runtime) = crate::github::client::connect(
        &unused,
        std::time::Duration::from_secs(20),
        Default::default(),
        &http_env,
    )
    .map_err(|e| e.to_string())?;
    let kms = AwsKms::new(key, region);
    runtime.block_on(async {
        kms.open(&gh, &env, None).await.map_err(|e| e.to_string())?;
        kms.sign(message).await.map_err(|e| e.to_string())
    })
}
