//! The user's own proxy, for what ours sends on: the `https_proxy` (for TLS and tunnels) and
//! `http_proxy` (for plain HTTP) that `exec` was given, as curl reads them (lower case first),
//! and the hosts their `NO_PROXY` keeps from them. Parsed here, pure; `server` dials through it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use url::Url;

use super::route;
use crate::env::Env;
use crate::messages;

/// A proxy of the user's: where it listens, and the credentials its URL carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Onward {
    pub(super) host: String,
    pub(super) port: u16,
    /// `Proxy-Authorization`'s value, when the URL names a user.
    pub(super) authorization: Option<String>,
}

/// The user's proxies, for TLS (and tunnels) and for plain HTTP, and their exceptions.
#[derive(Debug, Clone, Default)]
pub(super) struct Onwards {
    tls: Option<Onward>,
    plain: Option<Onward>,
    no_proxy: String,
}

impl Onwards {
    /// The proxies `env` names. One that is not an `http://` URL is refused: our connections to
    /// it would not be what the user meant.
    pub(super) fn from_env(env: &Env) -> Result<Self, BadOnward> {
        let pick = |names: [&'static str; 2]| -> Result<Option<Onward>, BadOnward> {
            names
                .into_iter()
                .find_map(|name| env.given(name).map(|url| onward(name, url)))
                .transpose()
        };
        Ok(Self {
            tls: pick(["https_proxy", "HTTPS_PROXY"])?,
            plain: pick(["http_proxy", "HTTP_PROXY"])?,
            no_proxy: [env.get("no_proxy"), env.get("NO_PROXY")]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(","),
        })
    }

    /// The proxy a connection to `host` goes through: for TLS and tunnels (`tls`), or plain HTTP.
    pub(super) fn for_host(&self, host: &str, tls: bool) -> Option<&Onward> {
        let onward = if tls { &self.tls } else { &self.plain };
        onward
            .as_ref()
            .filter(|_| !route::keeps_from_proxy(&self.no_proxy, host))
    }
}

/// A proxy variable of the user's that names no proxy ours can go through, and why.
#[derive(Debug, thiserror::Error)]
#[error("`{name}`: {why}: use `http://[USER:PASSWORD@]HOST:PORT`")]
pub(super) struct BadOnward {
    name: &'static str,
    why: Unfit,
}

/// What is wrong with a proxy's URL.
#[derive(Debug, thiserror::Error)]
enum Unfit {
    #[error("not a URL")]
    NotUrl,
    /// Its scheme, shortened.
    #[error("a `{0}` proxy is not one token-keeper's proxy can go through")]
    Scheme(String),
    #[error("no host")]
    NoHost,
}

fn onward(name: &'static str, text: &str) -> Result<Onward, BadOnward> {
    let bad = |why: Unfit| BadOnward { name, why };
    // curl takes a bare `host:port` as an http proxy.
    let text = if text.contains("://") {
        text.to_owned()
    } else {
        format!("http://{text}")
    };
    let url = Url::parse(&text).map_err(|_| bad(Unfit::NotUrl))?;
    if url.scheme() != "http" {
        return Err(bad(Unfit::Scheme(messages::short(url.scheme()))));
    }
    let host = url.host_str().ok_or_else(|| bad(Unfit::NoHost))?;
    let authorization = (!url.username().is_empty()).then(|| {
        let user = percent(url.username());
        let password = percent(url.password().unwrap_or_default());
        format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
    });
    Ok(Onward {
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        port: url.port_or_known_default().unwrap_or(80),
        authorization,
    })
}

/// A URL's user or password as it was meant, its `%XX` escapes undone.
fn percent(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={text}").as_bytes())
        .next()
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_users_proxies_are_read_as_curl_reads_them_and_their_exceptions_kept() {
        let env = Env::from_pairs([
            ("HTTPS_PROXY", "http://upper:8080"),
            ("https_proxy", "http://alice:p%40ss@corp-proxy:3128"),
            ("http_proxy", "plain-proxy:8000"),
            ("NO_PROXY", "internal.example"),
        ]);
        let onwards = Onwards::from_env(&env).unwrap();
        let tls = onwards.for_host("api.github.com", true).unwrap();
        assert_eq!((tls.host.as_str(), tls.port), ("corp-proxy", 3128));
        assert_eq!(
            tls.authorization.as_deref(),
            Some(format!("Basic {}", STANDARD.encode("alice:p@ss")).as_str())
        );
        assert_eq!(
            onwards
                .for_host("example.com", false)
                .map(|o| o.host.as_str()),
            Some("plain-proxy")
        );
        assert_eq!(onwards.for_host("git.internal.example", true), None);
    }

    #[test]
    fn no_proxy_of_the_users_means_none_and_another_scheme_is_refused() {
        let none = Onwards::from_env(&Env::default()).unwrap();
        assert_eq!(none.for_host("api.github.com", true), None);
        let socks = Env::from_pairs([("https_proxy", "socks5://127.0.0.1:1080")]);
        let err = Onwards::from_env(&socks).unwrap_err().to_string();
        assert!(err.starts_with("`https_proxy`: a `socks5` proxy"), "{err}");
    }
}
