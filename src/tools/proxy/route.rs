//! How a child reaches the proxy: the variables that route each kind of HTTP client through it and make it trust the proxy's authority, worked out from the child's environment.
//!
//! Clients disagree: Go reads the uppercase spelling of a proxy variable first, curl, git, Python
//! and node the lowercase; most CA variables replace a client's roots, node's adds to them; each
//! client reads `NO_PROXY` its own way. So every spelling gets the same value, a replacing
//! variable gets a bundle that keeps everything the user trusted, and a `NO_PROXY` entry goes when
//! any client would send a served host around the proxy by it. Only `system_roots_pem` and
//! `users_bundles` look at the machine; the caller reads and writes the files.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::env::Env;
use crate::github::client::{HttpEnv, is_our_proxy};
use crate::messages;
use crate::secret;

/// Where a child's clients go and what they trust.
pub(crate) struct Route<'a> {
    /// `http://tk:SECRET@127.0.0.1:PORT`.
    pub(crate) proxy_url: &'a str,
    /// The GitHub hosts the proxy serves, lower-case, without ports.
    pub(crate) hosts: &'a [String],
    /// The system's roots, the user's CAs and ours (`bundle`), for variables that replace roots.
    pub(crate) bundle: &'a Path,
    /// Our CA alone, for `NODE_EXTRA_CA_CERTS`, which adds to node's roots.
    pub(crate) authority: &'a Path,
    /// The current real token.
    pub(crate) token: &'a str,
    /// Names the user asked for besides `GH_TOKEN` and `GITHUB_TOKEN` (`check_variable_name`).
    pub(crate) token_variables: &'a [String],
}

/// Both spellings, the same value: Go tries the uppercase first, the others the lowercase. curl
/// never reads `HTTP_PROXY` (CGI puts a request's `Proxy:` header there); Go, Python and node do.
/// `ALL_PROXY` stays as it is: every client takes the scheme's own variable before it, so it
/// routes no http or https once these are set, and what else it routes is the user's business.
const PROXY_VARIABLES: [&str; 4] = ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"];
const NO_PROXY_VARIABLES: [&str; 2] = ["NO_PROXY", "no_proxy"];
/// The CA files that replace a client's roots: OpenSSL's, Python's `ssl` and Go's on Linux, the
/// curl tool's, requests' (instead of certifi, and `CURL_CA_BUNDLE` is its fallback), git's.
/// Directories (`SSL_CERT_DIR`, `GIT_SSL_CAPATH`) add to these files and stay; curl 7.88 skips
/// `SSL_CERT_FILE` when `SSL_CERT_DIR` is set, but takes `CURL_CA_BUNDLE` first.
const REPLACING: [&str; 4] = [
    "SSL_CERT_FILE",
    "CURL_CA_BUNDLE",
    "REQUESTS_CA_BUNDLE",
    "GIT_SSL_CAINFO",
];
/// node adds the one file this names to its own roots.
const NODE_EXTRA: &str = "NODE_EXTRA_CA_CERTS";
const TOKEN_VARIABLES: [&str; 2] = ["GH_TOKEN", "GITHUB_TOKEN"];
const LONGEST_NAME: usize = 64;

/// The changes to the child's environment (`Some` sets, `None` removes), in a stable order.
///
/// node reads a single `NODE_EXTRA_CA_CERTS`: when the user named a file there, it is among
/// `users_bundles`, so the bundle holds it and node gets the bundle (the system's roots come
/// with it, which the user trusts in every other client); otherwise node gets our CA alone.
pub(crate) fn variables(route: &Route, env: &Env) -> Vec<(String, Option<String>)> {
    let mut changes = Vec::new();
    let mut set = |name: &str, value: Option<String>| changes.push((name.to_owned(), value));
    for name in PROXY_VARIABLES {
        set(name, Some(route.proxy_url.to_owned()));
    }
    let users = [env.get("no_proxy"), env.get("NO_PROXY")];
    let users_no_proxy = users.into_iter().flatten().collect::<Vec<_>>().join(",");
    let no_proxy = no_proxy_without(&users_no_proxy, route.hosts);
    for name in NO_PROXY_VARIABLES {
        set(name, no_proxy.clone());
    }
    // The user's own proxy, for token-keeper's own calls in the child, which go past ours. In
    // the child of a proxy's child, what the first proxy was given stays.
    let users_proxy = ["https_proxy", "HTTPS_PROXY"]
        .into_iter()
        .find_map(|name| env.given(name));
    if !users_proxy.is_some_and(is_our_proxy) {
        set(HttpEnv::ONWARD_PROXY, users_proxy.map(str::to_owned));
        set(
            HttpEnv::ONWARD_NO_PROXY,
            Some(users_no_proxy).filter(|v| !v.is_empty()),
        );
    }
    for name in REPLACING {
        set(name, Some(route.bundle.to_string_lossy().into_owned()));
    }
    let node = if env.given(NODE_EXTRA).is_some() {
        route.bundle
    } else {
        route.authority
    };
    set(NODE_EXTRA, Some(node.to_string_lossy().into_owned()));
    // node ≥ 22.21 and 24 route fetch and http(s) through the proxy variables only when asked.
    set("NODE_USE_ENV_PROXY", Some("1".to_owned()));
    let mut named = HashSet::new();
    let extra = route.token_variables.iter().map(String::as_str);
    for name in TOKEN_VARIABLES.into_iter().chain(extra) {
        if named.insert(name) {
            set(name, Some(route.token.to_owned()));
        }
    }
    changes
}

/// `entries` (a `NO_PROXY` value) without every entry that would send one of `hosts` around the
/// proxy for some client; `None` when nothing is left. Entries are split at commas and blanks
/// (curl takes both), kept as written, each once whatever its case, in order.
pub(crate) fn no_proxy_without(entries: &str, hosts: &[String]) -> Option<String> {
    let mut kept: Vec<&str> = Vec::new();
    for entry in entries.split(|c: char| c == ',' || c.is_whitespace()) {
        let seen = kept.iter().any(|k| k.eq_ignore_ascii_case(entry));
        if !entry.is_empty() && !seen && !hosts.iter().any(|host| bypasses(entry, host)) {
            kept.push(entry);
        }
    }
    (!kept.is_empty()).then(|| kept.join(","))
}

/// Whether an entry of `entries` (a `NO_PROXY` value) sends `host` around a proxy.
pub(crate) fn keeps_from_proxy(entries: &str, host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    entries
        .split(|c: char| c == ',' || c.is_whitespace())
        .any(|entry| !entry.is_empty() && bypasses(entry, &host))
}

/// Whether `entry` sends `host` around a proxy under some client's rules: `*` (a whole value for
/// curl, Python and node, any entry for Go); a name and its subdomains, with or without a leading
/// `.` or `*.` (Go's `.x` takes subdomains only, the rest strip the dot); with a `:port` (Go,
/// Python and node match it, curl never does); for an IP host, a CIDR (curl, Go, requests) or a
/// `low-high` range (node).
fn bypasses(entry: &str, host: &str) -> bool {
    let entry = entry.to_ascii_lowercase();
    if entry == "*" {
        return true;
    }
    let name = without_port(&entry);
    if in_range(name, host) {
        return true;
    }
    let name = name
        .trim_start_matches("*.")
        .trim_start_matches('.')
        .trim_end_matches('.');
    !name.is_empty()
        && (host == name
            || host
                .strip_suffix(name)
                .is_some_and(|rest| rest.ends_with('.')))
}

/// `entry` without a `:port`, and an IPv6 address without its brackets.
fn without_port(entry: &str) -> &str {
    if let Some(rest) = entry.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(ip, _)| ip);
    }
    match entry.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => entry,
    }
}

/// Whether `host`, an IP address, lies in `entry` as a CIDR block or a `low-high` range.
fn in_range(entry: &str, host: &str) -> bool {
    let number = |ip: &str| match ip.parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) => Some((u128::from(u32::from(v4)), 32)),
        IpAddr::V6(v6) => Some((u128::from(v6), 128)),
    };
    let Some((ip, width)) = number(host) else {
        return false;
    };
    if let Some((net, bits)) = entry.split_once('/')
        && let (Some((net, w)), Ok(bits)) = (number(net), bits.parse::<u32>())
    {
        return w == width
            && bits <= width
            && (net ^ ip).checked_shr(width - bits).unwrap_or(0) == 0;
    }
    if let Some((low, high)) = entry.split_once('-')
        && let (Some((low, w)), Some((high, _))) = (number(low), number(high))
    {
        return w == width && (low..=high).contains(&ip);
    }
    false
}

/// Why a name cannot name a token variable: a secret in it, or no variable's name at all.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BadVariableName {
    #[error("a token variable's name holds {0}: {looks}", looks = looks())]
    Secret(&'static str),
    #[error("`{0}` is not a variable's name: {looks}", looks = looks())]
    NotAName(String),
}

/// What a variable's name looks like, the end of each refusal of one.
fn looks() -> String {
    format!(
        "a variable's name is ASCII letters, digits and `_`, not starting with a digit, \
         at most {LONGEST_NAME} characters, like `RENOVATE_TOKEN`"
    )
}

/// Whether `name` may name a token variable: ASCII letters, digits and `_`, not starting with a
/// digit, at most `LONGEST_NAME` characters. The refusal quotes the name only when it cannot be a secret.
pub(crate) fn check_variable_name(name: &str) -> Result<(), BadVariableName> {
    if let Some(kind) = secret::kind_in(name) {
        return Err(BadVariableName::Secret(kind.what()));
    }
    if name.len() <= LONGEST_NAME && crate::env::is_name(name) {
        Ok(())
    } else {
        Err(BadVariableName::NotAName(messages::short(name)))
    }
}

/// The files the user's own CA variables name, each once, those that exist: what the user
/// trusted, for the caller to read into the bundle (node's one file among them, see `variables`).
pub(crate) fn users_bundles(env: &Env) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = Vec::new();
    for name in REPLACING.into_iter().chain([NODE_EXTRA]) {
        if let Some(path) = env.given(name).map(PathBuf::from)
            && path.is_file()
            && !paths.contains(&path)
        {
            paths.push(path);
        }
    }
    paths
}

/// The bundle for the replacing variables: the PEM blocks of the system's roots, the user's CAs
/// and ours, in that order, each once and ending in a newline; text between blocks (a bundle's
/// comments) is left out.
pub(crate) fn bundle(system_roots_pem: &str, user_cas: &[String], ours: &str) -> String {
    let mut seen = HashSet::new();
    let texts = std::iter::once(system_roots_pem).chain(user_cas.iter().map(String::as_str));
    texts
        .chain([ours])
        .flat_map(pem_blocks)
        .filter(|block| seen.insert(block.clone()))
        .collect()
}

/// The PEM blocks of `text`, each line trimmed (a CRLF file's too) and ended with a newline.
fn pem_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut block: Option<String> = None;
    for line in text.lines().map(str::trim) {
        if line.starts_with("-----BEGIN ") {
            block = Some(String::new());
        }
        if let Some(block) = block.as_mut() {
            block.push_str(line);
            block.push('\n');
        }
        if line.starts_with("-----END ") {
            blocks.extend(block.take());
        }
    }
    blocks
}

/// The platform's roots as PEM, for `bundle`. rustls-native-certs reads this process's own
/// `SSL_CERT_FILE` and `SSL_CERT_DIR` instead of the store when they are set: call it before any
/// of ours is set in this process. Certificates the platform cannot give are skipped, as `tls`
/// skips them.
pub(crate) fn system_roots_pem() -> String {
    rustls_native_certs::load_native_certs()
        .certs
        .iter()
        .map(|cert| super::certificate_pem(cert))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_proxy_loses_every_entry_that_sends_a_served_host_around_the_proxy() {
        let cases = [
            ("localhost,github.com", "api.github.com", Some("localhost")),
            (".github.com", "api.github.com", None),
            ("*.github.com", "api.github.com", None),
            ("api.github.com:443", "api.github.com", None),
            ("*", "api.github.com", None),
            ("example.com,*", "api.github.com", Some("example.com")),
            ("githubusercontent.com", "raw.githubusercontent.com", None),
            (
                "notgithub.com,hub.com",
                "github.com",
                Some("notgithub.com,hub.com"),
            ),
            ("API.GitHub.COM,GitHub.com.", "api.github.com", None),
            (
                " a.corp , ,b.corp  A.CORP\tgithub.com,",
                "github.com",
                Some("a.corp,b.corp"),
            ),
            (" , ", "github.com", None),
            (
                "10.0.0.0/8,10.1.2.3:8443,10.1.2.0-10.1.2.9",
                "10.1.2.3",
                None,
            ),
            (
                "10.2.0.0/16,::/0,10.1.2.4",
                "10.1.2.3",
                Some("10.2.0.0/16,::/0,10.1.2.4"),
            ),
            ("[fd00::1]:443,fd00::/8", "fd00::1", None),
        ];
        for (entries, host, left) in cases {
            let left_now = no_proxy_without(entries, &[host.to_owned()]);
            assert_eq!(left_now.as_deref(), left, "{entries:?} for {host}");
        }
    }

    /// What `variables` changes for a child given `env`, as `name=value` or `name` when removed.
    fn changes(env: &[(&str, &str)]) -> Vec<String> {
        let hosts = ["api.github.com".to_owned(), "github.com".to_owned()];
        let route = Route {
            proxy_url: "http://tk:s3cret@127.0.0.1:4321",
            hosts: &hosts,
            bundle: Path::new("/run/bundle.pem"),
            authority: Path::new("/run/ca.pem"),
            token: "ghs_live",
            token_variables: &["RENOVATE_TOKEN".to_owned(), "GH_TOKEN".to_owned()],
        };
        let changes = variables(&route, &Env::from_pairs(env.iter().copied()));
        let shown = |(name, value): (String, Option<String>)| match value {
            Some(value) => format!("{name}={value}"),
            None => name,
        };
        changes.into_iter().map(shown).collect()
    }

    fn has(changes: &[String], change: &str) -> bool {
        changes.iter().any(|c| c == change)
    }

    #[test]
    fn every_proxy_variable_names_the_proxy_in_both_cases() {
        let changes = changes(&[("HTTPS_PROXY", "http://corp:3128"), ("http_proxy", "x")]);
        for name in PROXY_VARIABLES {
            assert!(
                has(&changes, &format!("{name}=http://tk:s3cret@127.0.0.1:4321")),
                "{name}"
            );
        }
        assert!(
            !changes
                .iter()
                .any(|c| c.to_ascii_uppercase().starts_with("ALL_PROXY"))
        );
        assert!(has(&changes, "NODE_USE_ENV_PROXY=1"));
    }

    #[test]
    fn the_users_own_proxy_is_kept_for_our_calls_and_a_proxys_child_keeps_the_first() {
        let changes = self::changes(&[
            ("HTTPS_PROXY", "http://corp:3128"),
            ("NO_PROXY", "ghe.corp,github.com"),
        ]);
        assert!(has(&changes, "TOKEN_KEEPER_ONWARD_PROXY=http://corp:3128"));
        assert!(has(
            &changes,
            "TOKEN_KEEPER_ONWARD_NO_PROXY=ghe.corp,github.com"
        ));
        let changes = self::changes(&[(HttpEnv::ONWARD_PROXY, "http://stale:1")]);
        assert!(has(&changes, "TOKEN_KEEPER_ONWARD_PROXY"), "{changes:?}");
        let nested = self::changes(&[
            ("https_proxy", "http://token-keeper:first@127.0.0.1:4000"),
            (HttpEnv::ONWARD_PROXY, "http://corp:3128"),
        ]);
        assert!(
            !nested.iter().any(|c| c.starts_with("TOKEN_KEEPER_ONWARD")),
            "{nested:?}"
        );
    }

    #[test]
    fn both_no_proxy_spellings_get_the_users_entries_merged() {
        let changes = self::changes(&[
            ("no_proxy", "a.corp,.github.com"),
            ("NO_PROXY", "A.corp,b.corp"),
        ]);
        assert!(has(&changes, "no_proxy=a.corp,b.corp") && has(&changes, "NO_PROXY=a.corp,b.corp"));
        let changes = self::changes(&[("NO_PROXY", "*")]);
        assert!(has(&changes, "no_proxy") && has(&changes, "NO_PROXY"));
    }

    #[test]
    fn replacing_ca_variables_name_the_bundle_even_when_the_user_set_them() {
        let env: Vec<_> = REPLACING
            .iter()
            .map(|name| (*name, "/etc/ssl/mine.pem"))
            .collect();
        let changes = changes(&env);
        for name in REPLACING {
            assert!(has(&changes, &format!("{name}=/run/bundle.pem")), "{name}");
        }
    }

    #[test]
    fn node_adds_our_ca_alone_or_the_bundle_that_holds_the_users_own() {
        assert!(has(&changes(&[]), "NODE_EXTRA_CA_CERTS=/run/ca.pem"));
        let theirs = changes(&[(NODE_EXTRA, "/etc/corp-ca.pem")]);
        assert!(has(&theirs, "NODE_EXTRA_CA_CERTS=/run/bundle.pem"));
    }

    #[test]
    fn token_variables_hold_the_token_each_once() {
        let changes = changes(&[("GH_TOKEN", "ghs_old")]);
        for name in ["GH_TOKEN", "GITHUB_TOKEN", "RENOVATE_TOKEN"] {
            assert!(has(&changes, &format!("{name}=ghs_live")), "{name}");
        }
        assert_eq!(
            changes
                .iter()
                .filter(|c| c.starts_with("GH_TOKEN="))
                .count(),
            1
        );
    }

    #[test]
    fn variable_names_are_checked_without_echoing_a_token() {
        for good in ["GITHUB_PERSONAL_ACCESS_TOKEN", "_x", "a1"] {
            assert_eq!(check_variable_name(good), Ok(()), "{good}");
        }
        let token = format!("ghs_{}", "aB3".repeat(12));
        for bad in [
            token.clone(),
            format!("RENOVATE_TOKEN={token}"),
            format!("1{token}"),
        ] {
            let err = check_variable_name(&bad).unwrap_err().to_string();
            assert!(
                !err.contains(&token) && err.contains("like `RENOVATE_TOKEN`"),
                "{err}"
            );
        }
        let err = check_variable_name("MY-TOKEN").unwrap_err().to_string();
        assert!(
            err.starts_with("`MY-TOKEN` is not a variable's name"),
            "{err}"
        );
        assert!(check_variable_name(&"A".repeat(65)).is_err() && check_variable_name("").is_err());
    }

    #[test]
    fn users_bundles_are_the_existing_files_each_once() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "").unwrap();
        let (ca_text, missing) = (ca.to_str().unwrap(), dir.path().join("missing.pem"));
        let env = Env::from_pairs([
            ("SSL_CERT_FILE", ca_text),
            ("GIT_SSL_CAINFO", missing.to_str().unwrap()),
            (NODE_EXTRA, ca_text),
            ("CURL_CA_BUNDLE", ""),
        ]);
        assert_eq!(users_bundles(&env), vec![ca]);
    }

    #[test]
    fn bundle_holds_each_block_once_each_ending_in_a_newline() {
        let a = "-----BEGIN CERTIFICATE-----\nQUFB\n-----END CERTIFICATE-----";
        let b = "-----BEGIN CERTIFICATE-----\nQkJC\n-----END CERTIFICATE-----\n";
        let users = [
            format!("# Issuer: a\r\n{}\r\n", a.replace('\n', "\r\n")),
            b.to_owned(),
        ];
        assert_eq!(bundle(&format!("{a}\n{b}"), &users, a), format!("{a}\n{b}"));
        assert_eq!(bundle("", &[], a), format!("{a}\n"));
    }

    #[test]
    fn system_roots_come_back_through_rustls() {
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        let pem = system_roots_pem();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
        let parsed: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(!parsed.is_empty());
        assert_eq!(parsed, rustls_native_certs::load_native_certs().certs);
        assert!(
            pem.lines()
                .all(|line| line.len() <= 64 || line.starts_with("-----"))
        );
    }
}
