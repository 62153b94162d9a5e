//! The proxy's figures (`exec --proxy`): the time it adds to a request, many clients at once
//! across a refresh, and its peak memory while large bodies stream through it.
//!
//! The clients are the benchmark's own, light enough not to dominate: tokio, rustls and hyper
//! speaking to the proxy as any client does, with what `exec --proxy` gives its child (the
//! proxy's URL, its authority and the token). The child writes those down and waits on its
//! standard input, so the proxy lives until the benchmark closes that, or dies.

use std::convert::Infallible;
use std::fs;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use http_body_util::BodyExt;
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, HOST, PROXY_AUTHORIZATION};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use super::{median, report};
use testkit::ci::CiJob;
use testkit::fake_github::{APP_ID, FakeGitHub};
use testkit::measure::vm_hwm;
use testkit::pem_der;
use testkit::tls::{TestCa, TlsFront};

const API_HOST: &str = "api.github.test";
/// Sequential requests on one connection, each way, interleaved.
const LATENCY_PAIRS: usize = 2000;
const CLIENTS: usize = 64;
const REQUESTS: usize = 10_000;
const BIG_BODY: u64 = 256 << 20;
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

pub async fn figures() {
    let github = FakeGitHub::start().await;
    let ca = TestCa::new("token-keeper bench CA");
    let api = TlsFront::named(&github.url(), API_HOST, &ca);
    // The big bodies go to a sink of ours under the same name: the fake buffers whole bodies.
    let sink = Sink::start().await;
    let sink_front = TlsFront::named(&sink.url(), API_HOST, &ca);
    let fronts = [&api, &sink_front];
    println!("\nexec --proxy, against the fake GitHub behind TLS as {API_HOST}, all on loopback");

    let proxy = Proxied::start(&github, &fronts);
    let direct = Target::direct(&api, &proxy.token);
    latency(&proxy.target(&api), &direct).await;
    let (took, _) = load(&github, &proxy.target(&api), "tokens that outlive the run").await;
    let peak = proxy.end();
    println!("  proxy peak RSS after both: {}", mib(peak));

    // A lifetime whose refresh falls once in a run as long as the last: odd, so the margin
    // (half the lifetime, in whole seconds) does not depend on the second the mint falls in.
    let lifetime = 2 * took.as_secs() + 5;
    let default_lifetime = github.world().token_lifetime;
    github.world().token_lifetime = Duration::from_secs(lifetime);
    let proxy = Proxied::start(&github, &fronts);
    let due = github.world().issued.last().expect("a token").expires_at - (lifetime / 2) as i64;
    let start_at = UNIX_EPOCH + Duration::from_secs(due as u64) - took / 2;
    if let Ok(wait) = start_at.duration_since(SystemTime::now()) {
        tokio::time::sleep(wait).await;
    }
    let what = format!("tokens of {lifetime} s, a refresh due mid-run");
    let (_, mints) = load(&github, &proxy.target(&api), &what).await;
    let peak = proxy.end();
    github.world().token_lifetime = default_lifetime;
    println!("  proxy peak RSS: {}", mib(peak));
    assert_eq!(mints, 1, "one mint for the one refresh due in the run");

    let proxy = Proxied::start(&github, &fronts);
    let (up, down) = transfer(&proxy.target(&sink_front)).await;
    let peak = proxy.end();
    let rate = |took: Duration| BIG_BODY as f64 / (1 << 20) as f64 / took.as_secs_f64();
    println!(
        "exec --proxy, a {} MiB upload, then a {} MiB download\n  up {:.2} s ({:.0} MiB/s), down {:.2} s ({:.0} MiB/s), proxy peak RSS {} (target <= 16 MiB)",
        BIG_BODY >> 20,
        BIG_BODY >> 20,
        up.as_secs_f64(),
        rate(up),
        down.as_secs_f64(),
        rate(down),
        mib(peak)
    );
    sink.stop();
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Sequential requests on one keep-alive connection through the proxy and one straight to the
/// front, one after the other.
async fn latency(proxied: &Target, direct: &Target) {
    let mut through = proxied
        .open()
        .await
        .expect("a connection through the proxy");
    let mut straight = direct.open().await.expect("a connection to the front");
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..LATENCY_PAIRS {
        theirs.push((timed(direct, &mut straight).await, 0));
        ours.push((timed(proxied, &mut through).await, 0));
    }
    report(
        "GET /installation/repositories on one connection, straight to GitHub",
        &theirs,
        "",
    );
    report("the same through exec --proxy", &ours, "");
    let percentile = |runs: &[(Duration, u64)], at: usize| {
        let mut times: Vec<Duration> = runs.iter().map(|r| r.0).collect();
        times.sort();
        times[times.len() * at / 10].as_secs_f64() * 1000.0
    };
    println!(
        "  added by the proxy: median {:.2} ms, p90 {:.2} ms (target median <= 1 ms)",
        (median(&ours).as_secs_f64() - median(&theirs).as_secs_f64()) * 1000.0,
        percentile(&ours, 9) - percentile(&theirs, 9)
    );
}

async fn timed(target: &Target, sender: &mut SendRequest<Zeros>) -> Duration {
    let started = Instant::now();
    let status = target.get(sender).await.expect("a request");
    assert_eq!(status, StatusCode::OK);
    started.elapsed()
}

/// `REQUESTS` over `CLIENTS` connections at once: how long it took and the mints meanwhile.
/// Every error is counted, printed, and fails the benchmark.
async fn load(github: &FakeGitHub, target: &Target, what: &str) -> (Duration, usize) {
    let next = Arc::new(AtomicUsize::new(0));
    let before = github.mints();
    let started = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let (target, next) = (target.clone(), next.clone());
        clients.spawn(async move { client(&target, &next).await });
    }
    let (mut times, mut errors) = (Vec::new(), Vec::new());
    while let Some(done) = clients.join_next().await {
        let (client_times, client_errors) = done.expect("a client task");
        times.extend(client_times.into_iter().map(|t| (t, 0)));
        errors.extend(client_errors);
    }
    let took = started.elapsed();
    let mints = github.mints() - before;
    report(
        &format!("exec --proxy, {CLIENTS} clients at once, {REQUESTS} requests in all, {what}"),
        &times,
        "",
    );
    println!(
        "  {:.2} s in all ({:.0} requests/s), errors {}, mints during the run {mints} (target no error, one mint per refresh)",
        took.as_secs_f64(),
        times.len() as f64 / took.as_secs_f64(),
        errors.len()
    );
    for error in errors.iter().take(5) {
        println!("  error: {error}");
    }
    assert!(errors.is_empty(), "{} requests failed", errors.len());
    assert_eq!(times.len(), REQUESTS, "every request answered");
    (took, mints)
}

/// One client: its own connection, requests until none are left, a new connection after an error.
async fn client(target: &Target, next: &AtomicUsize) -> (Vec<Duration>, Vec<String>) {
    let (mut times, mut errors) = (Vec::new(), Vec::new());
    let mut sender = None;
    while next.fetch_add(1, Ordering::Relaxed) < REQUESTS {
        let started = Instant::now();
        if sender.is_none() {
            match target.open().await {
                Ok(opened) => sender = Some(opened),
                Err(err) => {
                    errors.push(format!("connect: {err}"));
                    continue;
                }
            }
        }
        let Some(open) = sender.as_mut() else {
            continue;
        };
        match target.get(open).await {
            Ok(StatusCode::OK) => times.push(started.elapsed()),
            Ok(status) => errors.push(format!("answer {status}")),
            Err(err) => {
                errors.push(format!("request: {err}"));
                sender = None;
            }
        }
    }
    (times, errors)
}

/// A big upload to the sink, then a big download from it, each timed.
async fn transfer(target: &Target) -> (Duration, Duration) {
    let mut sender = target.open().await.expect("a connection through the proxy");
    let started = Instant::now();
    sender.ready().await.expect("ready");
    let answer = sender
        .send_request(target.request(Method::PUT, "/upload", BIG_BODY))
        .await
        .expect("the upload");
    assert_eq!(answer.status(), StatusCode::OK);
    let received = answer.headers().get("x-received").cloned();
    assert_eq!(
        received.as_ref().and_then(|v| v.to_str().ok()),
        Some(BIG_BODY.to_string().as_str()),
        "the sink got the whole body"
    );
    let up = started.elapsed();
    let started = Instant::now();
    sender.ready().await.expect("ready");
    let answer = sender
        .send_request(target.request(Method::GET, "/download", 0))
        .await
        .expect("the download");
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(
        discard(answer.into_body()).await.expect("its body"),
        BIG_BODY
    );
    (up, started.elapsed())
}

/// Read a body to its end, keeping only its length.
async fn discard(mut body: Incoming) -> Result<u64, hyper::Error> {
    let mut length = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            length += data.len() as u64;
        }
    }
    Ok(length)
}

/// Where a client sends its requests for `api.github.test`: the proxy, or the front itself.
#[derive(Clone)]
struct Target {
    connect_to: SocketAddr,
    /// Through the proxy: its `Proxy-Authorization`.
    proxy_authorization: Option<String>,
    /// `api.github.test:PORT`: the `CONNECT` target and the `Host`.
    host: String,
    tls: TlsConnector,
    token: String,
}

impl Target {
    /// Straight to `front`, trusting its CA.
    fn direct(front: &TlsFront, token: &str) -> Self {
        Self {
            connect_to: SocketAddr::from(([127, 0, 0, 1], front.port())),
            proxy_authorization: None,
            host: format!("{API_HOST}:{}", front.port()),
            tls: connector(&front.ca_pem()),
            token: token.to_owned(),
        }
    }

    /// A keep-alive connection, through the proxy's tunnel when there is one.
    async fn open(&self) -> io::Result<SendRequest<Zeros>> {
        let tcp = TcpStream::connect(self.connect_to).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from(API_HOST).map_err(io::Error::other)?;
        match &self.proxy_authorization {
            None => http(self.tls.connect(name, tcp).await?).await,
            Some(authorization) => {
                let (mut sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                        .await
                        .map_err(io::Error::other)?;
                tokio::spawn(connection.with_upgrades());
                let connect = Request::connect(&self.host)
                    .header(HOST, &self.host)
                    .header(PROXY_AUTHORIZATION, authorization)
                    .body(Zeros(0))
                    .map_err(io::Error::other)?;
                let answer = sender
                    .send_request(connect)
                    .await
                    .map_err(io::Error::other)?;
                if answer.status() != StatusCode::OK {
                    return Err(io::Error::other(format!("CONNECT: {}", answer.status())));
                }
                let tunnel = hyper::upgrade::on(answer).await.map_err(io::Error::other)?;
                http(self.tls.connect(name, TokioIo::new(tunnel)).await?).await
            }
        }
    }

    fn request(&self, method: Method, path: &str, body: u64) -> Request<Zeros> {
        Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, &self.host)
            .header(AUTHORIZATION, format!("Bearer {}", self.token))
            .body(Zeros(body))
            .expect("a request")
    }

    /// `GET /installation/repositories`, its body read: its status.
    async fn get(&self, sender: &mut SendRequest<Zeros>) -> Result<StatusCode, hyper::Error> {
        sender.ready().await?;
        let request = self.request(Method::GET, "/installation/repositories", 0);
        let answer = sender.send_request(request).await?;
        let status = answer.status();
        answer.into_body().collect().await?;
        Ok(status)
    }
}

/// HTTP/1.1 over `io`, its connection driven by a task of its own.
async fn http(
    io: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
) -> io::Result<SendRequest<Zeros>> {
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(io::Error::other)?;
    tokio::spawn(connection);
    Ok(sender)
}

fn connector(ca_pem: &str) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots.add(pem_der(ca_pem).into()).expect("the CA");
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// What the child writes down: its parent (the `exec` process, where the proxy runs), the proxy's
/// URL, the authority's file (node's variable names it alone, the user having set none) and the
/// token. Then it waits for the end of its input.
const CHILD: &str = r#"printf "%s\n" "$PPID" "$HTTPS_PROXY" "$NODE_EXTRA_CA_CERTS" "$GH_TOKEN" >"$1.part" && mv "$1.part" "$1" && { read -r _ || :; }"#;

/// A job outside Actions that ran `setup` for the fake behind `api.github.test`, then
/// `token-keeper exec --proxy` with a child that waits for the end of its input; the store is
/// revoked when it ends.
struct Proxied {
    job: CiJob,
    shell: Option<Child>,
    /// The `exec` process.
    keeper: libc::pid_t,
    proxy: SocketAddr,
    proxy_authorization: String,
    authority_pem: String,
    token: String,
}

impl Proxied {
    /// `fronts` all serve `api.github.test`, each under a CA the store is given.
    fn start(github: &FakeGitHub, fronts: &[&TlsFront]) -> Self {
        let job = CiJob::new(&[
            ("CI_JOB_ID", "bench"),
            ("TOKEN_KEEPER_RESOLVE", &format!("{API_HOST}=127.0.0.1")),
        ]);
        let ca = job.path("github-ca.pem");
        let cas: String = fronts.iter().map(|front| front.ca_pem()).collect();
        fs::write(&ca, cas).expect("the CA file");
        let (out, stderr) = (job.path("child-saw"), job.path("stderr"));
        let setup = format!(
            "token-keeper setup --app-id {APP_ID} --private-key-file '{}' --api-url 'https://{API_HOST}:{}' --git-server-url https://github.test --ca-certificates '{ca}' --owner Octo-Org",
            job.key_file(),
            fronts[0].port()
        );
        let script = format!(
            "set -eu\neval \"$({setup})\"\ntoken-keeper exec --proxy -- sh -c '{CHILD}' sh '{out}'\ntoken-keeper revoke >/dev/null"
        );
        let before = github.mints();
        let shell = job
            .command("bash", &[])
            .arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("bash");
        let mut started = Self {
            job,
            shell: Some(shell),
            keeper: 0,
            proxy: SocketAddr::from(([127, 0, 0, 1], 0)),
            proxy_authorization: String::new(),
            authority_pem: String::new(),
            token: String::new(),
        };
        let saw = started.wait_for(&out);
        let lines: Vec<&str> = saw.lines().collect();
        let [keeper, proxy_url, authority, token] = lines[..] else {
            panic!("the child wrote {} lines, not 4", lines.len());
        };
        started.keeper = keeper.parse().expect("the child's parent");
        let comm = fs::read_to_string(format!("/proc/{keeper}/comm")).unwrap_or_default();
        assert_eq!(
            comm.trim(),
            "token-keeper",
            "the child's parent runs the proxy"
        );
        let url = url::Url::parse(proxy_url).expect("the proxy's URL");
        let pair = format!("{}:{}", url.username(), url.password().unwrap_or_default());
        let basic = base64::engine::general_purpose::STANDARD.encode(pair);
        started.proxy_authorization = format!("Basic {basic}");
        started.proxy = SocketAddr::from(([127, 0, 0, 1], url.port().expect("the proxy's port")));
        started.authority_pem = fs::read_to_string(authority).expect("the authority's file");
        started.token = token.to_owned();
        assert_eq!(github.mints() - before, 1, "setup minted once");
        started
    }

    /// What the child wrote to `path`, once it has.
    fn wait_for(&mut self, path: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(text) = fs::read_to_string(path) {
                return text;
            }
            let exited = self
                .shell
                .as_mut()
                .and_then(|s| s.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                panic!("exec --proxy did not start its child: {}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn stderr(&self) -> String {
        fs::read_to_string(self.job.path("stderr")).unwrap_or_default()
    }

    /// Requests through this proxy to `front`, with the token the child got.
    fn target(&self, front: &TlsFront) -> Target {
        Target {
            connect_to: self.proxy,
            proxy_authorization: Some(self.proxy_authorization.clone()),
            host: format!("{API_HOST}:{}", front.port()),
            tls: connector(&self.authority_pem),
            token: self.token.clone(),
        }
    }

    /// The `exec` process's peak memory in KiB, read while it still runs; then its child's
    /// input ends, and with it the child, the proxy and the job.
    fn end(mut self) -> u64 {
        let peak = vm_hwm(self.keeper).expect("the proxy's VmHWM");
        let status = self.finish().expect("the job's shell");
        assert!(status.success(), "the job failed: {}", self.stderr());
        peak
    }

    fn finish(&mut self) -> Option<std::process::ExitStatus> {
        let mut shell = self.shell.take()?;
        drop(shell.stdin.take());
        shell.wait().ok()
    }
}

impl Drop for Proxied {
    fn drop(&mut self) {
        self.finish();
    }
}

/// A plain-HTTP server on loopback that counts and drops what it is sent, and answers a `GET`
/// with `BIG_BODY` zeros.
struct Sink {
    address: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Sink {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the sink");
        let address = listener.local_addr().expect("the sink's address");
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let service = hyper::service::service_fn(sink);
                connections.spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        Self { address, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Its connections end with it.
    fn stop(self) {
        self.task.abort();
    }
}

async fn sink(request: Request<Incoming>) -> Result<Response<Zeros>, hyper::Error> {
    if request.method() == Method::GET {
        return Ok(Response::new(Zeros(BIG_BODY)));
    }
    let received = discard(request.into_body()).await?;
    let mut answer = Response::new(Zeros(0));
    answer.headers_mut().insert(
        "x-received",
        received.to_string().parse().expect("a number"),
    );
    Ok(answer)
}

/// A body of this many zero bytes, made as it is sent.
struct Zeros(u64);

impl Body for Zeros {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.0 == 0 {
            return Poll::Ready(None);
        }
        let length = self.0.min(ZEROS.len() as u64);
        self.0 -= length;
        let chunk = Bytes::from_static(&ZEROS[..length as usize]);
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.0 == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.0)
    }
}
