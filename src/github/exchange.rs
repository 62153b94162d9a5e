//! Keyless tokens: the job's OIDC identity, exchanged for an installation token at a token
//! exchange service that speaks Octo STS's protocol. No App key is involved on our side.
//!
//! 1. `GET <request URL>&audience=<domain>` with the request token answers
//!    `{"value": "<OIDC JWT>"}`: the job's identity, for the service's audience. The caller knows
//!    where its CI keeps the two (`IdentityRequest`).
//! 2. `GET <service>/sts/exchange?scope=<owner[/repo]>&identity=<policy>` with that JWT answers
//!    `{"token": "…"}`, or an error whose `message` says why; the trust policy decides what the
//!    token may reach.

use reqwest::{Method, Url};
use serde::Deserialize;

use super::apps::{MintedToken, read_minted};
use super::client::{ApiError, Auth, GitHub, Idempotency};
use super::hosts;
use crate::secret::Secret;

/// Where a step asks for the job's identity: the identity service's URL and the request token for
/// it (the Actions runner gives both to the steps of a job).
#[derive(Clone)]
pub(crate) struct IdentityRequest {
    url: Url,
    token: Secret,
}

impl IdentityRequest {
    pub(crate) fn new(url: Url, token: Secret) -> Self {
        Self { url, token }
    }
}

impl std::fmt::Debug for IdentityRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IdentityRequest({})", self.token.fingerprint())
    }
}

/// What one exchange asks for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub(crate) struct Exchange {
    /// The service's base URL (`https://octo-sts.dev`).
    pub(crate) service: Url,
    /// `owner/repo`, or `owner` for a policy of the owner's `.github` repository.
    pub(crate) scope: String,
    /// The trust policy's name (Octo STS calls it the identity).
    pub(crate) policy: String,
}

impl Exchange {
    /// The audience the identity token is asked for: the service's host (and port), as Octo STS
    /// checks it.
    pub(crate) fn audience(&self) -> String {
        hosts::host_and_port(&self.service).unwrap_or_else(|| self.service.to_string())
    }

    fn url(&self) -> Url {
        let mut url = self.service.clone();
        url.set_path(&format!(
            "{}/sts/exchange",
            url.path().trim_end_matches('/')
        ));
        url.query_pairs_mut()
            .append_pair("scope", &self.scope)
            .append_pair("identity", &self.policy);
        url
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ExchangeError {
    #[error("cannot get the job's OIDC identity token ({0})")]
    Identity(String),
    #[error(
        "the token exchange at `{service}` refused the policy `{policy}` for `{scope}`: {message}"
    )]
    Refused {
        service: String,
        scope: String,
        policy: String,
        message: String,
    },
    #[error(transparent)]
    Api(#[from] ApiError),
}

/// The job's identity token for `audience`, from the identity service `request` names.
pub(crate) async fn identity_token(
    gh: &GitHub,
    request: &IdentityRequest,
    audience: &str,
) -> Result<Secret, ExchangeError> {
    #[derive(Deserialize)]
    struct Body {
        value: String,
    }
    let mut url = request.url.clone();
    url.query_pairs_mut().append_pair("audience", audience);
    // The request URL is private to the job: an error says what failed, never the URL (only the
    // debug log's retry lines show it).
    let (_, bytes) = gh
        .send_to(
            Method::GET,
            url,
            Auth::Token(&request.token),
            None,
            Idempotency::Safe,
        )
        .await
        .map_err(|err| match err.status() {
            Some(status) => {
                ExchangeError::Identity(format!("the identity service answered {status}"))
            }
            None => ExchangeError::Identity(err.detail()),
        })?;
    let body: Body = serde_json::from_slice(&bytes).map_err(|_| {
        ExchangeError::Identity("the identity service's answer holds no token".into())
    })?;
    Secret::checked(body.value)
        .map_err(|why| ExchangeError::Identity(format!("the identity service's token {why}")))
}

/// A keyless token: the job's identity token `oidc` (for `wanted.audience()`), exchanged as
/// `wanted` says. The answer has no expiry: an installation token lives an hour from when it
/// was asked for, in GitHub's clock.
pub(crate) async fn mint(
    gh: &GitHub,
    oidc: &Secret,
    wanted: &Exchange,
) -> Result<MintedToken, ExchangeError> {
    let server_now = gh.clock().server_now();
    let answer = gh
        .send_to(
            Method::GET,
            wanted.url(),
            Auth::Token(oidc),
            None,
            Idempotency::CreatesSomething,
        )
        .await;
    let (url, bytes) = match answer {
        Ok(answer) => answer,
        Err(ApiError::Status {
            status, message, ..
        }) if (400..500).contains(&status) => {
            return Err(ExchangeError::Refused {
                service: wanted.service.to_string(),
                scope: wanted.scope.clone(),
                policy: wanted.policy.clone(),
                message: if message.is_empty() {
                    format!("{status}")
                } else {
                    format!("{status}: {message}")
                },
            });
        }
        Err(err) => return Err(err.into()),
    };
    read_minted(&bytes, server_now).map_err(|why| {
        ExchangeError::Api(ApiError::Decode {
            method: Method::GET,
            url,
            detail: why.to_string(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(service: &str) -> Exchange {
        Exchange {
            service: Url::parse(service).unwrap(),
            scope: "octo-org/app".into(),
            policy: "release".into(),
        }
    }

    #[test]
    fn the_audience_is_the_services_host_and_port() {
        assert_eq!(exchange("https://octo-sts.dev").audience(), "octo-sts.dev");
        assert_eq!(
            exchange("http://127.0.0.1:8080").audience(),
            "127.0.0.1:8080"
        );
    }

    #[test]
    fn the_exchange_url_carries_scope_and_identity() {
        assert_eq!(
            exchange("https://sts.example.com/base/").url().as_str(),
            "https://sts.example.com/base/sts/exchange?scope=octo-org%2Fapp&identity=release"
        );
    }
}
