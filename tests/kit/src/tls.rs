//! A TLS-terminating front for the fake GitHub: HTTPS on loopback with a test CA's certificate.
//!
//! The fake GitHub speaks plain HTTP (wiremock); the front ends TLS and relays each connection's
//! bytes to it unchanged, so the binary meets a real handshake against a private CA. It runs on
//! its own thread and runtime because tests block their runtime's thread while the binary runs.

use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// A client that stalls mid-handshake must not hold a task forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// A certificate authority made for one test.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    /// A fresh CA. Two CAs made with the same `name` share their subject but not their key, so
    /// only the signature tells them apart.
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("self-signed CA");
        Self { issuer }
    }

    /// The CA's certificate, PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for `names` and its PKCS#8 key, both DER.
    fn server_cert(&self, names: &[&str]) -> (Vec<u8>, Vec<u8>) {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, &names[0]);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().expect("server key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("sign the server certificate");
        (cert.der().to_vec(), key.serialize_der())
    }
}

/// HTTPS on `127.0.0.1:<random port>`, relayed to a plain-HTTP upstream. Stops when dropped.
pub struct TlsFront {
    addr: SocketAddr,
    ca_pem: String,
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Counts {
    connections: AtomicUsize,
    handshakes: AtomicUsize,
}

impl TlsFront {
    /// A front for `upstream` (`http://127.0.0.1:PORT`) with a certificate from a fresh CA.
    pub fn start(upstream: &str) -> Self {
        Self::signed_by(upstream, &TestCa::new("token-keeper test CA"))
    }

    /// A front whose certificate `ca` signed: pass a CA the client does not trust to see it refuse.
    pub fn signed_by(upstream: &str, ca: &TestCa) -> Self {
        Self::serving(upstream, ca, &["localhost", "127.0.0.1"])
    }

    /// A front under the DNS name `name` (which resolves nowhere: clients are told where it
    /// is), as GitHub serves under a name of its own, with a certificate `ca` signed.
    pub fn named(upstream: &str, name: &str, ca: &TestCa) -> Self {
        Self::serving(upstream, ca, &[name])
    }

    fn serving(upstream: &str, ca: &TestCa, names: &[&str]) -> Self {
        let upstream = upstream_addr(upstream);
        let (cert, key) = ca.server_cert(names);
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        // No process-wide provider is installed (and aws-lc is not built): name ring explicitly.
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.into()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
            )
            .expect("server certificate and key");
        let acceptor = TlsAcceptor::from(Arc::new(config));

        // Bound here, so the port is known before the thread runs.
        let listener = StdListener::bind("127.0.0.1:0").expect("bind the TLS front");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("front address");
        let counts = Arc::new(Counts::default());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("tls-front".into())
            .spawn({
                let (counts, stop) = (counts.clone(), stop.clone());
                move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("the front's runtime");
                    runtime.block_on(serve(listener, acceptor, upstream, counts, stop));
                }
            })
            .expect("spawn the TLS front");
        Self {
            addr,
            ca_pem: ca.pem(),
            counts,
            stop,
            thread: Some(thread),
        }
    }

    /// The API base URL: a name, so the certificate's DNS name is what gets checked.
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The PEM of the CA that signed this front's certificate.
    pub fn ca_pem(&self) -> String {
        self.ca_pem.clone()
    }

    pub fn write_ca(&self, path: &Path) {
        std::fs::write(path, &self.ca_pem).expect("write the CA file");
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.counts.connections.load(Ordering::SeqCst)
    }

    /// TLS handshakes completed so far.
    pub fn handshakes(&self) -> usize {
        self.counts.handshakes.load(Ordering::SeqCst)
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag; dropping its runtime ends every relay.
        let _ = StdStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `host:port` of an `http://host:port` URL.
fn upstream_addr(upstream: &str) -> String {
    let url = url::Url::parse(upstream).expect("upstream URL");
    let host = url.host_str().expect("upstream host");
    let port = url.port_or_known_default().expect("upstream port");
    format!("{host}:{port}")
}

async fn serve(
    listener: StdListener,
    acceptor: TlsAcceptor,
    upstream: String,
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
) {
    let listener = TcpListener::from_std(listener).expect("register the listener");
    loop {
        let accepted = listener.accept().await;
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok((client, _)) = accepted else {
            // E.g. out of descriptors: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        counts.connections.fetch_add(1, Ordering::SeqCst);
        let (acceptor, upstream, counts) = (acceptor.clone(), upstream.clone(), counts.clone());
        tokio::spawn(async move {
            // Whatever goes wrong with one client only drops its connection.
            let _ = relay(client, &acceptor, &upstream, &counts).await;
        });
    }
}

async fn relay(
    client: TcpStream,
    acceptor: &TlsAcceptor,
    upstream: &str,
    counts: &Counts,
) -> std::io::Result<()> {
    let mut tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(client))
        .await
        .map_err(std::io::Error::other)??;
    counts.handshakes.fetch_add(1, Ordering::SeqCst);
    let mut plain = TcpStream::connect(upstream).await?;
    tokio::io::copy_bidirectional(&mut tls, &mut plain).await?;
    Ok(())
}
