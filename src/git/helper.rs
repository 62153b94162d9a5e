//! Git's credential-helper protocol: read the request, check it is ours, answer from the keeper.
//!
//! Git writes `key=value` lines and a blank line; unknown keys and unknown operations are
//! ignored, as git asks of helpers. Stdout carries protocol lines only; diagnostics go to stderr,
//! which git shows. We answer only for the protocol, host and port of our git server, and only
//! for paths inside the token's scope when git sends a path. No mask line is ever printed here: a
//! build that captures git's stderr would keep the token in its logs.

use std::io::{self, BufRead, Read, Write};

use url::Url;

use anyhow::Result;

use crate::clock::LocalTime;
use crate::github::apps::TOKEN_USERNAME;
use crate::keeper::Keeper;
use crate::keeper::store::MintConfig;
use crate::messages;
use crate::secret::Secret;

/// The attributes of one request; the ones we do not use are dropped.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    pub(crate) protocol: Option<String>,
    pub(crate) host: Option<String>,
    pub(crate) path: Option<String>,
    /// What git offers back with `erase`.
    pub(crate) password: Option<Secret>,
}

impl Request {
    /// Parse git's attributes. Reading stops at the first blank line; a line without `=` or with
    /// a NUL is skipped; a line splits at its first `=`.
    pub(crate) fn parse(input: &[u8]) -> Self {
        let mut request = Self::default();
        for line in input.split(|b| *b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                break;
            }
            let Ok(line) = std::str::from_utf8(line) else {
                continue;
            };
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            if !is_value(value) {
                continue;
            }
            let slot = match key {
                "protocol" => &mut request.protocol,
                "host" => &mut request.host,
                "path" => &mut request.path,
                "password" => {
                    request.password = Some(Secret::new(value.to_owned()));
                    continue;
                }
                _ => continue,
            };
            *slot = Some(value.to_owned());
        }
        request
    }

    /// Read a request as git writes it: up to the first blank line, which ends it even when the
    /// caller keeps its end of the pipe open, or to the end of input; at most 64 KiB.
    fn read_from(input: impl Read) -> io::Result<Self> {
        const LIMIT: u64 = 64 * 1024;
        let mut reader = io::BufReader::new(input.take(LIMIT));
        let mut bytes = Vec::new();
        loop {
            let start = bytes.len();
            if reader.read_until(b'\n', &mut bytes)? == 0 {
                break;
            }
            let line = &bytes[start..];
            if line == b"\n" || line == b"\r\n" {
                break;
            }
        }
        Ok(Self::parse(&bytes))
    }

    /// Whether the request is for our server and, when git names a path, inside our scope.
    fn is_ours(&self, server: &Url, config: &MintConfig) -> bool {
        let (Some(protocol), Some(host)) = (&self.protocol, &self.host) else {
            return false;
        };
        let (Some(server_host), Some(server_port)) =
            (server.host_str(), server.port_or_known_default())
        else {
            return false;
        };
        if protocol != server.scheme() {
            return false;
        }
        let default_port = match protocol.as_str() {
            "https" => 443,
            "http" => 80,
            _ => return false,
        };
        // Git sends the port as the URL has it, `github.com:443` included; one port at most.
        let (name, port) = match host.rsplit_once(':') {
            // An IPv6 address, without a port.
            _ if host.starts_with('[') && host.ends_with(']') => (host.as_str(), default_port),
            // A second colon outside brackets: `host:PORT:80` names no single server.
            Some((name, _)) if name.contains(':') && !name.starts_with('[') => return false,
            Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
                match port.parse::<u16>() {
                    Ok(port) => (name, port),
                    Err(_) => return false,
                }
            }
            Some(_) => return false,
            None => (host.as_str(), default_port),
        };
        if !name.eq_ignore_ascii_case(server_host) || port != server_port {
            return false;
        }
        match &self.path {
            None => true,
            Some(path) => path_in_scope(path, server.path(), config),
        }
    }
}

/// `owner/repo[.git][/...]` under the server's own path, inside the token's owner and repositories.
/// A path a server could read as another one (`..` or `.` segments, percent-encodings, backslashes,
/// empty segments) is never ours.
fn path_in_scope(path: &str, server_path: &str, config: &MintConfig) -> bool {
    let path = path.strip_suffix('/').unwrap_or(path);
    let ambiguous = path.contains(['%', '\\'])
        || path
            .trim_start_matches('/')
            .split('/')
            .any(|segment| matches!(segment, "" | "." | ".."));
    if ambiguous {
        return false;
    }
    let prefix = server_path.trim_matches('/');
    let path = path.trim_start_matches('/');
    let rest = if prefix.is_empty() {
        path
    } else {
        match path.strip_prefix(prefix).and_then(|r| r.strip_prefix('/')) {
            Some(rest) => rest,
            None => return false,
        }
    };
    let mut segments = rest.split('/');
    let (Some(owner), repo) = (segments.next(), segments.next()) else {
        return false;
    };
    if !owner.eq_ignore_ascii_case(&config.account) {
        return false;
    }
    if config.request.repositories.is_empty() {
        return repo.is_some_and(|r| !r.is_empty());
    }
    let Some(repo) = repo else {
        return false;
    };
    let repo = repo.strip_suffix(".git").unwrap_or(repo);
    config
        .request
        .repositories
        .iter()
        .any(|r| r.eq_ignore_ascii_case(repo))
}

/// What git asks of a helper; the operations we have nothing to do for, `store` and any git
/// adds later, are ignored, silently, as git asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    Get,
    Erase,
    Ignored,
}

impl Operation {
    fn parse(op: &str) -> Self {
        match op {
            "get" => Operation::Get,
            "erase" => Operation::Erase,
            _ => Operation::Ignored,
        }
    }
}

/// Whether `value` can be an attribute's value, read or written: a NUL, CR or LF in it would let
/// what follows read as attributes of its own.
fn is_value(value: &str) -> bool {
    !value.contains(['\0', '\r', '\n'])
}

/// Run one helper operation: attributes from `input`, answer on `out`, diagnostics on `err`.
/// `open` gives the store, asked only for an operation we answer: git expects the others to
/// succeed silently, whatever would keep the store from opening.
pub(crate) fn run(
    op: &str,
    open: impl FnOnce() -> Result<Keeper>,
    mut input: impl Read,
    mut out: impl Write,
    mut err: impl Write,
    now: LocalTime,
) -> Result<()> {
    let op = Operation::parse(op);
    if op == Operation::Ignored {
        return Ok(());
    }
    // A request that cannot be read is not one we can answer.
    let Ok(request) = Request::read_from(&mut input) else {
        return Ok(());
    };
    let keeper = open()?;
    let current = keeper.state()?;
    if !request.is_ours(&current.config.git_server, &current.config) {
        return Ok(());
    }
    if op == Operation::Erase {
        if let Some(password) = &request.password {
            keeper.erase(&current, password.expose(), now)?;
        }
        return Ok(());
    }
    let served = keeper.serve(current, now)?;
    if let Some(warning) = &served.warning {
        messages::warn(&mut err, warning);
    }
    let answer = Answer {
        username: TOKEN_USERNAME,
        password: &served.token,
        password_expiry_utc: served.expires_at,
    };
    match answer.write_to(&mut out) {
        // Git may stop reading (it closed the pipe): nothing more to do.
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            Err(anyhow::anyhow!("cannot answer git: {e}"))
        }
        _ => Ok(()),
    }
}

/// What we tell git.
#[derive(Debug)]
pub(crate) struct Answer<'a> {
    pub(crate) username: &'a str,
    pub(crate) password: &'a Secret,
    /// Git compares it with its own clock.
    pub(crate) password_expiry_utc: LocalTime,
}

impl Answer<'_> {
    /// Write the attribute lines in one piece. A value holding NUL, CR or LF is refused, and
    /// nothing is written: git would read what follows the break as attributes of its own.
    fn write_to(&self, mut out: impl Write) -> io::Result<()> {
        let expiry = self.password_expiry_utc.0.to_string();
        let attributes = [
            ("username", self.username),
            ("password", self.password.expose()),
            ("password_expiry_utc", expiry.as_str()),
        ];
        let mut text = String::new();
        for (key, value) in attributes {
            if !is_value(value) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the `{key}` to answer holds a NUL or a line break"),
                ));
            }
            text.push_str(&format!("{key}={value}\n"));
        }
        out.write_all(text.as_bytes())?;
        out.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::clock::{Offset, ServerTime};
    use crate::keeper::Caller;

    fn config(repositories: &[&str]) -> MintConfig {
        MintConfig::example(repositories)
    }

    fn request(text: &str) -> Request {
        Request::parse(text.as_bytes())
    }

    #[test]
    fn attributes_are_read_until_the_blank_line() {
        let r = request("protocol=https\nhost=github.com\n\npath=ignored\n");
        assert_eq!(r.protocol.as_deref(), Some("https"));
        assert_eq!(r.host.as_deref(), Some("github.com"));
        assert_eq!(r.path, None);
    }

    #[test]
    fn unknown_attributes_and_odd_lines_are_ignored() {
        let r = request(
            "capability[]=authtype\nwwwauth[]=Basic realm=x\nnonsense\nprotocol=https\nhost=github.com\n",
        );
        assert_eq!(r.protocol.as_deref(), Some("https"));
        assert!(r.is_ours(&Url::parse("https://github.com").unwrap(), &config(&[])));
    }

    #[test]
    fn a_value_splits_at_the_first_equals_sign() {
        let r = request("password=a=b=c\n");
        assert_eq!(r.password.as_ref().map(Secret::expose), Some("a=b=c"));
    }

    #[test]
    fn crlf_lines_are_accepted() {
        let r = request("protocol=https\r\nhost=github.com\r\n\r\n");
        assert_eq!(r.host.as_deref(), Some("github.com"));
    }

    #[test]
    fn only_our_protocol_host_and_port_are_answered() {
        let github = Url::parse("https://github.com").unwrap();
        let local = Url::parse("http://127.0.0.1:8080").unwrap();
        let c = config(&[]);
        assert!(request("protocol=https\nhost=github.com\n").is_ours(&github, &c));
        assert!(request("protocol=https\nhost=GitHub.com\n").is_ours(&github, &c));
        assert!(!request("protocol=http\nhost=github.com\n").is_ours(&github, &c));
        assert!(!request("protocol=https\nhost=gitlab.com\n").is_ours(&github, &c));
        assert!(!request("protocol=https\nhost=github.com:8443\n").is_ours(&github, &c));
        assert!(request("protocol=https\nhost=github.com:443\n").is_ours(&github, &c));
        assert!(!request("protocol=http\nhost=github.com:443\n").is_ours(&github, &c));
        assert!(!request("host=github.com\n").is_ours(&github, &c));
        assert!(request("protocol=http\nhost=127.0.0.1:8080\n").is_ours(&local, &c));
        assert!(!request("protocol=http\nhost=127.0.0.1\n").is_ours(&local, &c));
    }

    #[test]
    fn a_path_must_be_inside_the_scope() {
        let github = Url::parse("https://github.com").unwrap();
        let owner_wide = config(&[]);
        let scoped = config(&["app"]);
        let with = |path: &str| request(&format!("protocol=https\nhost=github.com\npath={path}\n"));
        assert!(with("octo-org/anything.git").is_ours(&github, &owner_wide));
        assert!(!with("other-org/app.git").is_ours(&github, &owner_wide));
        assert!(!with("Octo-Org").is_ours(&github, &owner_wide));
        assert!(with("Octo-Org/app.git").is_ours(&github, &scoped));
        assert!(with("Octo-Org/app").is_ours(&github, &scoped));
        assert!(with("Octo-Org/App/info/refs").is_ours(&github, &scoped));
        assert!(!with("Octo-Org/lib.git").is_ours(&github, &scoped));
        assert!(!with("Octo-Org/app-2.git").is_ours(&github, &scoped));
    }

    #[test]
    fn a_server_path_prefix_is_respected() {
        let ghes = Url::parse("https://ghes.example.com/git").unwrap();
        let c = config(&[]);
        let with = |path: &str| {
            request(&format!(
                "protocol=https\nhost=ghes.example.com\npath={path}\n"
            ))
        };
        assert!(with("git/Octo-Org/app.git").is_ours(&ghes, &c));
        assert!(!with("Octo-Org/app.git").is_ours(&ghes, &c));
    }

    #[test]
    fn store_and_unknown_operations_are_silent() {
        for op in ["store", "frobnicate"] {
            let mut out = Vec::new();
            let mut err = Vec::new();
            run(
                op,
                || Ok(Keeper::open(Path::new("/nonexistent"), Caller::default())?),
                &b"protocol=https\n"[..],
                &mut out,
                &mut err,
                LocalTime(0),
            )
            .unwrap();
            assert!(out.is_empty() && err.is_empty(), "{op}");
        }
    }

    fn answer(password: &Secret) -> Answer<'_> {
        Answer {
            username: TOKEN_USERNAME,
            password,
            password_expiry_utc: LocalTime(1234),
        }
    }

    #[test]
    fn the_answer_is_three_protocol_lines_that_read_back() {
        let password = Secret::new("ghs_x".into());
        let mut out = Vec::new();
        answer(&password).write_to(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "username=x-access-token\npassword=ghs_x\npassword_expiry_utc=1234\n"
        );
        assert_eq!(Request::parse(&out).password, Some(password));
    }

    #[test]
    fn an_answer_with_a_line_break_or_nul_is_never_written() {
        for bad in ["ghs_x\nusername=evil", "ghs_x\r", "ghs\0x"] {
            let password = Secret::new(bad.into());
            let mut out = Vec::new();
            assert!(answer(&password).write_to(&mut out).is_err(), "{bad:?}");
            assert!(out.is_empty(), "{bad:?}");
        }
    }

    #[test]
    fn reading_stops_at_the_blank_line_though_input_goes_on() {
        // A reader that never ends: only the blank line can stop the request.
        let endless = b"protocol=https\nhost=github.com\n\n".chain(io::repeat(b'x'));
        let request = Request::read_from(endless).unwrap();
        assert_eq!(request.host.as_deref(), Some("github.com"));
    }

    #[test]
    fn a_host_with_two_ports_or_an_odd_port_is_not_ours() {
        let local = Url::parse("http://127.0.0.1:8080").unwrap();
        let github = Url::parse("https://github.com").unwrap();
        let c = config(&[]);
        for host in [
            "127.0.0.1:8080:80",
            "127.0.0.1:8080:",
            "127.0.0.1:+8080",
            "127.0.0.1:99999",
        ] {
            let r = request(&format!("protocol=http\nhost={host}\n"));
            assert!(!r.is_ours(&local, &c), "{host}");
        }
        assert!(!request("protocol=https\nhost=github.com:443:443\n").is_ours(&github, &c));
        let v6 = Url::parse("http://[::1]:8080").unwrap();
        assert!(request("protocol=http\nhost=[::1]:8080\n").is_ours(&v6, &c));
        assert!(!request("protocol=http\nhost=[::1]\n").is_ours(&v6, &c));
    }

    #[test]
    fn paths_a_server_could_read_as_another_are_not_ours() {
        let github = Url::parse("https://github.com").unwrap();
        let scoped = config(&["app"]);
        let owner_wide = config(&[]);
        let with = |path: &str| request(&format!("protocol=https\nhost=github.com\npath={path}\n"));
        for path in [
            "Octo-Org/app/../other.git",
            "Octo-Org/app/%2e%2e/other.git",
            "Octo-Org/app%2f..%2fother.git",
            "Octo-Org/./app.git",
            "Octo-Org//app.git",
            "Octo-Org/app\\..\\other.git",
        ] {
            assert!(!with(path).is_ours(&github, &scoped), "{path}");
            assert!(!with(path).is_ours(&github, &owner_wide), "{path}");
        }
        assert!(with("Octo-Org/app.git/").is_ours(&github, &scoped));
    }

    mod fuzz {
        use proptest::prelude::*;

        use super::*;
        use crate::github::{PrivateKey, Signer};
        use crate::keeper::policy::Lifetime;
        use crate::keeper::store::{CachedToken, StateDir};
        use crate::secret::Secret;

        /// A job whose step `s` has a token fresh for an hour from `now`.
        fn state_dir(now: i64) -> tempfile::TempDir {
            let tmp = tempfile::tempdir().unwrap();
            let dir = StateDir::example(tmp.path());
            let key = PrivateKey::parse(include_str!("../../tests/fixtures/app-key.pem")).unwrap();
            let signer = Signer::Key(key);
            let token = CachedToken {
                token: Secret::new("ghs_fuzz".into()),
                lifetime: Lifetime {
                    minted_at: LocalTime(now),
                    expires_at: ServerTime(now + 3600),
                    clock_offset: Offset(0),
                },
            };
            Keeper::keep(&dir, config(&[]), token, Some(&signer)).unwrap();
            tmp
        }

        fn attribute_lines() -> impl Strategy<Value = Vec<u8>> {
            let key = prop_oneof![
                Just("protocol".to_owned()),
                Just("host".to_owned()),
                Just("path".to_owned()),
                Just("password".to_owned()),
                "[a-z\\[\\]]{0,8}",
            ];
            let value = prop_oneof![
                Just("https".to_owned()),
                Just("github.com".to_owned()),
                Just("Octo-Org/app.git".to_owned()),
                ".{0,12}"
            ];
            proptest::collection::vec((key, value, any::<bool>()), 0..8).prop_map(|lines| {
                let mut bytes = Vec::new();
                for (k, v, with_equals) in lines {
                    bytes.extend_from_slice(k.as_bytes());
                    if with_equals {
                        bytes.push(b'=');
                    }
                    bytes.extend_from_slice(v.as_bytes());
                    bytes.push(b'\n');
                }
                bytes
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

            #[test]
            fn any_bytes_parse_without_panic(input in proptest::collection::vec(any::<u8>(), 0..512)) {
                let _ = Request::parse(&input);
            }

            #[test]
            fn stdout_carries_an_answer_only_for_our_requests(input in attribute_lines(), op in "get|erase|store|[a-z]{0,6}") {
                let now = 1_800_000_000;
                let dir = state_dir(now);
                let (mut out, mut err) = (Vec::new(), Vec::new());
                let result = run(&op, || Ok(Keeper::open(&dir.path().join("s"), Caller::default())?), &input[..], &mut out, &mut err, LocalTime(now));
                prop_assert!(result.is_ok());
                let ours = Request::parse(&input).is_ours(&Url::parse("https://github.com").unwrap(), &config(&[]));
                if op == "get" && ours {
                    let expected = format!("username=x-access-token\npassword=ghs_fuzz\npassword_expiry_utc={}\n", now + 3600);
                    prop_assert_eq!(String::from_utf8(out).unwrap(), expected);
                } else {
                    prop_assert!(out.is_empty(), "stdout: {:?}", String::from_utf8_lossy(&out));
                }
                prop_assert!(err.is_empty());
            }
        }
    }
}
