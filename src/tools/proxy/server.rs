//! The proxy's connections. A client that does not present the run's secret gets `407` (with
//! `Proxy-Authenticate: Basic`, which git needs before it sends credentials). `CONNECT` to a
//! GitHub host the store serves is ended here, with a certificate from the run's authority, and
//! each request in it goes on to that host with the live token in place of ours; `CONNECT` to
//! any other host is a tunnel of untouched bytes, and a plain-HTTP request goes on untouched.
//!
//! Bodies stream both ways and an `Upgrade` is joined end to end. Redirects are the client's to
//! follow: one to another host goes through a tunnel, with none of our tokens. A request whose
//! TLS name or `Host` is not the host it asked to reach gets no token: it is refused.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, HOST, HeaderValue, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION};
use hyper::http::uri::Authority;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::Shared;
use super::swap::swapped;
use crate::messages;

type Body = BoxBody<Bytes, hyper::Error>;

/// A host that does not answer within this gets the client a `502`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A client that stalls in its handshake must not hold a task for ever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serve every connection `listener` accepts, until the task is dropped.
pub(super) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of descriptors, say: let connections end before taking more.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(gate(shared, request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

/// Admit a client that presents the run's secret, then tunnel, end or forward its request.
async fn gate(shared: Arc<Shared>, request: Request<Incoming>) -> Response<Body> {
    if !admitted(&request, shared.secret.expose()) {
        let mut refused = status(StatusCode::PROXY_AUTHENTICATION_REQUIRED);
        refused.headers_mut().insert(
            PROXY_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"token-keeper\""),
        );
        return refused;
    }
    if request.method() == Method::CONNECT {
        return connect(shared, request);
    }
    match forward_plain(&shared, request).await {
        Ok(response) => response,
        Err(why) => {
            tracing::debug!("proxy: {why}");
            status(StatusCode::BAD_GATEWAY)
        }
    }
}

/// Whether `request` carries `Proxy-Authorization: Basic` with the run's secret as password.
fn admitted(request: &Request<Incoming>, secret: &str) -> bool {
    let Some(value) = request
        .headers()
        .get(PROXY_AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(("Basic" | "basic", encoded)) = value.trim().split_once(' ') else {
        return false;
    };
    let Ok(decoded) = STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let password = decoded
        .iter()
        .position(|b| *b == b':')
        .map_or(&[][..], |at| &decoded[at + 1..]);
    same(password, secret.as_bytes())
}

/// Equal bytes, compared in a time that does not tell how much of them matched.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// Answer `CONNECT host:port` with `200`, then end the TLS of a host we serve, or tunnel.
fn connect(shared: Arc<Shared>, request: Request<Incoming>) -> Response<Body> {
    let Some((host, port)) = request
        .uri()
        .authority()
        .map(|a| (a.host().to_ascii_lowercase(), a.port_u16().unwrap_or(443)))
    else {
        return status(StatusCode::BAD_REQUEST);
    };
    tokio::spawn(async move {
        let upgraded = match hyper::upgrade::on(request).await {
            Ok(upgraded) => TokioIo::new(upgraded),
            Err(err) => return tracing::debug!("proxy: no tunnel: {err}"),
        };
        let outcome = if shared.serves(&host) {
            intercept(&shared, upgraded, &host, port).await
        } else {
            tunnel(&shared, upgraded, &host, port).await
        };
        if let Err(why) = outcome {
            tracing::debug!("proxy: {}:{port}: {why}", messages::foreign(&host));
        }
    });
    status(StatusCode::OK)
}

/// Why a connection through the proxy ended, or a request in it got no answer.
#[derive(Debug, thiserror::Error)]
enum Broken {
    #[error("the client's TLS handshake stalled")]
    ClientStalled,
    #[error("the TLS name is not the CONNECT target")]
    NotTheTarget,
    #[error("no connection to the host")]
    NoConnection,
    #[error("a plain request without its host")]
    NoHost,
    #[error("the host did not answer in time")]
    HostLate,
    #[error("the host's TLS handshake stalled")]
    HostStalled,
    #[error("the user's proxy did not answer in time")]
    ProxyLate,
    #[error("the user's proxy: {0}")]
    ProxyFailed(std::io::Error),
    /// The status it answered with, cleaned.
    #[error("the user's proxy answered `CONNECT` with {0}")]
    ProxyRefused(String),
    #[error(transparent)]
    Authority(anyhow::Error),
    #[error(transparent)]
    Io(std::io::Error),
    #[error(transparent)]
    Http(hyper::Error),
    #[error(transparent)]
    Header(hyper::header::InvalidHeaderValue),
    #[error(transparent)]
    Uri(hyper::http::uri::InvalidUri),
    #[error(transparent)]
    Name(tokio_rustls::rustls::pki_types::InvalidDnsNameError),
}

/// Untouched bytes both ways between the client and `host:port`.
async fn tunnel(
    shared: &Shared,
    mut client: impl AsyncRead + AsyncWrite + Unpin,
    host: &str,
    port: u16,
) -> Result<(), Broken> {
    let mut upstream = dial(shared, host, port).await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream)
        .await
        .map(drop)
        .map_err(Broken::Io)
}

/// End the client's TLS as `host`, and forward each request it sends over one connection of
/// ours to `host`.
async fn intercept(
    shared: &Arc<Shared>,
    client: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
    host: &str,
    port: u16,
) -> Result<(), Broken> {
    let config = shared
        .authority
        .server_config(host)
        .map_err(Broken::Authority)?;
    let accepted =
        tokio::time::timeout(HANDSHAKE_TIMEOUT, TlsAcceptor::from(config).accept(client))
            .await
            .map_err(|_| Broken::ClientStalled)?
            .map_err(Broken::Io)?;
    // The certificate names the CONNECT target: a client that asked for another name gets none.
    let named = accepted.get_ref().1.server_name();
    if !named.is_some_and(|name| name.eq_ignore_ascii_case(host)) {
        return Err(Broken::NotTheTarget);
    }
    let upstream: Arc<Mutex<Option<SendRequest<Incoming>>>> = Arc::default();
    let (shared, host) = (shared.clone(), host.to_owned());
    let service = service_fn(move |request| {
        let (shared, host, upstream) = (shared.clone(), host.clone(), upstream.clone());
        async move {
            let response = match forward(&shared, &host, port, &upstream, request).await {
                Ok(response) => response,
                Err(why) => {
                    tracing::debug!("proxy: {}: {why}", messages::foreign(&host));
                    status(StatusCode::BAD_GATEWAY)
                }
            };
            Ok::<_, Infallible>(response)
        }
    });
    hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(accepted), service)
        .with_upgrades()
        .await
        .map_err(Broken::Http)
}

/// One request to a host we serve: checked to be for it, our token swapped for the live one,
/// sent on the connection of ours to the host (made again when the host closed it).
async fn forward(
    shared: &Shared,
    host: &str,
    port: u16,
    upstream: &Mutex<Option<SendRequest<Incoming>>>,
    mut request: Request<Incoming>,
) -> Result<Response<Body>, Broken> {
    if !for_host(&request, host, port) {
        return Ok(status(StatusCode::MISDIRECTED_REQUEST));
    }
    let ours = |token: &str| shared.is_ours(token);
    let carried = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // Only a request that carries a token of ours waits for a fresh one.
    if let Some(value) = carried.filter(|value| swapped(value, ours, "").is_some()) {
        let live = shared.live().await;
        if let Some(value) = swapped(&value, ours, live.expose()) {
            let value = HeaderValue::from_str(&value).map_err(Broken::Header)?;
            request.headers_mut().insert(AUTHORIZATION, value);
        }
    }
    send_upstream(shared, host, port, upstream, request).await
}

/// Send a request to a host we serve on the connection of ours to it (made again when the host
/// closed it).
async fn send_upstream(
    shared: &Shared,
    host: &str,
    port: u16,
    upstream: &Mutex<Option<SendRequest<Incoming>>>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Broken> {
    tracing::debug!(
        "proxy: {} https://{}{}",
        request.method(),
        messages::shown(host),
        // The path, without its query; a credential in it is taken out, ours or another's.
        messages::shown(&messages::foreign_path(request.uri().path()))
    );
    let mut sender = upstream.lock().await;
    if sender.as_ref().is_none_or(SendRequest::is_closed) {
        let tls = dial_tls(shared, host, port).await?;
        *sender = Some(handshake(tls).await?);
    }
    let Some(sender) = sender.as_mut() else {
        return Err(Broken::NoConnection);
    };
    sender.ready().await.map_err(Broken::Http)?;
    send(sender, request).await
}

/// A plain-HTTP request in absolute form (`GET http://host/path`), sent on as it is (through the
/// user's own proxy, if any): GitHub serves nothing over plain HTTP, so no token of ours is put
/// on one.
async fn forward_plain(
    shared: &Shared,
    mut request: Request<Incoming>,
) -> Result<Response<Body>, Broken> {
    let (host, port) = request
        .uri()
        .authority()
        .map(|a| (a.host().to_owned(), a.port_u16().unwrap_or(80)))
        .ok_or(Broken::NoHost)?;
    request.headers_mut().remove(PROXY_AUTHORIZATION);
    let stream = match shared.onwards.for_host(&host, false) {
        Some(onward) => {
            if let Some(value) = &onward.authorization {
                let value = HeaderValue::from_str(value).map_err(Broken::Header)?;
                request.headers_mut().insert(PROXY_AUTHORIZATION, value);
            }
            connect_to(shared, &onward.host, onward.port).await?
        }
        None => {
            let path = request
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .parse::<Uri>()
                .map_err(Broken::Uri)?;
            *request.uri_mut() = path;
            connect_to(shared, &host, port).await?
        }
    };
    let mut sender = handshake(stream).await?;
    send(&mut sender, request).await
}

/// Send `request` and hand back the answer, its body streaming; an upgrade is joined end to end.
async fn send(
    sender: &mut SendRequest<Incoming>,
    mut request: Request<Incoming>,
) -> Result<Response<Body>, Broken> {
    let client_side = hyper::upgrade::on(&mut request);
    let mut response = sender.send_request(request).await.map_err(Broken::Http)?;
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let host_side = hyper::upgrade::on(&mut response);
        tokio::spawn(async move {
            if let (Ok(client), Ok(host)) = (client_side.await, host_side.await) {
                let _ = tokio::io::copy_bidirectional(
                    &mut TokioIo::new(client),
                    &mut TokioIo::new(host),
                )
                .await;
            }
        });
    }
    Ok(response.map(BodyExt::boxed))
}

/// Whether the request's `Host` names `host` (and `port`, where it is not the default).
fn for_host(request: &Request<Incoming>, host: &str, port: u16) -> bool {
    let Some(named) = request.headers().get(HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Ok(named) = named.parse::<Authority>() else {
        return false;
    };
    named.host().eq_ignore_ascii_case(host) && named.port_u16().unwrap_or(443) == port
}

/// A connection for TLS or a tunnel to `host:port`: through the user's own proxy when they have
/// one for it, else straight.
async fn dial(shared: &Shared, host: &str, port: u16) -> Result<TcpStream, Broken> {
    let Some(onward) = shared.onwards.for_host(host, true) else {
        return connect_to(shared, host, port).await;
    };
    let mut stream = connect_to(shared, &onward.host, onward.port).await?;
    let mut head = format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n");
    if let Some(value) = &onward.authorization {
        head.push_str(&format!("Proxy-Authorization: {value}\r\n"));
    }
    head.push_str("\r\n");
    let answer = tokio::time::timeout(CONNECT_TIMEOUT, async {
        stream.write_all(head.as_bytes()).await?;
        read_head(&mut stream).await
    })
    .await
    .map_err(|_| Broken::ProxyLate)?
    .map_err(Broken::ProxyFailed)?;
    let status = answer
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    if status != "200" {
        return Err(Broken::ProxyRefused(messages::foreign(&status)));
    }
    Ok(stream)
}

/// The head of a proxy's answer to `CONNECT`, read byte by byte so that nothing after it is
/// taken from the tunnel; at most 8 KiB.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 8192 {
            return Err(std::io::Error::other("an answer head over 8 KiB"));
        }
        head.push(stream.read_u8().await?);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// A TCP connection to `host:port`, or to where the caller's `TOKEN_KEEPER_RESOLVE` sends it.
async fn connect_to(shared: &Shared, host: &str, port: u16) -> Result<TcpStream, Broken> {
    let connecting = match shared.http_env.address_of(host) {
        Some(to) => {
            let port = to.port.unwrap_or(port);
            tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((to.address, port))).await
        }
        None => tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host, port))).await,
    };
    let stream = connecting
        .map_err(|_| Broken::HostLate)?
        .map_err(Broken::Io)?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// A TLS connection to `host`, its certificate checked as the keeper's own client checks one.
async fn dial_tls(
    shared: &Shared,
    host: &str,
    port: u16,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Broken> {
    let stream = dial(shared, host, port).await?;
    let name = ServerName::try_from(host.to_owned()).map_err(Broken::Name)?;
    tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        TlsConnector::from(shared.upstream.clone()).connect(name, stream),
    )
    .await
    .map_err(|_| Broken::HostStalled)?
    .map_err(Broken::Io)
}

async fn handshake(
    io: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
) -> Result<SendRequest<Incoming>, Broken> {
    let (sender, connection) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(io))
        .await
        .map_err(Broken::Http)?;
    tokio::spawn(async move {
        let _ = connection.with_upgrades().await;
    });
    Ok(sender)
}

fn status(code: StatusCode) -> Response<Body> {
    let mut response = Response::new(Empty::new().map_err(|never| match never {}).boxed());
    *response.status_mut() = code;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same(b"s3cret", b"s3cret"));
        assert!(!same(b"s3cre", b"s3cret"));
        assert!(!same(b"s3creT", b"s3cret"));
        assert!(!same(b"", b"s3cret"));
    }
}
