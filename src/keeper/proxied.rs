//! The job-wide proxy a store has (`token-keeper proxy start`): its record in the store, and
//! whether it still answers. The proxy ends itself once the store's end begins; the end only
//! says whether it had stopped before.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::store::{PROXY_RECORD, StateDir};
use crate::private::FileError;

/// How long a proxy of ours may take to answer a probe on loopback.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Where a store's job-wide proxy listens and what reaching it takes, as it wrote it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ProxyRecord {
    /// What a client must present: the file is the store's, 0600.
    pub(crate) secret: String,
    pub(crate) port: u16,
    pub(crate) pid: u32,
    pub(crate) hosts: Vec<String>,
    pub(crate) bundle: PathBuf,
    pub(crate) authority: PathBuf,
}

impl ProxyRecord {
    /// Where a client reaches the proxy, its secret in it.
    pub(crate) fn url(&self) -> String {
        crate::github::client::our_proxy_url(&self.secret, self.port)
    }

    /// The record in `dir`, if its proxy wrote one.
    pub(crate) fn read(dir: &StateDir) -> Option<Self> {
        let text = std::fs::read(dir.path().join(PROXY_RECORD)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    pub(crate) fn write(&self, dir: &StateDir) -> Result<(), FileError> {
        let text = serde_json::to_vec(self).unwrap_or_default();
        dir.write_atomic(PROXY_RECORD, &text)
    }

    /// Remove the record, if it is still this proxy's.
    pub(crate) fn remove(&self, dir: &StateDir) {
        if Self::read(dir).is_some_and(|found| found.pid == self.pid) {
            let _ = std::fs::remove_file(dir.path().join(PROXY_RECORD));
        }
    }

    /// Whether the proxy answers as ours answers a client without its secret: `407`.
    pub(crate) fn answers(&self) -> bool {
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let Ok(mut stream) = TcpStream::connect_timeout(&address, PROBE_TIMEOUT) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(PROBE_TIMEOUT));
        let probe =
            b"CONNECT token-keeper.invalid:443 HTTP/1.1\r\nHost: token-keeper.invalid:443\r\n\r\n";
        let mut answer = [0u8; 12];
        stream.write_all(probe).is_ok()
            && stream.read_exact(&mut answer).is_ok()
            && &answer == b"HTTP/1.1 407"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_a_dead_port_does_not_answer() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::example(tmp.path());
        assert!(ProxyRecord::read(&dir).is_none());
        // A port that nothing listens on any more.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let record = ProxyRecord {
            secret: "s3cret".into(),
            port,
            pid: 4242,
            hosts: vec!["api.github.com".into()],
            bundle: tmp.path().join("bundle.pem"),
            authority: tmp.path().join("authority.pem"),
        };
        record.write(&dir).unwrap();
        let read = ProxyRecord::read(&dir).unwrap();
        assert_eq!((read.port, read.pid), (port, 4242));
        assert!(!read.answers());
        ProxyRecord {
            pid: 1,
            ..read.clone()
        }
        .remove(&dir);
        assert!(
            ProxyRecord::read(&dir).is_some(),
            "another proxy's record stays"
        );
        read.remove(&dir);
        assert!(ProxyRecord::read(&dir).is_none());
    }
}
