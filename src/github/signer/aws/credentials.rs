//! AWS credentials, found in the SDKs' order: the environment's keys, a web identity exchanged
//! at STS, the container's credentials service, then EC2's instance metadata (IMDSv2).
//!
//! They are found again at every use, from the environment of the process that signs: a
//! re-mint in a later step is a new process, and nothing is kept on disk. The first source that
//! is configured is the one used: a broken one is an error naming it, not a reason to try the
//! next, so a job never signs with credentials it did not mean.

use std::fmt;

use reqwest::{Method, Url};
use serde::Deserialize;

use super::error::{AwsError, code_name};
use super::http::Aws;
use super::sts;
use crate::env::Env;
use crate::github::GitHub;
use crate::github::exchange::{self, IdentityRequest};
use crate::messages;
use crate::secret::Secret;

/// The audience AWS's STS takes an OIDC token for.
pub(crate) const STS_AUDIENCE: &str = "sts.amazonaws.com";

const CONTAINER_HOST: &str = "http://169.254.170.2";
const IMDS_ENDPOINT: &str = "http://169.254.169.254";

/// Keys that sign AWS requests.
#[derive(Clone)]
pub(crate) struct Credentials {
    pub(crate) access_key_id: String,
    pub(crate) secret: Secret,
    pub(crate) session_token: Option<Secret>,
    /// Where they came from, as errors name it.
    pub(crate) from: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials(from {}, secret {})", self.from, self.secret)
    }
}

/// Where a job's OIDC identity can be asked for in Actions, for a web identity with no token
/// file.
pub(crate) struct ActionsIdentity<'a> {
    pub(crate) gh: &'a GitHub,
    pub(crate) request: &'a IdentityRequest,
}

/// The credentials `env` configures, for requests in `region`.
pub(crate) async fn find(
    aws: &Aws,
    env: &Env,
    region: &str,
    actions: Option<ActionsIdentity<'_>>,
) -> Result<Credentials, AwsError> {
    if let Some(found) = from_env(env)? {
        return Ok(found);
    }
    if let Some(role) = env.given("AWS_ROLE_ARN") {
        return web_identity(aws, env, region, role, actions).await;
    }
    if let Some(url) = container_url(env)? {
        return container(aws, env, url).await;
    }
    let disabled = env
        .given("AWS_EC2_METADATA_DISABLED")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let mut tried = String::from(
        "`AWS_ACCESS_KEY_ID`, `AWS_ROLE_ARN`, `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` and `_FULL_URI`",
    );
    if disabled {
        tried.push_str("; EC2's instance metadata is off (`AWS_EC2_METADATA_DISABLED`)");
        return Err(AwsError::NoCredentials { tried });
    }
    let endpoint = env
        .given("AWS_EC2_METADATA_SERVICE_ENDPOINT")
        .unwrap_or(IMDS_ENDPOINT);
    match instance_metadata(aws, endpoint).await {
        Ok(found) => Ok(found),
        Err(Imds::Unreachable(why)) => {
            tried.push_str(&format!(
                ", and EC2's instance metadata at {endpoint} ({why})"
            ));
            Err(AwsError::NoCredentials { tried })
        }
        Err(Imds::Broken(why)) => Err(AwsError::Credentials(format!(
            "EC2's instance metadata at {endpoint} gave no credentials: {why}"
        ))),
    }
}

/// `AWS_ACCESS_KEY_ID` with `AWS_SECRET_ACCESS_KEY`, and `AWS_SESSION_TOKEN` when set.
fn from_env(env: &Env) -> Result<Option<Credentials>, AwsError> {
    let id = env.given("AWS_ACCESS_KEY_ID").map(str::trim);
    let secret = env.given("AWS_SECRET_ACCESS_KEY").map(str::trim);
    match (id, secret) {
        (None, None) => Ok(None),
        (Some(id), Some(secret)) => Ok(Some(Credentials {
            access_key_id: id.to_owned(),
            secret: Secret::new(secret.to_owned()),
            session_token: env
                .given("AWS_SESSION_TOKEN")
                .map(|t| Secret::new(t.trim().to_owned())),
            from: "`AWS_ACCESS_KEY_ID`".into(),
        })),
        (Some(_), None) => Err(AwsError::Credentials(
            "`AWS_ACCESS_KEY_ID` is set but `AWS_SECRET_ACCESS_KEY` is not: give both".into(),
        )),
        (None, Some(_)) => Err(AwsError::Credentials(
            "`AWS_SECRET_ACCESS_KEY` is set but `AWS_ACCESS_KEY_ID` is not: give both".into(),
        )),
    }
}

/// The role's credentials for the web identity in `AWS_WEB_IDENTITY_TOKEN_FILE`, or, in
/// Actions with no such file, the job's own OIDC token for STS's audience.
async fn web_identity(
    aws: &Aws,
    env: &Env,
    region: &str,
    role: &str,
    actions: Option<ActionsIdentity<'_>>,
) -> Result<Credentials, AwsError> {
    let role = role.trim();
    let (token, whence) = match env.given("AWS_WEB_IDENTITY_TOKEN_FILE") {
        Some(path) => (
            read_token_file(path, "AWS_WEB_IDENTITY_TOKEN_FILE")?,
            "the token file",
        ),
        None => {
            let actions = actions.ok_or_else(|| {
                AwsError::Credentials(format!(
                    "`AWS_ROLE_ARN` names `{}` but there is no web identity: set `AWS_WEB_IDENTITY_TOKEN_FILE`, or in Actions give the job `permissions: id-token: write`",
                    messages::short(role)
                ))
            })?;
            let token = exchange::identity_token(actions.gh, actions.request, STS_AUDIENCE)
                .await
                .map_err(|e| {
                    AwsError::Credentials(format!(
                        "{e}: assuming `{}` needs the job's identity, with `permissions: id-token: write`",
                        messages::short(role)
                    ))
                })?;
            (token, "the job's OIDC token")
        }
    };
    let session = env.given("AWS_ROLE_SESSION_NAME").unwrap_or(messages::NAME);
    sts::assume_role_with_web_identity(aws, env, region, role, session, &token, whence).await
}

/// A token in a file a variable names, trimmed, and checked as `header_token` checks it.
fn read_token_file(path: &str, variable: &str) -> Result<Secret, AwsError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        AwsError::Credentials(format!(
            "cannot read `{variable}`'s file `{}`: {e}",
            messages::short(path)
        ))
    })?;
    header_token(text.trim()).map_err(|why| {
        AwsError::Credentials(format!(
            "`{variable}`'s file `{}` {why}",
            messages::short(path)
        ))
    })
}

/// A token for a header or STS's form, as AWS's tools hand them over: not empty, no longer
/// than STS takes a web identity, and with no control character, which would end the header.
/// Blanks are allowed: a container's token may be `Basic …`.
fn header_token(token: &str) -> Result<Secret, &'static str> {
    if token.is_empty() {
        return Err("is empty");
    }
    if token.chars().count() > 20_000 {
        return Err("is longer than any web identity STS takes (20,000 characters)");
    }
    if token.chars().any(char::is_control) {
        return Err("has a control character (a line break, say), which no token has");
    }
    Ok(Secret::new(token.to_owned()))
}

/// The container credentials' URL: `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` under ECS's
/// address, else `AWS_CONTAINER_CREDENTIALS_FULL_URI`, which must be https or a host the SDKs
/// allow over http (loopback, ECS's and EKS Pod Identity's link-local addresses).
fn container_url(env: &Env) -> Result<Option<Url>, AwsError> {
    if let Some(relative) = env.given("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") {
        let url = Url::parse(CONTAINER_HOST)
            .and_then(|base| base.join(relative.trim()))
            .map_err(|e| {
                AwsError::Credentials(format!(
                    "`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` is not a path ({e})"
                ))
            })?;
        return Ok(Some(url));
    }
    let Some(full) = env.given("AWS_CONTAINER_CREDENTIALS_FULL_URI") else {
        return Ok(None);
    };
    let url = Url::parse(full.trim()).map_err(|e| {
        AwsError::Credentials(format!(
            "`AWS_CONTAINER_CREDENTIALS_FULL_URI` is not a URL ({e})"
        ))
    })?;
    let allowed = match (url.scheme(), url.host()) {
        ("https", Some(_)) => true,
        ("http", Some(url::Host::Ipv4(ip))) => {
            ip.is_loopback()
                || ip.octets() == [169, 254, 170, 2]
                || ip.octets() == [169, 254, 170, 23]
        }
        ("http", Some(url::Host::Ipv6(ip))) => {
            ip.is_loopback() || ip.segments() == [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23]
        }
        ("http", Some(url::Host::Domain(name))) => name.eq_ignore_ascii_case("localhost"),
        _ => false,
    };
    if !allowed {
        return Err(AwsError::Credentials(
            "`AWS_CONTAINER_CREDENTIALS_FULL_URI` must be https, or http to loopback, 169.254.170.2 or 169.254.170.23: the credentials would cross the network in the clear".into(),
        ));
    }
    Ok(Some(url))
}

/// The answer of the container and instance metadata services.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Served {
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    token: Option<String>,
    code: Option<String>,
    message: Option<String>,
}

/// Why a metadata service's answer gives no credentials.
#[derive(Debug, thiserror::Error)]
enum NotServed {
    /// Not the JSON of credentials: the detail says where.
    #[error("its answer is not credentials ({0})")]
    Unreadable(String),
    /// A failure the service reported, its code and message cleaned.
    #[error("it answered `{code}`: {said}")]
    Failed { code: String, said: String },
    #[error("its answer has no `AccessKeyId` and `SecretAccessKey`")]
    NoKeys,
}

impl Served {
    fn read(body: &[u8], from: String) -> Result<Credentials, NotServed> {
        let served: Served = serde_json::from_slice(body)
            .map_err(|e| NotServed::Unreadable(messages::json_error(&e)))?;
        if let Some(code) = served.code.as_deref().filter(|c| *c != "Success") {
            let said = messages::foreign(served.message.as_deref().unwrap_or(""));
            return Err(NotServed::Failed {
                code: code_name(code),
                said,
            });
        }
        match (served.access_key_id, served.secret_access_key) {
            (Some(id), Some(secret)) if !id.is_empty() && !secret.is_empty() => Ok(Credentials {
                access_key_id: id,
                secret: Secret::new(secret),
                session_token: served.token.filter(|t| !t.is_empty()).map(Secret::new),
                from,
            }),
            _ => Err(NotServed::NoKeys),
        }
    }
}

async fn container(aws: &Aws, env: &Env, url: Url) -> Result<Credentials, AwsError> {
    let auth = match env.given("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") {
        Some(path) => Some(read_token_file(
            path,
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
        )?),
        None => match env.given("AWS_CONTAINER_AUTHORIZATION_TOKEN") {
            Some(token) => Some(header_token(token.trim()).map_err(|why| {
                AwsError::Credentials(format!("`AWS_CONTAINER_AUTHORIZATION_TOKEN` {why}"))
            })?),
            None => None,
        },
    };
    let broken = |why: String| {
        AwsError::Credentials(format!(
            "the container's credentials service at {} gave no credentials: {why}",
            url.origin().ascii_serialization()
        ))
    };
    let headers: Vec<(&str, &str)> = auth
        .iter()
        .map(|token| ("authorization", token.expose()))
        .collect();
    let answer = aws
        .metadata(Method::GET, url.clone(), &headers)
        .await
        .map_err(|why| broken(why.to_string()))?;
    if answer.status != 200 {
        return Err(broken(format!("it answered {}", answer.status)));
    }
    Served::read(&answer.body, "the container's credentials service".into())
        .map_err(|why| broken(why.to_string()))
}

/// Why IMDS gave nothing: not there (off EC2), or there and failing.
enum Imds {
    Unreachable(String),
    Broken(String),
}

/// IMDSv2: a session token, the instance's role, then the role's credentials.
async fn instance_metadata(aws: &Aws, endpoint: &str) -> Result<Credentials, Imds> {
    let base = Url::parse(endpoint).map_err(|e| {
        Imds::Broken(format!(
            "`AWS_EC2_METADATA_SERVICE_ENDPOINT` is not a URL ({e})"
        ))
    })?;
    let url = |path: &str| {
        base.join(path)
            .map_err(|e| Imds::Broken(format!("bad path `{path}`: {e}")))
    };
    let token = aws
        .metadata(
            Method::PUT,
            url("latest/api/token")?,
            &[("x-aws-ec2-metadata-token-ttl-seconds", "300")],
        )
        .await
        .map_err(|why| Imds::Unreachable(why.to_string()))?;
    if token.status != 200 {
        return Err(Imds::Unreachable(format!(
            "its session token was refused with {}",
            token.status
        )));
    }
    let token = Secret::checked(String::from_utf8_lossy(&token.body).trim().to_owned())
        .map_err(|why| Imds::Broken(format!("its session token {why}")))?;
    let session = [("x-aws-ec2-metadata-token", token.expose())];
    let get = |path: String| async move {
        let answer = aws
            .metadata(Method::GET, url(&path)?, &session)
            .await
            .map_err(|why| Imds::Broken(why.to_string()))?;
        match answer.status {
            200 => Ok(answer.body),
            404 => Err(Imds::Broken("the instance has no IAM role".into())),
            status => Err(Imds::Broken(format!("`{path}` answered {status}"))),
        }
    };
    const ROLES: &str = "latest/meta-data/iam/security-credentials/";
    let roles = get(ROLES.into()).await?;
    let roles = String::from_utf8_lossy(&roles);
    let role = roles
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .ok_or_else(|| Imds::Broken("the instance has no IAM role".into()))?;
    let body = get(format!("{ROLES}{role}")).await?;
    Served::read(&body, "EC2's instance metadata".into())
        .map_err(|why| Imds::Broken(why.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environments_keys_come_with_their_session_token() {
        let env = Env::from_pairs([
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            (
                "AWS_SECRET_ACCESS_KEY",
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            ),
            ("AWS_SESSION_TOKEN", "session-token-value"),
        ]);
        let found = from_env(&env).unwrap().unwrap();
        assert_eq!(found.access_key_id, "AKIDEXAMPLE");
        assert_eq!(found.session_token.unwrap().expose(), "session-token-value");
        assert!(from_env(&Env::default()).unwrap().is_none());
    }

    #[test]
    fn half_a_pair_of_keys_is_named() {
        let env = Env::from_pairs([("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")]);
        let err = from_env(&env).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`AWS_ACCESS_KEY_ID` is set but `AWS_SECRET_ACCESS_KEY` is not: give both"
        );
    }

    #[test]
    fn the_secret_is_never_shown() {
        let env = Env::from_pairs([
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            (
                "AWS_SECRET_ACCESS_KEY",
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            ),
        ]);
        let shown = format!("{:?}", from_env(&env).unwrap().unwrap());
        assert!(!shown.contains("wJalr"), "{shown}");
    }

    #[test]
    fn container_urls_are_relative_to_ecs_or_full_and_safe() {
        let relative =
            Env::from_pairs([("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/creds/abc")]);
        assert_eq!(
            container_url(&relative).unwrap().unwrap().as_str(),
            "http://169.254.170.2/v2/creds/abc"
        );
        for ok in [
            "http://127.0.0.1:8080/creds",
            "http://169.254.170.23/v1/credentials",
            "http://[fd00:ec2::23]/v1/credentials",
            "https://creds.example.com/",
            "http://localhost:9/",
        ] {
            let env = Env::from_pairs([("AWS_CONTAINER_CREDENTIALS_FULL_URI", ok)]);
            assert!(container_url(&env).unwrap().is_some(), "{ok}");
        }
        let env = Env::from_pairs([(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "http://10.0.0.5/creds",
        )]);
        assert!(
            container_url(&env)
                .unwrap_err()
                .to_string()
                .contains("must be https")
        );
        assert!(container_url(&Env::default()).unwrap().is_none());
    }

    #[test]
    fn a_served_answer_gives_credentials_or_says_why_not() {
        let body = br#"{"Code":"Success","AccessKeyId":"ASIA1","SecretAccessKey":"s3cr3t-s3cr3t","Token":"tok-tok-tok","Expiration":"2026-12-07T19:00:00Z"}"#;
        let found = Served::read(body, "x".into()).unwrap();
        assert_eq!(found.access_key_id, "ASIA1");
        assert!(found.session_token.is_some());
        let failed = br#"{"Code":"AssumeRoleUnauthorizedAccess","Message":"no role"}"#;
        assert_eq!(
            Served::read(failed, "x".into()).unwrap_err().to_string(),
            "it answered `AssumeRoleUnauthorizedAccess`: no role"
        );
        assert!(Served::read(b"<html>", "x".into()).is_err());
    }

    #[test]
    fn a_token_that_could_break_a_header_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first-line\nx-injected: yes\n").unwrap();
        let err = read_token_file(path.to_str().unwrap(), "AWS_WEB_IDENTITY_TOKEN_FILE");
        assert!(
            err.unwrap_err()
                .to_string()
                .ends_with("has a control character (a line break, say), which no token has")
        );
        assert!(
            header_token("Basic dXNlcjpwYXNz").is_ok(),
            "a blank is a header's"
        );
        assert!(header_token(&"j".repeat(20_000)).is_ok());
        assert!(header_token(&"j".repeat(20_001)).is_err());
        let env = Env::from_pairs([
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1:9/"),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "a\rb"),
        ]);
        let url = container_url(&env).unwrap().unwrap();
        let server = crate::github::client::Server {
            url: url.clone(),
            ca_certificates: None,
        };
        let deadline = std::time::Duration::from_secs(1);
        let (gh, runtime) = crate::github::client::connect(
            &server,
            deadline,
            Default::default(),
            &Default::default(),
        )
        .unwrap();
        let aws = Aws::new(&gh).unwrap();
        let err = runtime.block_on(container(&aws, &env, url)).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("`AWS_CONTAINER_AUTHORIZATION_TOKEN` has a control character"),
            "{err}"
        );
    }

    #[test]
    fn a_served_code_keeps_a_names_characters_only() {
        let failed = br#"{"Code":"Denied_ASIA0123456789\u001b[31m","Message":"m"}"#;
        assert_eq!(
            Served::read(failed, "x".into()).unwrap_err().to_string(),
            "it answered `Denied_ASIAm`: m"
        );
    }
}
