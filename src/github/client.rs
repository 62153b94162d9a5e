//! The HTTP side of GitHub's API: base URL, TLS roots, proxies, timeouts, retries and clock skew.
//!
//! Every call is bounded by one deadline (git or the runner is waiting), retried with exponential
//! backoff and jitter on 5xx, 429, rate-limit 403s and network errors, and never on other 4xx.
//! GitHub's `Date` header tells us how far its clock is from ours; the offset is kept for every
//! later JWT and handed to the caller to store.

use std::future::Future;
use std::mem::ManuallyDrop;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, UNIX_EPOCH};

use reqwest::header::{ACCEPT, HeaderMap, RETRY_AFTER, USER_AGENT};
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;

use super::jwt;
use super::key::PrivateKey;
use crate::clock::unix_now;
use crate::duration::parse_duration;
use crate::messages;
use crate::secret::Secret;

/// Timeouts and bounds of HTTP calls.
#[derive(Debug, Clone)]
pub(crate) struct HttpOptions {
    pub(crate) connect_timeout: Duration,
    /// Longest wait for the next bytes of an answer.
    pub(crate) read_timeout: Duration,
    /// Bound of one call, retries and waits included.
    pub(crate) deadline: Duration,
    /// First backoff step; it doubles after each retry, with jitter.
    pub(crate) retry_base: Duration,
    /// Extra trusted CA certificates, PEM (GHES with a private CA).
    pub(crate) extra_ca_pem: Option<String>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(20),
            deadline: Duration::from_secs(60),
            retry_base: Duration::from_millis(500),
            extra_ca_pem: None,
        }
    }
}

const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The `TOKEN_KEEPER_*` variables that shorten the HTTP bounds (for tests of hanging servers,
/// or a user who would rather fail fast).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Knobs {
    connect_timeout: Option<Duration>,
    read_timeout: Option<Duration>,
    deadline: Option<Duration>,
    retry_base: Option<Duration>,
}

impl Knobs {
    /// Read them through `get` (the process environment, or the step's).
    pub(crate) fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Self, ApiError> {
        let read = |name: &str| -> Result<Option<Duration>, ApiError> {
            match get(name).filter(|v| !v.is_empty()) {
                None => Ok(None),
                Some(text) => parse_duration(&text).map(Some).map_err(|e| {
                    ApiError::Setup(format!("`{name}`: {e}: use for example `5s` or `200ms`"))
                }),
            }
        };
        Ok(Self {
            connect_timeout: read("TOKEN_KEEPER_CONNECT_TIMEOUT")?,
            read_timeout: read("TOKEN_KEEPER_READ_TIMEOUT")?,
            deadline: read("TOKEN_KEEPER_DEADLINE")?,
            retry_base: read("TOKEN_KEEPER_RETRY_BASE")?,
        })
    }

    /// The bounds of calls that may take `deadline` in all, with these applied.
    fn options(&self, deadline: Duration, extra_ca_pem: Option<String>) -> HttpOptions {
        let defaults = HttpOptions::default();
        HttpOptions {
            connect_timeout: self.connect_timeout.unwrap_or(defaults.connect_timeout),
            read_timeout: self.read_timeout.unwrap_or(defaults.read_timeout),
            deadline: self.deadline.map_or(deadline, |d| d.min(deadline)),
            retry_base: self.retry_base.unwrap_or(defaults.retry_base),
            extra_ca_pem,
        }
    }
}

/// A client for the API at `base` whose calls each end within `deadline`, with the runtime that
/// drives them: the one way every role talks to GitHub.
pub(crate) fn connect(
    base: Url,
    deadline: Duration,
    extra_ca_pem: Option<String>,
    clock_offset: i64,
    knobs: &Knobs,
) -> Result<(GitHub, Runtime), ApiError> {
    let options = knobs.options(deadline, extra_ca_pem);
    Ok((GitHub::new(base, options, clock_offset)?, runtime()?))
}

/// The certificates of a PEM text such as the `ca-certificates` input: at least one, all readable.
pub(crate) fn ca_certificates(
    pem: &str,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("is not valid PEM ({e})"))?;
    if certs.is_empty() {
        return Err("holds no certificate".into());
    }
    Ok(certs)
}

/// The offset of GitHub's clock from ours, in seconds (GitHub minus us).
#[derive(Debug, Default)]
pub(crate) struct Clock(AtomicI64);

impl Clock {
    pub(crate) fn new(offset: i64) -> Self {
        Self(AtomicI64::new(offset))
    }

    pub(crate) fn offset(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self, offset: i64) {
        self.0.store(offset, Ordering::Relaxed);
    }

    /// Now in GitHub's clock, unix seconds.
    pub(crate) fn server_now(&self) -> i64 {
        unix_now() + self.offset()
    }
}

/// One thread is plenty for a handful of requests, and starts fastest.
fn runtime() -> Result<Runtime, ApiError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map(|runtime| Runtime(ManuallyDrop::new(runtime)))
        .map_err(|e| ApiError::Setup(format!("cannot start the async runtime: {e}")))
}

/// An async runtime that, when dropped, does not wait for work stuck outside it: a DNS lookup
/// blocked in the system resolver holds a thread of its own, and waiting for that thread would
/// break every time bound we promise.
pub(crate) struct Runtime(ManuallyDrop<tokio::runtime::Runtime>);

impl Runtime {
    pub(crate) fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.0.block_on(future)
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // SAFETY: the runtime is taken once, here, and the wrapper is never used again.
        let runtime = unsafe { ManuallyDrop::take(&mut self.0) };
        runtime.shutdown_background();
    }
}

/// The most of an answer's body we read: GitHub's answers here are a few KiB.
const MAX_BODY: usize = 1024 * 1024;

/// How a request authenticates.
#[derive(Clone, Copy)]
pub(crate) enum Auth<'a> {
    /// As the App: a fresh JWT for every attempt, in GitHub's clock.
    App {
        issuer: &'a str,
        key: &'a PrivateKey,
    },
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

#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("{method} {url} answered {status}{}", message_suffix(.message))]
    Status {
        method: Method,
        url: String,
        status: u16,
        message: String,
    },
    #[error("{method} {url} failed: {detail}")]
    Network {
        method: Method,
        url: String,
        detail: String,
    },
    #[error(
        "{method} {url} got no usable answer within the {}s allowed; last error: {last}",
        .allowed.as_secs()
    )]
    Deadline {
        method: Method,
        url: String,
        allowed: Duration,
        last: String,
    },
    #[error(
        "cannot trust the TLS certificate of {url} ({detail}): for GitHub Enterprise Server with a private CA, pass the CA's certificate in the `ca-certificates` input (`SSL_CERT_FILE` reaches the tools on the runner host, not the action's container)"
    )]
    Untrusted { url: String, detail: String },
    #[error("{method} {url} answered with a body we cannot read: {detail}")]
    Decode {
        method: Method,
        url: String,
        detail: String,
    },
    #[error("{0}")]
    Setup(String),
}

fn message_suffix(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

impl ApiError {
    /// What went wrong, without the request line.
    fn detail(&self) -> String {
        match self {
            ApiError::Status {
                status, message, ..
            } => format!("{status}{}", message_suffix(message)),
            ApiError::Network { detail, .. } => detail.clone(),
            other => other.to_string(),
        }
    }

    pub(crate) fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
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
    pub(crate) fn new(
        base: Url,
        options: HttpOptions,
        clock_offset: i64,
    ) -> Result<Self, ApiError> {
        // Loading the platform's roots takes milliseconds; plain-http loopback needs none.
        let roots = if base.scheme() == "https" {
            trusted_roots(options.extra_ca_pem.as_deref())?
        } else {
            rustls::RootCertStore::empty()
        };
        let http = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .read_timeout(options.read_timeout)
            .http1_only()
            // GitHub's API does not redirect these calls; following one would send a token or a
            // JWT to wherever the answer points.
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(2)
            .tls_backend_preconfigured(tls_config(roots)?)
            .build()
            .map_err(|e| {
                ApiError::Setup(format!("cannot set up the HTTP client: {}", chain(&e)))
            })?;
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
        loop {
            let jwt;
            let bearer = match auth {
                Auth::App { issuer, key } => {
                    jwt = jwt::sign(issuer, key, self.clock.server_now())
                        .map_err(|e| ApiError::Setup(e.to_string()))?;
                    &jwt
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
                        self.learn_offset(&answer.headers);
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
                "retrying: {error}"
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
        let mut response = request.send().await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > MAX_BODY {
                return Ok(Answer {
                    status,
                    headers,
                    body: Vec::new(),
                    oversized: true,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer {
            status,
            headers,
            body,
            oversized: false,
        })
    }

    /// Keep the offset of GitHub's clock, when its `Date` says it drifts from ours.
    fn learn_offset(&self, headers: &HeaderMap) {
        let Some(server) = header_date(headers) else {
            return;
        };
        let measured = server - unix_now();
        // `Date` has one-second resolution: ignore jitter around the known offset.
        if (measured - self.clock.offset()).abs() > 2 {
            self.clock.set(measured);
        }
    }
}

struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
    /// The body was larger than we read; it was dropped.
    oversized: bool,
}

impl Answer {
    fn message(&self) -> String {
        #[derive(serde::Deserialize)]
        struct Body {
            message: Option<String>,
        }
        serde_json::from_slice::<Body>(&self.body)
            .ok()
            .and_then(|b| b.message)
            .unwrap_or_default()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Success,
    /// Worth another attempt, after the wait the server asked for (or our backoff).
    Retry(Option<Duration>),
    /// GitHub refused the JWT's times: retry once with its clock.
    Skew,
    Fail,
}

/// What one attempt came to, as far as the next one is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// GitHub (or a gateway before it) answered, with a status worth `Verdict`.
    Answered(Verdict),
    /// A gateway's 502 or 504: GitHub may have acted on the request before it failed.
    GatewayFailed(Verdict),
    /// No answer. `may_have_arrived` unless the connection itself failed.
    Unanswered { may_have_arrived: bool },
    /// The server's certificate is not trusted: retrying does not change that.
    Untrusted,
    /// The request cannot be built (a header value it cannot carry): it never will be.
    Unbuildable,
    /// The answer was larger than we read.
    Oversized,
}

impl Outcome {
    fn of(answer: &Answer, server_now: i64, app_auth: bool) -> Self {
        if answer.oversized {
            return Outcome::Oversized;
        }
        let verdict = judge(answer, server_now, app_auth);
        match answer.status {
            502 | 504 => Outcome::GatewayFailed(verdict),
            _ => Outcome::Answered(verdict),
        }
    }

    fn of_network(err: &reqwest::Error) -> Self {
        if is_untrusted_certificate(err) {
            Outcome::Untrusted
        } else if err.is_builder() {
            Outcome::Unbuildable
        } else {
            Outcome::Unanswered {
                may_have_arrived: !err.is_connect(),
            }
        }
    }
}

/// What to do after an attempt that did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    GiveUp,
    /// At once: the skew was corrected.
    RetryNow,
    /// After the server's wait, or our backoff.
    RetryAfter(Option<Duration>),
}

/// What one call remembers from attempt to attempt. Pure: the outcome comes in.
#[derive(Debug)]
struct Tries {
    idempotency: Idempotency,
    attempts: u32,
    skew_retried: bool,
    /// Attempts that may have reached GitHub without us seeing its answer.
    unanswered: u32,
}

impl Tries {
    fn new(idempotency: Idempotency) -> Self {
        Self {
            idempotency,
            attempts: 0,
            skew_retried: false,
            unanswered: 0,
        }
    }

    /// A request that may have reached GitHub and created something is repeated once: a flaky
    /// network must not fail the job, and at most one unseen token is left to expire unrevoked
    /// when the repeat succeeds.
    fn next(&mut self, outcome: &Outcome) -> Next {
        self.attempts += 1;
        let creates = self.idempotency == Idempotency::CreatesSomething;
        let verdict = match *outcome {
            Outcome::Untrusted | Outcome::Unbuildable | Outcome::Oversized => return Next::GiveUp,
            Outcome::Unanswered { may_have_arrived } => {
                if creates && may_have_arrived {
                    self.unanswered += 1;
                }
                Verdict::Retry(None)
            }
            Outcome::GatewayFailed(verdict) => {
                if creates {
                    self.unanswered += 1;
                }
                verdict
            }
            Outcome::Answered(verdict) => verdict,
        };
        if self.unanswered > 1 {
            return Next::GiveUp;
        }
        match verdict {
            Verdict::Success | Verdict::Fail => Next::GiveUp,
            Verdict::Skew if !self.skew_retried => {
                self.skew_retried = true;
                Next::RetryNow
            }
            Verdict::Skew => Next::GiveUp,
            Verdict::Retry(wait) => Next::RetryAfter(wait),
        }
    }
}

/// Whether waiting `delay` from `now` still ends before `deadline`; a wait too long for the
/// clock to hold does not.
fn fits(now: Instant, delay: Duration, deadline: Instant) -> bool {
    now.checked_add(delay).is_some_and(|then| then < deadline)
}

fn judge(answer: &Answer, server_now: i64, app_auth: bool) -> Verdict {
    let message = answer.message();
    decide(
        answer.status,
        &message,
        &RateHeaders {
            retry_after: answer.header(RETRY_AFTER.as_str()),
            remaining: answer.header("x-ratelimit-remaining"),
            reset: answer.header("x-ratelimit-reset"),
        },
        server_now,
        app_auth,
    )
}

struct RateHeaders<'a> {
    retry_after: Option<&'a str>,
    remaining: Option<&'a str>,
    reset: Option<&'a str>,
}

/// What to do with an answer. Pure: the time comes in.
fn decide(
    status: u16,
    message: &str,
    rate: &RateHeaders<'_>,
    server_now: i64,
    app_auth: bool,
) -> Verdict {
    let server_wait = || {
        retry_after(rate.retry_after, server_now).or_else(|| {
            (rate.remaining == Some("0"))
                .then(|| rate.reset?.trim().parse::<i64>().ok())
                .flatten()
                .map(|reset| Duration::from_secs(reset.saturating_sub(server_now).max(1) as u64))
        })
    };
    let lower = message.to_ascii_lowercase();
    match status {
        200..=299 => Verdict::Success,
        401 if app_auth && mentions_jwt_times(&lower) => Verdict::Skew,
        429 | 500..=599 => Verdict::Retry(server_wait()),
        403 if lower.contains("rate limit")
            || rate.remaining == Some("0")
            || rate.retry_after.is_some() =>
        {
            Verdict::Retry(server_wait())
        }
        _ => Verdict::Fail,
    }
}

fn mentions_jwt_times(lower_message: &str) -> bool {
    ["'iat'", "'exp'", "issued at", "expiration time"]
        .iter()
        .any(|needle| lower_message.contains(needle))
}

/// `Retry-After` as seconds or as an HTTP date.
fn retry_after(value: Option<&str>, server_now: i64) -> Option<Duration> {
    let value = value?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let at = at.duration_since(UNIX_EPOCH).ok()?.as_secs() as i64;
    Some(Duration::from_secs(
        at.saturating_sub(server_now).max(0) as u64
    ))
}

fn header_date(headers: &HeaderMap) -> Option<i64> {
    let value = headers.get(reqwest::header::DATE)?.to_str().ok()?;
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(UNIX_EPOCH).ok()?.as_secs() as i64)
}

/// Exponential backoff with "equal jitter": between half and all of `base * 2^(attempt-1)`.
fn backoff(base: Duration, attempt: u32) -> Duration {
    let full = base
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(MAX_BACKOFF);
    let mut byte = [0u8; 1];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut byte);
    full / 2 + (full / 2).mul_f64(f64::from(byte[0]) / 255.0)
}

/// The error an answer that was not a success stands for.
fn answer_error(method: Method, url: String, answer: &Answer) -> ApiError {
    if answer.oversized {
        return ApiError::Decode {
            method,
            url,
            detail: format!(
                "{} answered more than {} KiB",
                answer.status,
                MAX_BODY / 1024
            ),
        };
    }
    status_error(method, url, answer)
}

fn status_error(method: Method, url: String, answer: &Answer) -> ApiError {
    ApiError::Status {
        method,
        url,
        status: answer.status,
        message: answer.message(),
    }
}

/// Whether rustls refused the server's certificate, somewhere down the error's sources.
fn is_untrusted_certificate(err: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(mut e) = source {
        // An io::Error hides the error it wraps from `source()`, and may wrap another io::Error.
        while let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            e = inner;
        }
        if matches!(
            e.downcast_ref::<rustls::Error>(),
            Some(rustls::Error::InvalidCertificate(_))
        ) {
            return true;
        }
        source = e.source();
    }
    false
}

/// What lies under reqwest's "error sending request for url (…)": the URL is shown already.
fn cause(err: &reqwest::Error) -> String {
    match std::error::Error::source(err) {
        Some(source) => chain(source),
        None => err.to_string(),
    }
}

/// An error and its sources on one line: reqwest's own text alone hides the cause.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Mozilla's roots, the platform's (`SSL_CERT_FILE`, `SSL_CERT_DIR`) and any given as PEM.
fn trusted_roots(extra_ca_pem: Option<&str>) -> Result<rustls::RootCertStore, ApiError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in rustls_native_certs::load_native_certs().certs {
        // A platform bundle may hold certificates rustls cannot use; skip those.
        let _ = roots.add(cert);
    }
    if let Some(pem) = extra_ca_pem.filter(|p| !p.trim().is_empty()) {
        let certs = ca_certificates(pem).map_err(|why| {
            ApiError::Setup(format!(
                "the `ca-certificates` input {why}: pass one or more `-----BEGIN CERTIFICATE-----` blocks"
            ))
        })?;
        for cert in certs {
            roots.add(cert).map_err(|e| {
                ApiError::Setup(format!(
                    "a certificate in the `ca-certificates` input is unusable: {e}"
                ))
            })?;
        }
    }
    Ok(roots)
}

fn tls_config(roots: rustls::RootCertStore) -> Result<rustls::ClientConfig, ApiError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ApiError::Setup(format!("cannot set up TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: RateHeaders<'static> = RateHeaders {
        retry_after: None,
        remaining: None,
        reset: None,
    };

    #[test]
    fn knobs_shorten_the_bounds_and_a_bad_one_is_named() {
        let get = |name: &str| (name == "TOKEN_KEEPER_DEADLINE").then(|| "3s".to_owned());
        let knobs = Knobs::from_env(get).unwrap();
        let deadline = |allowed| knobs.options(allowed, None).deadline;
        assert_eq!(deadline(Duration::from_secs(20)), Duration::from_secs(3));
        assert_eq!(
            deadline(Duration::from_secs(1)),
            Duration::from_secs(1),
            "never longer"
        );
        assert_eq!(
            Knobs::default()
                .options(Duration::from_secs(20), None)
                .deadline,
            Duration::from_secs(20)
        );
        let bad = |name: &str| (name == "TOKEN_KEEPER_READ_TIMEOUT").then(|| "soon".to_owned());
        let err = Knobs::from_env(bad).unwrap_err().to_string();
        assert!(err.contains("`TOKEN_KEEPER_READ_TIMEOUT`"), "{err}");
    }

    #[test]
    fn a_token_request_without_an_answer_is_repeated_once() {
        let mut tries = Tries::new(Idempotency::CreatesSomething);
        let lost = Outcome::Unanswered {
            may_have_arrived: true,
        };
        assert_eq!(tries.next(&lost), Next::RetryAfter(None));
        assert_eq!(tries.next(&lost), Next::GiveUp);
        let mut tries = Tries::new(Idempotency::CreatesSomething);
        let gateway = Outcome::GatewayFailed(Verdict::Retry(None));
        assert_eq!(tries.next(&gateway), Next::RetryAfter(None));
        assert_eq!(tries.next(&lost), Next::GiveUp, "both may have minted");
    }

    #[test]
    fn refused_connections_and_safe_requests_are_retried_until_the_deadline() {
        let mut tries = Tries::new(Idempotency::CreatesSomething);
        let refused = Outcome::Unanswered {
            may_have_arrived: false,
        };
        for _ in 0..5 {
            assert_eq!(tries.next(&refused), Next::RetryAfter(None));
        }
        let mut tries = Tries::new(Idempotency::Safe);
        let lost = Outcome::Unanswered {
            may_have_arrived: true,
        };
        for _ in 0..5 {
            assert_eq!(tries.next(&lost), Next::RetryAfter(None));
        }
        assert_eq!(tries.attempts, 5);
    }

    #[test]
    fn skew_is_retried_once_at_once() {
        let mut tries = Tries::new(Idempotency::Safe);
        assert_eq!(
            tries.next(&Outcome::Answered(Verdict::Skew)),
            Next::RetryNow
        );
        assert_eq!(tries.next(&Outcome::Answered(Verdict::Skew)), Next::GiveUp);
    }

    #[test]
    fn what_retrying_cannot_mend_is_given_up_at_once() {
        for outcome in [
            Outcome::Untrusted,
            Outcome::Unbuildable,
            Outcome::Oversized,
            Outcome::Answered(Verdict::Fail),
        ] {
            assert_eq!(
                Tries::new(Idempotency::Safe).next(&outcome),
                Next::GiveUp,
                "{outcome:?}"
            );
        }
        let wait = Some(Duration::from_secs(3));
        assert_eq!(
            Tries::new(Idempotency::Safe).next(&Outcome::Answered(Verdict::Retry(wait))),
            Next::RetryAfter(wait)
        );
    }

    #[test]
    fn a_wait_fits_only_before_the_deadline() {
        let now = Instant::now();
        let deadline = now + Duration::from_secs(10);
        assert!(fits(now, Duration::from_secs(9), deadline));
        assert!(!fits(now, Duration::from_secs(10), deadline));
        assert!(!fits(now, Duration::MAX, deadline), "past the end of time");
    }

    #[test]
    fn success_and_plain_client_errors_are_final() {
        assert_eq!(decide(201, "", &NONE, 0, true), Verdict::Success);
        for status in [400, 401, 403, 404, 422] {
            assert_eq!(
                decide(status, "Not Found", &NONE, 0, true),
                Verdict::Fail,
                "{status}"
            );
        }
    }

    #[test]
    fn server_errors_and_429_are_retried() {
        for status in [500, 502, 503, 504, 429] {
            assert_eq!(
                decide(status, "", &NONE, 0, false),
                Verdict::Retry(None),
                "{status}"
            );
        }
    }

    #[test]
    fn retry_after_is_honoured_in_seconds_and_as_a_date() {
        let secs = RateHeaders {
            retry_after: Some("7"),
            ..NONE
        };
        assert_eq!(
            decide(429, "", &secs, 0, false),
            Verdict::Retry(Some(Duration::from_secs(7)))
        );
        let date = RateHeaders {
            retry_after: Some("Thu, 01 Jan 1970 00:00:30 GMT"),
            ..NONE
        };
        assert_eq!(
            decide(503, "", &date, 10, false),
            Verdict::Retry(Some(Duration::from_secs(20)))
        );
    }

    #[test]
    fn waits_from_the_end_of_time_are_read_without_panicking() {
        let huge = RateHeaders {
            retry_after: Some("18446744073709551615"),
            ..NONE
        };
        assert_eq!(
            decide(503, "", &huge, 0, false),
            Verdict::Retry(Some(Duration::from_secs(u64::MAX)))
        );
        for reset in ["-9223372036854775808", "9223372036854775807"] {
            let exhausted = RateHeaders {
                remaining: Some("0"),
                reset: Some(reset),
                ..NONE
            };
            assert!(matches!(
                decide(403, "", &exhausted, 1_700_000_000, false),
                Verdict::Retry(Some(_))
            ));
        }
    }

    #[test]
    fn secondary_rate_limit_403_is_retried() {
        let msg = "You have exceeded a secondary rate limit. Please wait a few minutes.";
        let with_wait = RateHeaders {
            retry_after: Some("3"),
            ..NONE
        };
        assert_eq!(
            decide(403, msg, &with_wait, 0, false),
            Verdict::Retry(Some(Duration::from_secs(3)))
        );
        assert_eq!(decide(403, msg, &NONE, 0, false), Verdict::Retry(None));
    }

    #[test]
    fn exhausted_primary_limit_waits_for_the_reset() {
        let rate = RateHeaders {
            retry_after: None,
            remaining: Some("0"),
            reset: Some("1000"),
        };
        assert_eq!(
            decide(403, "API rate limit exceeded", &rate, 990, false),
            Verdict::Retry(Some(Duration::from_secs(10)))
        );
    }

    #[test]
    fn jwt_time_complaints_are_skew_only_for_app_auth() {
        let msg = "'Expiration time' claim ('exp') is too far in the future";
        assert_eq!(decide(401, msg, &NONE, 0, true), Verdict::Skew);
        assert_eq!(decide(401, msg, &NONE, 0, false), Verdict::Fail);
        let iat = "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued";
        assert_eq!(decide(401, iat, &NONE, 0, true), Verdict::Skew);
        assert_eq!(
            decide(401, "A JSON web token could not be decoded", &NONE, 0, true),
            Verdict::Fail
        );
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let base = Duration::from_millis(100);
        for attempt in 1..=4 {
            let full = base * (1 << (attempt - 1));
            let got = backoff(base, attempt);
            assert!(got >= full / 2 && got <= full, "attempt {attempt}: {got:?}");
        }
        assert!(backoff(base, 30) <= MAX_BACKOFF);
    }

    #[test]
    fn error_chain_is_one_line() {
        let err = std::io::Error::other("outer");
        assert_eq!(chain(&err), "outer");
    }
}
