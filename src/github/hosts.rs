//! GitHub's servers: which are its cloud (github.com, GHE.com) and which Enterprise Server, and
//! the git server an API URL stands for.

use url::Url;

/// GitHub's own git server, and its API's host.
pub(crate) const GITHUB_COM: &str = "github.com";
const API_GITHUB_COM: &str = "api.github.com";

/// Whether `host` is one of GitHub's cloud servers, whose API description (and permission list)
/// we ship: github.com and its API, or a GHE.com subdomain.
pub(crate) fn is_cloud(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    host == GITHUB_COM || host == API_GITHUB_COM || host.ends_with(".ghe.com")
}

/// A server as hosts and audiences name it: its host, and its port when the URL gives one
/// (`github.com`, `ghes.example.com:8443`).
pub(crate) fn host_and_port(url: &Url) -> Option<String> {
    let host = url.host_str()?;
    Some(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    })
}

/// The git server that tokens minted through `api` are meant for: `api.github.com` →
/// `github.com`, `api.SUB.ghe.com` → `SUB.ghe.com`, `HOST/api/v3` → `HOST`.
pub(crate) fn git_server_of(api: &Url) -> Option<Url> {
    let host = api.host_str()?.to_ascii_lowercase();
    let mut server = api.clone();
    server.set_path("");
    if host == API_GITHUB_COM {
        server.set_host(Some(GITHUB_COM)).ok()?;
        return Some(server);
    }
    if let Some(sub) = host
        .strip_prefix("api.")
        .filter(|h| h.ends_with(".ghe.com"))
    {
        server.set_host(Some(sub)).ok()?;
        return Some(server);
    }
    let prefix = api.path().trim_end_matches('/').strip_suffix("/api/v3")?;
    server.set_path(prefix);
    Some(server)
}

/// The hosts a token for the API `api` and the git server `git` is sent to: those two, and on
/// github.com the hosts its API's answers point at for uploads and raw files. On Enterprise
/// Server and GHE.com both live under the API's or the git server's host.
pub(crate) fn served(api: &Url, git: &Url) -> Vec<String> {
    let mut hosts: Vec<String> = [api, git]
        .into_iter()
        .filter_map(Url::host_str)
        .map(str::to_ascii_lowercase)
        .collect();
    if hosts.iter().any(|h| h == API_GITHUB_COM || h == GITHUB_COM) {
        hosts.extend(["uploads.github.com", "raw.githubusercontent.com"].map(str::to_owned));
    }
    let mut seen = std::collections::HashSet::new();
    hosts.retain(|h| seen.insert(h.clone()));
    hosts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_serves_its_api_and_git_hosts_and_on_github_com_the_ones_its_answers_name() {
        let url = |u: &str| Url::parse(u).unwrap();
        assert_eq!(
            served(&url("https://api.github.com"), &url("https://github.com")),
            [
                "api.github.com",
                "github.com",
                "uploads.github.com",
                "raw.githubusercontent.com"
            ]
        );
        assert_eq!(
            served(
                &url("https://GHES.example.com/api/v3"),
                &url("https://ghes.example.com")
            ),
            ["ghes.example.com"]
        );
    }

    #[test]
    fn the_cloud_is_github_com_and_ghe_com() {
        for host in [
            "github.com",
            "API.GitHub.com",
            "octo.ghe.com",
            "api.octo.ghe.com",
        ] {
            assert!(is_cloud(host), "{host}");
        }
        for host in [
            "ghes.example.com",
            "127.0.0.1",
            "github.com.evil.com",
            "ghe.com.x",
        ] {
            assert!(!is_cloud(host), "{host}");
        }
    }

    #[test]
    fn a_server_is_named_by_its_host_and_any_port_given() {
        let named = |url: &str| host_and_port(&Url::parse(url).unwrap());
        assert_eq!(named("https://github.com/"), Some("github.com".into()));
        assert_eq!(named("https://github.com:443/"), Some("github.com".into()));
        assert_eq!(
            named("https://ghes.example.com:8443"),
            Some("ghes.example.com:8443".into())
        );
        assert_eq!(named("http://[::1]:9/"), Some("[::1]:9".into()));
    }

    #[test]
    fn git_server_is_derived_from_the_api_url() {
        let cases = [
            ("https://api.github.com", Some("https://github.com/")),
            (
                "https://ghes.example.com/api/v3",
                Some("https://ghes.example.com/"),
            ),
            (
                "https://ghes.example.com:8443/api/v3/",
                Some("https://ghes.example.com:8443/"),
            ),
            ("https://api.octo.ghe.com", Some("https://octo.ghe.com/")),
            ("http://127.0.0.1:9000", None),
        ];
        for (api, server) in cases {
            let derived = git_server_of(&Url::parse(api).unwrap());
            assert_eq!(derived.as_ref().map(Url::as_str), server, "{api}");
        }
    }
}
