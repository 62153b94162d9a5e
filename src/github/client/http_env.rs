//! What the environment says about our HTTP calls: the `TOKEN_KEEPER_*` variables that shorten
//! their bounds or send a host to an address of our choosing, and whether they go past a
//! token-keeper proxy; and the bounds of one call that come of it.

use std::net::IpAddr;
use std::time::Duration;

use super::ApiError;
use crate::duration::parse_duration;
use crate::env::Env;

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
    /// Hosts whose connections go to an address of the caller's choosing.
    pub(super) resolve: Vec<(String, Resolved)>,
    /// Whether to go past the proxy the environment names, one of ours, and where instead.
    pub(super) past_our_proxy: Option<PastOurProxy>,
}

impl HttpOptions {
    /// These options for a service on the link or on loopback (a metadata service): each wait
    /// at most `timeout`, and never through a proxy.
    pub(crate) fn local(&self, timeout: Duration) -> Self {
        Self {
            connect_timeout: timeout,
            read_timeout: timeout,
            past_our_proxy: Some(PastOurProxy::default()),
            ..self.clone()
        }
    }
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(20),
            deadline: Duration::from_secs(60),
            retry_base: Duration::from_millis(500),
            extra_ca_pem: None,
            resolve: Vec::new(),
            past_our_proxy: None,
        }
    }
}

/// What the environment says about our HTTP calls: bounds shortened (for tests of hanging
/// servers, or a user who would rather fail fast), hosts resolved by hand, our own proxy gone
/// past.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HttpEnv {
    connect_timeout: Option<Duration>,
    read_timeout: Option<Duration>,
    deadline: Option<Duration>,
    retry_base: Option<Duration>,
    /// Hosts sent to addresses of the caller's choosing (`RESOLVE`).
    resolve: Vec<(String, Resolved)>,
    /// The process's proxy variables name a token-keeper proxy (it runs in a child of
    /// `exec --proxy`, or after `proxy start`'s lines): our own calls go past it, as that proxy
    /// may be ending with the store they end.
    past_our_proxy: Option<PastOurProxy>,
}

/// Where our own calls go past a token-keeper proxy: through the user's own proxy that one sends
/// on to, as the proxy's variables carried it (`ONWARD_PROXY`), or straight.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PastOurProxy {
    /// The user's proxy URL.
    pub(crate) onward: Option<String>,
    /// The user's own `NO_PROXY`, before GitHub's hosts were taken out of it.
    pub(crate) no_proxy: Option<String>,
}

impl HttpEnv {
    /// `host=ADDRESS[:PORT][,…]`: connections to each host go to its address, as if DNS said so,
    /// and the proxy's to its port too (the keeper's own client takes the URL's port). For tests
    /// that serve GitHub under a real-looking name on loopback: only where a connection goes
    /// changes, never the name a certificate is checked for or a token is meant for.
    pub(crate) const RESOLVE: &str = "TOKEN_KEEPER_RESOLVE";

    /// The user's own proxy and `NO_PROXY`, which routing a child through our proxy replaced.
    pub(crate) const ONWARD_PROXY: &str = "TOKEN_KEEPER_ONWARD_PROXY";
    pub(crate) const ONWARD_NO_PROXY: &str = "TOKEN_KEEPER_ONWARD_NO_PROXY";

    /// The variables, in the order of `from_env`'s fields.
    pub(crate) const VARIABLES: [&str; 4] = [
        "TOKEN_KEEPER_CONNECT_TIMEOUT",
        "TOKEN_KEEPER_READ_TIMEOUT",
        "TOKEN_KEEPER_DEADLINE",
        "TOKEN_KEEPER_RETRY_BASE",
    ];

    /// Read them from `env` (the process's, or the step's).
    pub(crate) fn from_env(env: &Env) -> Result<Self, ApiError> {
        let read = |name: &str| -> Result<Option<Duration>, ApiError> {
            match env.given(name) {
                None => Ok(None),
                Some(text) => parse_duration(text).map(Some).map_err(|e| {
                    ApiError::Setup(format!("`{name}`: {e}: use for example `5s` or `200ms`"))
                }),
            }
        };
        let [connect, read_next, deadline, retry] = Self::VARIABLES;
        Ok(Self {
            connect_timeout: read(connect)?,
            read_timeout: read(read_next)?,
            deadline: read(deadline)?,
            retry_base: read(retry)?,
            resolve: resolve(env.given(Self::RESOLVE).unwrap_or_default())?,
            past_our_proxy: ["https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"]
                .iter()
                .filter_map(|name| env.given(name))
                .any(is_our_proxy)
                .then(|| PastOurProxy {
                    onward: env.given(Self::ONWARD_PROXY).map(str::to_owned),
                    no_proxy: env.given(Self::ONWARD_NO_PROXY).map(str::to_owned),
                }),
        })
    }

    /// Where connections to `host` go instead of where DNS says, if anywhere.
    pub(crate) fn address_of(&self, host: &str) -> Option<Resolved> {
        self.resolve
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(host))
            .map(|(_, resolved)| *resolved)
    }

    /// The bounds of calls that may take `deadline` in all, with these applied.
    pub(crate) fn options(&self, deadline: Duration, extra_ca_pem: Option<String>) -> HttpOptions {
        let defaults = HttpOptions::default();
        HttpOptions {
            connect_timeout: self.connect_timeout.unwrap_or(defaults.connect_timeout),
            read_timeout: self.read_timeout.unwrap_or(defaults.read_timeout),
            deadline: self.deadline.map_or(deadline, |d| d.min(deadline)),
            retry_base: self.retry_base.unwrap_or(defaults.retry_base),
            extra_ca_pem,
            resolve: self.resolve.clone(),
            past_our_proxy: self.past_our_proxy.clone(),
        }
    }
}

/// The user name in a token-keeper proxy's URL; the password is the run's secret.
const OUR_PROXY_USER: &str = "token-keeper";

/// The URL of a token-keeper proxy on loopback `port` whose secret is `secret`.
pub(crate) fn our_proxy_url(secret: &str, port: u16) -> String {
    format!("http://{OUR_PROXY_USER}:{secret}@127.0.0.1:{port}")
}

/// Whether `url` is a token-keeper proxy's: on loopback, with our user name.
pub(crate) fn is_our_proxy(url: &str) -> bool {
    // Every process of a proxied child asks, git's helper among them: most URLs end here.
    if !url.contains(OUR_PROXY_USER) {
        return false;
    }
    url::Url::parse(url).is_ok_and(|url| {
        url.username() == OUR_PROXY_USER
            && url
                .host_str()
                .is_some_and(|h| h == "127.0.0.1" || h == "localhost" || h == "[::1]")
    })
}

/// Where `TOKEN_KEEPER_RESOLVE` sends a host's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Resolved {
    pub(crate) address: IpAddr,
    /// The port to use instead of the one asked for, if any.
    pub(crate) port: Option<u16>,
}

fn resolve(text: &str) -> Result<Vec<(String, Resolved)>, ApiError> {
    let bad = || {
        ApiError::Setup(format!(
            "`{}`: `{}` is not `host=ADDRESS[,host=ADDRESS…]`",
            HttpEnv::RESOLVE,
            crate::messages::short(text)
        ))
    };
    text.split(',')
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| {
            let (host, target) = pair.trim().split_once('=').ok_or_else(bad)?;
            let target = target.trim();
            let resolved = match target.parse::<std::net::SocketAddr>() {
                Ok(socket) => Resolved {
                    address: socket.ip(),
                    port: Some(socket.port()),
                },
                Err(_) => Resolved {
                    address: target.parse().map_err(|_| bad())?,
                    port: None,
                },
            };
            Ok((host.trim().to_ascii_lowercase(), resolved))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_shortens_the_bounds_and_a_bad_one_is_named() {
        let http_env =
            HttpEnv::from_env(&Env::from_pairs([("TOKEN_KEEPER_DEADLINE", "3s")])).unwrap();
        let deadline = |allowed| http_env.options(allowed, None).deadline;
        assert_eq!(deadline(Duration::from_secs(20)), Duration::from_secs(3));
        assert_eq!(
            deadline(Duration::from_secs(1)),
            Duration::from_secs(1),
            "never longer"
        );
        assert_eq!(
            HttpEnv::default()
                .options(Duration::from_secs(20), None)
                .deadline,
            Duration::from_secs(20)
        );
        let bad = Env::from_pairs([("TOKEN_KEEPER_READ_TIMEOUT", "soon")]);
        let err = HttpEnv::from_env(&bad).unwrap_err().to_string();
        assert!(err.contains("`TOKEN_KEEPER_READ_TIMEOUT`"), "{err}");
    }

    #[test]
    fn resolved_hosts_go_to_their_address_and_a_bad_list_is_named() {
        let env = Env::from_pairs([(
            HttpEnv::RESOLVE,
            "API.github.test=127.0.0.1, git.test=::1, api.github.com=127.0.0.1:8443",
        )]);
        let http_env = HttpEnv::from_env(&env).unwrap();
        let at = |address: &str, port| Resolved {
            address: address.parse().unwrap(),
            port,
        };
        assert_eq!(
            http_env.address_of("api.GitHub.test"),
            Some(at("127.0.0.1", None))
        );
        assert_eq!(http_env.address_of("git.test"), Some(at("::1", None)));
        assert_eq!(
            http_env.address_of("api.github.com"),
            Some(at("127.0.0.1", Some(8443)))
        );
        assert_eq!(http_env.address_of("github.com"), None);
        assert!(http_env.past_our_proxy.is_none());
        let ours = Env::from_pairs([("HTTPS_PROXY", "http://token-keeper:abc@127.0.0.1:4000")]);
        let past = HttpEnv::from_env(&ours).unwrap().past_our_proxy;
        assert_eq!(
            past,
            Some(PastOurProxy {
                onward: None,
                no_proxy: None
            })
        );
        let behind = Env::from_pairs([
            ("HTTPS_PROXY", "http://token-keeper:abc@127.0.0.1:4000"),
            (HttpEnv::ONWARD_PROXY, "http://proxy.corp:3128"),
            (HttpEnv::ONWARD_NO_PROXY, "ghe.corp"),
        ]);
        let past = HttpEnv::from_env(&behind).unwrap().past_our_proxy.unwrap();
        assert_eq!(past.onward.as_deref(), Some("http://proxy.corp:3128"));
        assert_eq!(past.no_proxy.as_deref(), Some("ghe.corp"));
        let theirs = Env::from_pairs([("https_proxy", "http://token-keeper:abc@proxy.corp:3128")]);
        assert!(HttpEnv::from_env(&theirs).unwrap().past_our_proxy.is_none());
        let bad = Env::from_pairs([(HttpEnv::RESOLVE, "api.github.test")]);
        let err = HttpEnv::from_env(&bad).unwrap_err().to_string();
        assert!(err.contains("`TOKEN_KEEPER_RESOLVE`"), "{err}");
    }
}
