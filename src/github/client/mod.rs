//! The HTTP side of GitHub's API: one way to reach it, each call bounded, retried and timed.
//!
//! Every call is bounded by one deadline (git or the runner is waiting) and retried as `retry`
//! decides. GitHub's `Date` header tells us how far its clock is from ours; the offset is kept
//! for every later JWT and handed to the caller to store. Each concern has a file: the bounds
//! and what the environment says of them (`http_env`), the runtime, GitHub's clock, errors, the
//! retry policy and TLS.

mod clock;
mod error;
mod http_env;
mod retry;
mod runtime;
mod tls;

use std::cell::OnceCell;
use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, HeaderMap, USER_AGENT};
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub(crate) use self::clock::Clock;
pub(crate) use self::error::ApiError;
pub(crate) use self::error::cause;
pub(crate) use self::http_env::{HttpEnv, HttpOptions, is_our_proxy, our_proxy_url};
pub(crate) use self::retry::{backoff, fits};
pub(crate) use self::runtime::Runtime;
pub(crate) use self::tls::{ca_certificates, tls_config, trusted_roots};

use self::error::{answer_error, chain};
use self::retry::{Next, Outcome, Tries, Verdict};
use super::jwt;
use super::signer::Signer;
use crate::clock::Offset;
use crate::messages;
use crate::secret::Secret;

/// A GitHub API: where it is, and the CA certificates beyond the system's that may sign its
/// certificate (GHES with a private CA). A store keeps it to re-mint and revoke.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Server {
    #[serde(rename = "api_url")]
    pub(crate) url: Url,
    /// PEM.
    pub(crate) ca_certificates: Option<String>,
}

/// A client for `server` whose calls each end within `deadline`, on a clock that ran
/// `clock_offset` ahead of ours, with the runtime that drives them: the one way every role talks
/// to GitHub.
pub(crate) fn connect(
    server: &Server,
    deadline: Duration,
    clock_offset: Offset,
    http_env: &HttpEnv,
) -> Result<(GitHub, Runtime), ApiError> {
    let options = http_env.options(deadline, server.ca_certificates.clone());
    Ok((
        GitHub::new(server.url.clone(), options, clock_offset)?,
        runtime::runtime()?,
    ))
}

/// The HTTP client of every call we make, to GitHub or elsewhere: rustls on ring with `roots`,
/// the environment's proxies unless the options go past ours, the options' bounds, HTTP/1, and
/// no redirect followed (one would carry our credentials to wherever the answer points).
pub(crate) fn http_client(
    options: &HttpOptions,
    roots: rustls::RootCertStore,
) -> Result<reqwest::Client, ApiError> {
    let mut http = reqwest::Client::builder();
    if let Some(past) = &options.past_our_proxy {
        http = http.no_proxy();
        if let Some(onward) = &past.onward {
            // The value may carry the proxy's credentials: it is named, never shown.
            let proxy = reqwest::Proxy::all(onward.as_str()).map_err(|_| {
                ApiError::Setup(format!(
                    "`{}` is not a proxy URL: give the URL of your own proxy, as `https_proxy` takes it",
                    HttpEnv::ONWARD_PROXY
                ))
            })?;
            let exceptions = past
                .no_proxy
                .as_deref()
                .and_then(reqwest::NoProxy::from_string);
            http = http.proxy(proxy.no_proxy(exceptions));
        }
    }
    for (host, resolved) in &options.resolve {
        // reqwest takes the port from the URL.
        http = http.resolve(host, std::net::SocketAddr::new(resolved.address, 0));
    }
    http.connect_timeout(options.connect_timeout)
        .read_timeout(options.read_timeout)
        .http1_only()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(2)
        .tls_backend_preconfigured(tls::tls_config(roots)?)
        .build()
        .map_err(|e| ApiError::Setup(format!("cannot set up the HTTP client: {}", chain(&e))))
}

/// `request` sent: the answer's status, headers and body, or `None` for a body longer than `max`
/// (what was read of it is dropped).
pub(crate) async fn receive(
    request: reqwest::RequestBuilder,
    max: usize,
) -> Result<(u16, HeaderMap, Option<Vec<u8>>), reqwest::Error> {
    let mut response = request.send().await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > max {
            return Ok((status, headers, None));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status, headers, Some(body)))
}

/// The most of an answer's body we read: GitHub's answers here are a few KiB.
const MAX_BODY: usize = 1024 * 1024;

/// How a request authenticates.
#[derive(Clone, Copy)]
pub(crate) enum Auth<'a> {
    /// As the App: a JWT in GitHub's clock, signed once per request and again only when the
    /// clock's offset moved (a signer may be a command or a KMS round trip).
    App { issuer: &'a str, signer: &'a Signer },
    /// As an installation.
    Token(&'a Secret),
}

/// Whether repeating a request that may have reached GitHub is harmless.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Idempotency {
    Safe,
    /// Creating a token: an attempt that may have reached GitHub but got no answer may have
    /// minted one, so it is repeated only once; refused connections and error answers as usual.
    CreatesSomething,
}

/// A client for one GitHub API base URL.
pub(crate) struct GitHub {
    http: reqwest::Client,
    base: Url,
    options: HttpOptions,
    clock: Clock,
}

impl GitHub {
    /// A client for `base` (e.g. `https://api.github.com` or `https://HOST/api/v3`).
    /// Proxies come from `HTTPS_PROXY`, `HTTP_PROXY` and `NO_PROXY`, in either case.
    fn new(base: Url, options: HttpOptions, clock_offset: Offset) -> Result<Self, ApiError> {
        // Loading the platform's roots takes milliseconds; plain-http loopback needs none.
        let roots = if base.scheme() == "https" {
            tls::trusted_roots(options.extra_ca_pem.as_deref())?
        } else {
            rustls::RootCertStore::empty()
        };
        let http = http_client(&options, roots)?;
        let mut base = base;
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        Ok(Self {
            http,
            base,
            options,
            clock: Clock::new(clock_offset),
        })
    }

    pub(crate) fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The bounds, CAs and proxy choice of its calls, for a client of another service.
    pub(crate) fn options(&self) -> &HttpOptions {
        &self.options
    }

    /// Its HTTP client, to reach another service with the same bounds, roots and proxy choice;
    /// none for a plain-http API, whose client trusts no roots.
    pub(crate) fn tls_client(&self) -> Option<&reqwest::Client> {
        (self.base.scheme() == "https").then_some(&self.http)
    }

    /// How long one call may take, retries and waits included.
    pub(crate) fn deadline(&self) -> Duration {
        self.options.deadline
    }

    /// Send a request and decode a 2xx answer's JSON body.
    pub(crate) async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        auth: Auth<'_>,
        body: Option<&serde_json::Value>,
        idempotency: Idempotency,
    ) -> Result<T, ApiError> {
        let (url, bytes) = self
            .send(method.clone(), path, auth, body, idempotency)
            .await?;
        serde_json::from_slice(&bytes).map_err(|e| ApiError::Decode {
            method,
            url,
            detail: messages::json_error(&e),
        })
    }

    /// Send a request; retry what is worth retrying; hand back a 2xx answer's body.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        auth: Auth<'_>,
        body: Option<&serde_json::Value>,
        idempotency: Idempotency,
    ) -> Result<(String, Vec<u8>), ApiError> {
        let url = self
            .base
            .join(path.trim_start_matches('/'))
            .map_err(|e| ApiError::Setup(format!("bad API path `{path}`: {e}")))?;
        self.send_to(method, url, auth, body, idempotency).await
    }

    /// `send` to a whole URL, which need not be under the base (the job's identity service).
    pub(crate) async fn send_to(
        &self,
        method: Method,
        url: Url,
        auth: Auth<'_>,
        body: Option<&serde_json::Value>,
        idempotency: Idempotency,
    ) -> Result<(String, Vec<u8>), ApiError> {
        let shown = url.to_string();
        let deadline = Instant::now() + self.options.deadline;
        let mut tries = Tries::new(idempotency);
        // The JWT, and the clock offset it was signed at.
        let mut signed: Option<(Offset, Secret)> = None;
        loop {
            let bearer = match auth {
                Auth::App { issuer, signer } => {
                    let offset = self.clock.offset();
                    let jwt = match signed.take() {
                        Some((at, jwt)) if at == offset => jwt,
                        _ => jwt::sign(issuer, signer, self.clock.server_now())
                            .await
                            .map_err(|e| ApiError::Setup(e.to_string()))?,
                    };
                    &signed.insert((offset, jwt)).1
                }
                Auth::Token(token) => token,
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            let attempt = self.attempt(&method, &url, bearer.expose(), body);
            let Ok(result) = tokio::time::timeout(remaining, attempt).await else {
                return Err(self.deadline_error(method, shown, "no answer before the deadline"));
            };
            let (outcome, error) = match result {
                Ok(answer) => {
                    if !answer.oversized {
                        self.clock.learn(&answer.headers);
                    }
                    let outcome = Outcome::of(
                        &answer,
                        self.clock.server_now(),
                        matches!(auth, Auth::App { .. }),
                    );
                    if outcome == Outcome::Answered(Verdict::Success) {
                        return Ok((shown, answer.body));
                    }
                    (
                        outcome,
                        answer_error(method.clone(), shown.clone(), &answer),
                    )
                }
                Err(net) => {
                    let outcome = Outcome::of_network(&net);
                    let detail = cause(&net);
                    let error = match outcome {
                        Outcome::Untrusted => ApiError::Untrusted {
                            url: shown.clone(),
                            detail,
                        },
                        _ => ApiError::Network {
                            method: method.clone(),
                            url: shown.clone(),
                            detail,
                        },
                    };
                    (outcome, error)
                }
            };
            let wait = match tries.next(&outcome) {
                Next::GiveUp => return Err(error),
                Next::RetryNow => continue,
                Next::RetryAfter(wait) => wait,
            };
            let delay = wait.unwrap_or_else(|| backoff(self.options.retry_base, tries.attempts));
            // A server can ask for any wait, even one past the end of time: none outlives the
            // deadline. A wait the server asked for that does not fit: its own answer says most.
            if !fits(Instant::now(), delay, deadline) {
                return Err(match wait {
                    Some(_) => error,
                    None => self.deadline_error(method, shown, &error.detail()),
                });
            }
            tracing::debug!(
                attempt = tries.attempts,
                delay_ms = delay.as_millis() as u64,
                "retrying: {}",
                error.shown()
            );
            tokio::time::sleep(delay).await;
        }
    }

    fn deadline_error(&self, method: Method, url: String, last: &str) -> ApiError {
        ApiError::Deadline {
            method,
            url,
            allowed: self.options.deadline,
            last: last.to_owned(),
        }
    }

    async fn attempt(
        &self,
        method: &Method,
        url: &Url,
        bearer: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Answer, reqwest::Error> {
        let mut request = self
            .http
            .request(method.clone(), url.clone())
            .header(ACCEPT, "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
            .header(
                USER_AGENT,
                concat!("token-keeper/", env!("CARGO_PKG_VERSION")),
            )
            .bearer_auth(bearer);
        if let Some(body) = body {
            request = request.json(body);
        }
        let (status, headers, body) = receive(request, MAX_BODY).await?;
        Ok(Answer {
            status,
            headers,
            oversized: body.is_none(),
            body: body.unwrap_or_default(),
            message: OnceCell::new(),
        })
    }
}

/// One attempt's answer, its body read up to `MAX_BODY`.
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
    /// The body was larger than we read; it was dropped.
    oversized: bool,
    /// The body's `message`, parsed when first asked for: the retry policy and the error both
    /// read it.
    message: OnceCell<String>,
}

impl Answer {
    fn message(&self) -> &str {
        #[derive(serde::Deserialize)]
        struct Body {
            message: Option<String>,
        }
        self.message.get_or_init(|| {
            serde_json::from_slice::<Body>(&self.body)
                .ok()
                .and_then(|b| b.message)
                .unwrap_or_default()
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}
