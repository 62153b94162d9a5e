//! The HTTP side of AWS: the project's client (rustls on ring, extra CAs, proxies, bounds),
//! retries of what is worth retrying, and AWS's clock.
//!
//! AWS refuses a request signed more than five minutes off its clock. A call starts from the
//! offset GitHub's `Date` showed (the runner's drift, kept in the state), and keeps the one AWS's
//! own `Date` shows: a request refused for its time is signed again once, on AWS's clock. The
//! metadata services (container, EC2) are on the link or loopback: they get a client of their
//! own that never goes through a proxy, with short bounds, so that a job off EC2 is not held up.

use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, RequestBuilder, Url};

use super::credentials::Credentials;
use super::error::{Answered, AwsError};
use super::sigv4::{self, Scope, Unsigned};
use crate::github::GitHub;
use crate::github::client::{
    ApiError, Clock, HttpOptions, backoff, cause, fits, http_client, receive, trusted_roots,
};

/// The most of an answer's body we read: AWS's answers here are a few KiB.
const MAX_BODY: usize = 256 << 10;

/// The headers that carry a credential: marked sensitive, so that no debug print of a request
/// shows them.
const CREDENTIAL_HEADERS: [&str; 3] = [
    "authorization",
    "x-amz-security-token",
    "x-aws-ec2-metadata-token",
];

/// How long a metadata service may take to answer one request: off EC2, nothing answers.
pub(crate) const METADATA_TIMEOUT: Duration = Duration::from_secs(1);

/// The clients that reach AWS, with AWS's clock.
pub(crate) struct Aws {
    http: reqwest::Client,
    local: reqwest::Client,
    options: HttpOptions,
    clock: Clock,
}

/// An answer: its status, headers and body.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

impl Answer {
    fn error(&self) -> Answered {
        let header = self
            .headers
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok());
        Answered::read(self.status, header, &self.body)
    }
}

/// One request to an AWS service.
pub(crate) struct Call<'a> {
    /// The service's name in messages (`KMS`, `STS`).
    pub(crate) service: &'a str,
    pub(crate) url: &'a Url,
    /// Signed with these for `scope`; unsigned when `None` (STS's web identity exchange).
    pub(crate) signed: Option<(&'a Credentials, Scope<'a>)>,
    pub(crate) headers: &'a [(&'a str, &'a str)],
    pub(crate) body: &'a [u8],
}

impl Aws {
    /// Clients as `gh`'s (its bounds, CAs and proxy choice: its own client when it has the
    /// roots); AWS's clock starts where `gh`'s is.
    pub(crate) fn new(gh: &GitHub) -> Result<Self, AwsError> {
        let setup = |e: ApiError| AwsError::Setup(e.to_string());
        let options = gh.options();
        let http = match gh.tls_client() {
            Some(http) => http.clone(),
            None => {
                let roots = trusted_roots(options.extra_ca_pem.as_deref()).map_err(setup)?;
                http_client(options, roots).map_err(setup)?
            }
        };
        let local = http_client(
            &options.local(METADATA_TIMEOUT),
            rustls::RootCertStore::empty(),
        )
        .map_err(setup)?;
        Ok(Self {
            http,
            local,
            options: options.clone(),
            clock: Clock::new(gh.clock().offset()),
        })
    }

    /// A POST to an AWS service, signed anew for every attempt; retried on network errors,
    /// throttling and 5xx until the deadline, and once on AWS's clock when refused for its
    /// time. A 2xx answer's body, or the answer that was an error.
    pub(crate) async fn post(
        &self,
        call: &Call<'_>,
    ) -> Result<Result<Vec<u8>, Answered>, AwsError> {
        let deadline = Instant::now() + self.options.deadline;
        let mut attempts = 0;
        let mut skew_retried = false;
        loop {
            attempts += 1;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let attempt = tokio::time::timeout(remaining, self.attempt(call));
            let last = match attempt.await {
                Err(_) => return Err(self.late(call, "no answer before the deadline".into())),
                Ok(Ok(answer)) => {
                    self.clock.learn(&answer.headers);
                    if (200..300).contains(&answer.status) {
                        return Ok(Ok(answer.body));
                    }
                    let error = answer.error();
                    if is_skew(&error) && call.signed.is_some() && !skew_retried {
                        skew_retried = true;
                        continue;
                    }
                    if !is_worth_retrying(&error) {
                        return Ok(Err(error));
                    }
                    format!("{} {}", error.status, error.code)
                }
                Ok(Err(err)) if err.is_builder() => {
                    return Err(AwsError::Setup(format!(
                        "cannot build the request to {}: {}",
                        call.service,
                        cause(&err)
                    )));
                }
                Ok(Err(err)) => cause(&err),
            };
            let delay = backoff(self.options.retry_base, attempts);
            if !fits(Instant::now(), delay, deadline) {
                return Err(self.late(call, last));
            }
            tracing::debug!(attempt = attempts, "retrying {}: {last}", call.service);
            tokio::time::sleep(delay).await;
        }
    }

    fn late(&self, call: &Call<'_>, last: String) -> AwsError {
        AwsError::Deadline {
            service: call.service.to_owned(),
            url: call.url.to_string(),
            allowed: self.options.deadline.as_secs(),
            last,
        }
    }

    async fn attempt(&self, call: &Call<'_>) -> Result<Answer, reqwest::Error> {
        let mut request = self.http.post(call.url.clone());
        for (name, value) in call.headers {
            request = with_header(request, name, value);
        }
        if let Some((credentials, scope)) = call.signed {
            let unsigned = Unsigned {
                method: "POST",
                url: call.url,
                headers: call.headers,
                body: call.body,
            };
            let at = self.clock.server_now();
            for (name, value) in sigv4::sign(&unsigned, credentials, scope, at) {
                request = with_header(request, name, &value);
            }
        }
        read(request.body(call.body.to_vec())).await
    }

    /// One request to a metadata service, within `METADATA_TIMEOUT`, never through a proxy.
    pub(crate) async fn metadata(
        &self,
        method: Method,
        url: Url,
        headers: &[(&str, &str)],
    ) -> Result<Answer, NoAnswer> {
        let mut request = self.local.request(method, url);
        for (name, value) in headers {
            request = with_header(request, name, value);
        }
        match tokio::time::timeout(METADATA_TIMEOUT * 2, read(request)).await {
            Err(_) => Err(NoAnswer::Late((METADATA_TIMEOUT * 2).as_secs())),
            Ok(Err(err)) => Err(NoAnswer::Failed(cause(&err))),
            Ok(Ok(answer)) => Ok(answer),
        }
    }
}

/// Why a metadata service gave no answer: none in time, or the request failed (its cause).
#[derive(Debug, thiserror::Error)]
pub(crate) enum NoAnswer {
    #[error("no answer within {0}s")]
    Late(u64),
    #[error("{0}")]
    Failed(String),
}

/// `request` with the header `name`, marked sensitive when it carries a credential.
fn with_header(request: RequestBuilder, name: &str, value: &str) -> RequestBuilder {
    match HeaderValue::from_str(value) {
        Ok(mut value) => {
            value.set_sensitive(CREDENTIAL_HEADERS.contains(&name));
            request.header(name, value)
        }
        // reqwest refuses the value itself, as an error of the request's building.
        Err(_) => request.header(name, value),
    }
}

/// An answer, its body read up to `MAX_BODY`: a longer one is cut there, and so is no JSON or
/// XML we can read.
async fn read(request: reqwest::RequestBuilder) -> Result<Answer, reqwest::Error> {
    let (status, headers, body) = receive(request, MAX_BODY).await?;
    Ok(Answer {
        status,
        headers,
        body: body.unwrap_or_default(),
    })
}

fn is_skew(error: &Answered) -> bool {
    matches!(
        error.credentials_error(""),
        Some(AwsError::ClockSkew { .. })
    )
}

/// Throttling and the service's own failures pass; the request's faults do not.
fn is_worth_retrying(error: &Answered) -> bool {
    error.status >= 500
        || error.status == 429
        || [
            "ThrottlingException",
            "Throttling",
            "RequestLimitExceeded",
            "KMSInternalException",
        ]
        .contains(&error.code.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(status: u16, code: &str) -> Answered {
        Answered {
            status,
            code: code.into(),
            message: String::new(),
        }
    }

    #[test]
    fn throttling_and_failures_are_retried_and_faults_are_not() {
        assert!(is_worth_retrying(&answered(503, "")));
        assert!(is_worth_retrying(&answered(400, "ThrottlingException")));
        assert!(!is_worth_retrying(&answered(400, "NotFoundException")));
        assert!(!is_worth_retrying(&answered(403, "SignatureDoesNotMatch")));
    }

    #[test]
    fn only_the_headers_that_carry_a_credential_are_sensitive() {
        let client = http_client(&HttpOptions::default(), rustls::RootCertStore::empty());
        let mut request = client.unwrap().post("http://127.0.0.1:9/");
        for name in CREDENTIAL_HEADERS.into_iter().chain(["x-amz-target"]) {
            request = with_header(request, name, "value");
        }
        let request = request.build().unwrap();
        for (name, value) in request.headers() {
            let credential = CREDENTIAL_HEADERS.contains(&name.as_str());
            assert_eq!(value.is_sensitive(), credential, "{name}");
        }
        assert_eq!(request.headers().len(), 4);
    }
}
