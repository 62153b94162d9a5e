//! The proxy's certificate authority: made for one run, its key never leaving the process, and allowed to vouch only for the hosts the proxy serves.
//!
//! The CA's key exists only in this process's memory, so a certificate for a served host can only
//! come from here, and only while the run lasts. Its name constraints keep the CA, once trusted by
//! a child, from vouching for any other host even if it leaked. Leaves are shaped for OpenSSL's
//! strict checks (Python 3.13's default): an authority key identifier, a critical SAN under an
//! empty subject, and a random serial (rcgen's default serial is derived from the key).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, GeneralSubtree, IsCa, KeyPair, KeyUsagePurpose, NameConstraints,
    SerialNumber, date_time_ymd,
};
use ring::rand::{SecureRandom, SystemRandom};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::clock::LocalTime;
use crate::messages::short;

/// Valid from an hour ago, so a child whose clock runs a little behind ours still accepts it.
const BACKDATED: u64 = 60 * 60;
/// Longer than the longest job (5 days on a self-hosted runner, 6 hours on GitHub's), so no run
/// sees its certificates expire; short enough that a leaked key soon stops mattering.
const LIFETIME: u64 = 6 * 24 * 60 * 60;
/// Random bytes in a leaf's serial (RFC 5280 allows up to 20).
const SERIAL_BYTES: usize = 16;

pub(crate) struct Authority {
    ca: CertifiedIssuer<'static, KeyPair>,
    hosts: Vec<String>,
    made: u64,
    leaves: Mutex<HashMap<String, Arc<rustls::ServerConfig>>>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("hosts", &self.hosts)
            .finish_non_exhaustive()
    }
}

impl Authority {
    /// A CA for `hosts` (lower-case DNS names), valid around `now`.
    pub(crate) fn new(hosts: &[String], now: LocalTime) -> Result<Self> {
        if hosts.is_empty() {
            bail!("the proxy needs at least one host to serve");
        }
        for host in hosts {
            if host.parse::<IpAddr>().is_ok() {
                bail!(
                    "`{}` is an IP address: the proxy serves host names only",
                    short(host)
                );
            }
            if !is_host_name(host) {
                bail!("`{}` is not a lower-case host name", short(host));
            }
        }
        let made = u64::try_from(now.0).context("the clock reads before 1970")?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        let suffix: String = random::<4>()?.iter().map(|b| format!("{b:02x}")).collect();
        let name = format!("token-keeper proxy {suffix}");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.name_constraints = Some(NameConstraints {
            permitted_subtrees: hosts.iter().cloned().map(GeneralSubtree::DnsName).collect(),
            excluded_subtrees: Vec::new(),
        });
        params.serial_number = Some(serial()?);
        set_validity(&mut params, made);
        let key = KeyPair::generate().context("cannot make the proxy's CA key")?;
        let ca = CertifiedIssuer::self_signed(params, key)
            .context("cannot make the proxy's CA certificate")?;
        Ok(Self {
            ca,
            hosts: hosts.to_vec(),
            made,
            leaves: Mutex::new(HashMap::new()),
        })
    }

    /// The CA certificate, PEM, for the trust bundles of the commands the proxy serves.
    pub(crate) fn ca_pem(&self) -> String {
        super::certificate_pem(self.ca.der())
    }

    /// The TLS server settings for `host`, one of ours (any case): its leaf is issued once.
    pub(crate) fn server_config(&self, host: &str) -> Result<Arc<rustls::ServerConfig>> {
        let host = host.to_ascii_lowercase();
        if !self.hosts.contains(&host) {
            bail!("`{}` is not a host the proxy serves", short(&host));
        }
        let mut leaves = self.leaves.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(config) = leaves.get(&host) {
            return Ok(config.clone());
        }
        let (leaf, key) = self.leaf(&host)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("cannot set up the proxy's TLS")?
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone(), self.ca.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .with_context(|| format!("cannot use the certificate for `{host}`"))?;
        // Only HTTP/1.1: the proxy reads requests one by one, and h2 clients fall back to it.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let config = Arc::new(config);
        leaves.insert(host, config.clone());
        Ok(config)
    }

    /// A leaf for `host` and its key; whether the host is ours is the caller's check.
    fn leaf(&self, host: &str) -> Result<(Certificate, KeyPair)> {
        let mut params = CertificateParams::new(vec![host.to_owned()])
            .with_context(|| format!("`{}` cannot be named in a certificate", short(host)))?;
        // An empty subject makes rcgen mark the SAN critical, as strict verifiers require.
        params.distinguished_name = DistinguishedName::new();
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(serial()?);
        set_validity(&mut params, self.made);
        let key = KeyPair::generate().context("cannot make a key for the proxy")?;
        let leaf = params
            .signed_by(&key, &self.ca)
            .with_context(|| format!("cannot issue a certificate for `{host}`"))?;
        Ok((leaf, key))
    }
}

/// Whether `host` is a DNS name in lower case: dot-separated labels of letters, digits and `-`,
/// within DNS's lengths.
fn is_host_name(host: &str) -> bool {
    host.len() <= 253
        && host.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// The same window for the CA and every leaf, so no leaf outlives its CA.
fn set_validity(params: &mut CertificateParams, made: u64) {
    let epoch = date_time_ymd(1970, 1, 1);
    params.not_before = epoch + Duration::from_secs(made.saturating_sub(BACKDATED));
    params.not_after = epoch + Duration::from_secs(made.saturating_add(LIFETIME));
}

/// A positive serial of exactly `SERIAL_BYTES` bytes: the top bit clear, the first byte non-zero.
fn serial() -> Result<SerialNumber> {
    let mut bytes = random::<SERIAL_BYTES>()?;
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

fn random<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0; N];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow!("the system gave no random bytes"))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    use rustls::{CertificateError, ClientConfig, ClientConnection, Connection, ServerConnection};

    use super::*;

    fn authority() -> Authority {
        let hosts = ["api.github.com".to_owned(), "github.com".to_owned()];
        Authority::new(&hosts, crate::clock::unix_now()).unwrap()
    }

    /// A client that trusts only `ca_pem` and offers h2 before HTTP/1.1.
    fn client(ca_pem: &str, name: &str) -> Connection {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let name = ServerName::try_from(name.to_owned()).unwrap();
        ClientConnection::new(Arc::new(config), name)
            .unwrap()
            .into()
    }

    /// Both ends of a handshake in memory, until both are done or one refuses.
    fn handshake(client: &mut Connection, server: &mut Connection) -> Result<(), rustls::Error> {
        while client.is_handshaking() || server.is_handshaking() {
            send(client, server)?;
            send(server, client)?;
        }
        Ok(())
    }

    fn send(from: &mut Connection, to: &mut Connection) -> Result<(), rustls::Error> {
        let mut bytes = Vec::new();
        from.write_tls(&mut bytes).unwrap();
        let mut unread = &bytes[..];
        while !unread.is_empty() {
            to.read_tls(&mut unread).unwrap();
        }
        to.process_new_packets().map(|_| ())
    }

    fn server(authority: &Authority, host: &str) -> Connection {
        ServerConnection::new(authority.server_config(host).unwrap())
            .unwrap()
            .into()
    }

    /// A certificate's serial: the third element of its to-be-signed part, in DER.
    fn serial_of(cert: &[u8]) -> Vec<u8> {
        fn content(der: &[u8]) -> (&[u8], &[u8]) {
            let (len, at) = match der[1] {
                n if n < 0x80 => (usize::from(n), 2),
                n => {
                    let size = usize::from(n & 0x7f);
                    let len = der[2..2 + size]
                        .iter()
                        .fold(0, |len, b| len << 8 | usize::from(*b));
                    (len, 2 + size)
                }
            };
            (&der[at..at + len], &der[at + len..])
        }
        let (tbs, _) = content(content(cert).0);
        let (_version, rest) = content(tbs);
        content(rest).0.to_vec()
    }

    fn openssl_verify(dir: &std::path::Path, leaf: &Certificate) -> std::process::Output {
        std::fs::write(
            dir.join("leaf.pem"),
            super::super::certificate_pem(leaf.der()),
        )
        .unwrap();
        Command::new("openssl")
            .args(["verify", "-x509_strict", "-purpose", "sslserver"])
            .args(["-CAfile", "ca.pem", "leaf.pem"])
            .current_dir(dir)
            .output()
            .unwrap()
    }

    #[test]
    fn a_client_trusting_the_ca_accepts_a_served_host_over_http_1_1() {
        let authority = authority();
        let mut client = client(&authority.ca_pem(), "api.github.com");
        let mut server = server(&authority, "API.GitHub.com");
        handshake(&mut client, &mut server).unwrap();
        assert_eq!(client.alpn_protocol(), Some(&b"http/1.1"[..]));
    }

    #[test]
    fn a_client_refuses_a_served_hosts_leaf_for_another_name() {
        let authority = authority();
        let mut client = client(&authority.ca_pem(), "evil.example");
        let mut server = server(&authority, "api.github.com");
        let refused = handshake(&mut client, &mut server).unwrap_err();
        assert!(
            matches!(
                refused,
                rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName
                        | CertificateError::NotValidForNameContext { .. }
                )
            ),
            "{refused:?}"
        );
    }

    #[test]
    fn hosts_outside_the_list_get_no_certificate() {
        let refused = authority().server_config("evil.example").unwrap_err();
        assert_eq!(
            refused.to_string(),
            "`evil.example` is not a host the proxy serves"
        );
    }

    #[test]
    fn an_empty_list_an_ip_address_or_a_port_is_refused() {
        let refused = |hosts: &[&str]| {
            let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
            Authority::new(&hosts, LocalTime(1_700_000_000))
                .unwrap_err()
                .to_string()
        };
        assert_eq!(refused(&[]), "the proxy needs at least one host to serve");
        for ip in ["140.82.112.6", "::1"] {
            let why = format!("`{ip}` is an IP address: the proxy serves host names only");
            assert_eq!(refused(&["github.com", ip]), why);
        }
        for name in [
            "github.com:443",
            "GitHub.com",
            "github..com",
            &"a".repeat(64),
        ] {
            assert_eq!(
                refused(&[name]),
                format!("`{name}` is not a lower-case host name")
            );
        }
        assert!(
            refused(&[&"github.com:".repeat(100)]).len() < 250,
            "cut short"
        );
    }

    #[test]
    fn openssl_strict_accepts_a_served_leaf_and_refuses_one_outside_the_constraints() {
        if Command::new("openssl").arg("version").output().is_err() {
            eprintln!("skipped: `openssl` is not on PATH");
            return;
        }
        let authority = authority();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), authority.ca_pem()).unwrap();

        let (served, _) = authority.leaf("api.github.com").unwrap();
        let verified = openssl_verify(dir.path(), &served);
        let said = String::from_utf8_lossy(&verified.stdout);
        assert!(verified.status.success(), "{said}{verified:?}");
        assert!(said.contains("leaf.pem: OK"), "{said}");

        // The list check lives in `server_config`; signing directly shows what the CA allows.
        let (outside, _) = authority.leaf("evil.example").unwrap();
        let refused = openssl_verify(dir.path(), &outside);
        let said =
            String::from_utf8_lossy(&refused.stderr) + String::from_utf8_lossy(&refused.stdout);
        assert!(!refused.status.success(), "{said}");
        assert!(said.contains("permitted subtree violation"), "{said}");
    }

    #[test]
    fn each_leaf_has_its_own_random_serial_and_each_host_one_config() {
        let authority = authority();
        let (first, _) = authority.leaf("api.github.com").unwrap();
        let (second, _) = authority.leaf("github.com").unwrap();
        let (first, second) = (serial_of(first.der()), serial_of(second.der()));
        assert_ne!(first, second);
        // rcgen's own serial, from the key, would be 20 bytes long.
        assert_eq!((first.len(), second.len()), (SERIAL_BYTES, SERIAL_BYTES));

        let once = authority.server_config("github.com").unwrap();
        let again = authority.server_config("GITHUB.COM").unwrap();
        assert!(Arc::ptr_eq(&once, &again));
        let other = authority.server_config("api.github.com").unwrap();
        assert!(!Arc::ptr_eq(&once, &other));
    }

    #[test]
    fn the_ca_key_is_never_shown() {
        let authority = authority();
        let shown = format!("{authority:?} {authority:#?}");
        assert!(shown.contains("api.github.com"), "{shown}");
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
        // No run of the key's bytes (its secret scalar among them), as hex or as a list of numbers.
        let key = authority.ca.key().serialize_der();
        for run in key.windows(8) {
            let hex: String = run.iter().map(|b| format!("{b:02x}")).collect();
            let list = format!("{run:?}").trim_matches(['[', ']']).to_owned();
            assert!(!shown.contains(&hex) && !shown.contains(&list), "{shown}");
        }
    }
}
