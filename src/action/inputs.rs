//! The step's inputs (`INPUT_*` variables) turned into a checked `Config`. Pure: no I/O.
//!
//! The runner sets every declared input, empty when the workflow leaves it out, and keeps the
//! hyphens of input names (`INPUT_APP-ID`): empty means unset, and names are read from the
//! environment map, never through a shell.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use reqwest::Url;

use super::env::Env;
use super::permissions;
use crate::duration::parse_duration;
use crate::github::apps::TOKEN_LIFETIME;
use crate::github::client::{self, ApiError};
use crate::github::exchange::Exchange;
use crate::github::{KeyError, PrivateKey, Target, TokenRequest, hosts, names};
use crate::keeper::source::{IdentityFrom, TokenSource};
use crate::keeper::state::{Api, MintConfig};
use crate::messages::short;

/// The defaults of the inputs that have one, as `action.yml` declares them (a test checks that
/// the two agree): an input left empty takes its default from here.
pub const DEFAULTS: &[(&str, &str)] = &[
    ("git-credentials", "true"),
    ("git-identity", "false"),
    ("override-checkout-credentials", "true"),
    ("refresh-after", "50m"),
    ("skip-token-revoke", "false"),
    ("sts-domain", "octo-sts.dev"),
];
/// Re-mints at most once a minute: a shorter age would mint for nearly every git command.
const MIN_REFRESH_AFTER: Duration = Duration::from_secs(60);

/// Everything the main step needs, checked.
#[derive(Debug)]
pub(crate) struct Config {
    /// The App's key (its installation not looked up yet), or an exchange.
    pub(crate) source: TokenSource,
    /// The App's private key, with an App source; keyless has none.
    pub(crate) key: Option<PrivateKey>,
    pub(crate) target: Target,
    pub(crate) request: TokenRequest,
    pub(crate) api_url: Url,
    /// The git server the tokens are for; `None` when it cannot be told from the API URL.
    pub(crate) git_server: Option<Url>,
    pub(crate) refresh_after: Duration,
    /// Install the git credential shim for later steps.
    pub(crate) git_credentials: bool,
    /// Clear `actions/checkout`'s auth header within the token's scope.
    pub(crate) override_checkout_credentials: bool,
    /// Variables to export the token to for later steps.
    pub(crate) export_env: Vec<String>,
    /// Make the App's bot the git author and committer of later steps.
    pub(crate) git_identity: bool,
    pub(crate) ca_certificates: Option<String>,
    /// Inputs taken but not vouched for: permission names or levels GitHub's list lacks, which
    /// go to GitHub as given.
    pub(crate) doubts: Vec<InputError>,
}

impl Config {
    /// The owner whose repositories the tokens reach: as GitHub spells it, once the first mint
    /// found the installation; a keyless answer names none, so the scope's, as asked.
    pub(crate) fn account(&self, source: &TokenSource) -> String {
        source
            .installation()
            .map_or_else(|| self.target.owner().to_owned(), |i| i.account.clone())
    }

    /// What later re-mints need: what was asked for, from the source the first mint settled,
    /// for the git server `server`.
    pub(crate) fn kept(&self, source: &TokenSource, server: &Url) -> MintConfig {
        MintConfig {
            api: self.api(),
            git_server: server.to_string(),
            source: source.clone(),
            account: self.account(source),
            request: self.request.clone(),
            refresh_after: self.refresh_after.as_secs(),
        }
    }

    /// The API tokens come from, as a store keeps it to revoke them.
    pub(crate) fn api(&self) -> Api {
        Api {
            api_url: self.api_url.to_string(),
            ca_certificates: self.ca_certificates.clone(),
        }
    }
}

/// A bad input: which one, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("input `{input}`: {message}")]
pub(crate) struct InputError {
    pub(crate) input: String,
    pub(crate) message: String,
}

fn bad(input: &str, message: impl Into<String>) -> InputError {
    InputError {
        input: input.to_owned(),
        message: message.into(),
    }
}

/// An input's value; empty and blank count as unset.
pub(crate) fn input<'a>(env: &'a Env, name: &str) -> Option<&'a str> {
    let key = format!("INPUT_{}", name.to_ascii_uppercase().replace(' ', "_"));
    env.get(&key).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// An input's value, or its default from `DEFAULTS`.
fn input_or_default<'a>(env: &'a Env, name: &str) -> &'a str {
    input(env, name).unwrap_or_else(|| {
        DEFAULTS
            .iter()
            .find(|(input, _)| *input == name)
            .map_or("", |(_, default)| default)
    })
}

/// Read and check every input of the main step.
pub(crate) fn parse(env: &Env) -> Result<Config, InputError> {
    let keyless = input(env, "sts-identity").is_some();
    let api_url = api_url(env)?;
    let git_server = match input(env, "git-server-url") {
        Some(text) => Some(parse_url("git-server-url", text)?),
        None => hosts::git_server_of(&api_url),
    };
    let refresh_after = refresh_after(input_or_default(env, "refresh-after"))?;
    // Read by the post step; checked here, so that a typo fails the job at its start.
    boolean(env, "skip-token-revoke")?;
    let (source, key, target) = if keyless {
        let (exchange, target) = keyless_source(env)?;
        let source = TokenSource::Exchange {
            exchange,
            identity: IdentityFrom::Actions,
        };
        (source, None, target)
    } else {
        let (issuer, key) = app_source(env)?;
        let source = TokenSource::App {
            issuer,
            installation: None,
        };
        (source, Some(key), target(env)?)
    };
    let repositories = match &target {
        Target::Repositories { repos, .. } => repos.clone(),
        _ => Vec::new(),
    };
    // The list we ship is GitHub's cloud's; each Enterprise Server version lists its own, so
    // there a name we do not know is no reason to warn.
    let listed = [Some(&api_url), git_server.as_ref()]
        .into_iter()
        .flatten()
        .filter_map(Url::host_str)
        .any(hosts::is_cloud);
    let (permissions, doubts) = permissions(env, listed);
    if keyless && !permissions.is_empty() {
        return Err(bad(
            "sts-identity",
            "a keyless token gets what its trust policy grants: remove the `permission-*` inputs, or grant less in the policy",
        ));
    }
    Ok(Config {
        source,
        key,
        target,
        request: TokenRequest {
            repositories,
            permissions,
        },
        doubts,
        api_url,
        git_server,
        refresh_after,
        git_credentials: boolean(env, "git-credentials")?,
        override_checkout_credentials: boolean(env, "override-checkout-credentials")?,
        export_env: export_env(env)?,
        git_identity: boolean(env, "git-identity")?,
        ca_certificates: ca_certificates(env)?,
    })
}

/// The App's id (or client id) and its key.
fn app_source(env: &Env) -> Result<(String, PrivateKey), InputError> {
    let issuer = match (input(env, "client-id"), input(env, "app-id")) {
        (Some(client), _) => ("client-id", client),
        (None, Some(app)) => ("app-id", app),
        (None, None) => {
            return Err(bad(
                "app-id",
                "neither `app-id` nor `client-id` is set: pass the App's client id (or app id) from its settings page, or use keyless mode with `sts-identity`",
            ));
        }
    };
    if issuer
        .1
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(bad(
            issuer.0,
            "the App id or client id has blanks in it: pass it alone, as the App's settings page shows it",
        ));
    }
    let key_text = input(env, "private-key").ok_or_else(|| {
        bad(
            "private-key",
            "is not set: pass the App's private key, for example `private-key: ${{ secrets.APP_PRIVATE_KEY }}`",
        )
    })?;
    let key =
        PrivateKey::parse(key_text).map_err(|e: KeyError| bad("private-key", e.to_string()))?;
    Ok((issuer.1.to_owned(), key))
}

/// Keyless mode: the exchange service, scope and policy, and the target the scope names. The
/// scope defaults as `owner` and `repositories` do, to one repository or a whole owner.
fn keyless_source(env: &Env) -> Result<(Exchange, Target), InputError> {
    for name in ["app-id", "client-id", "private-key", "enterprise"] {
        if input(env, name).is_some() {
            return Err(bad(
                name,
                "is set in keyless mode (`sts-identity`): no App key is needed there; remove it, or remove `sts-identity` to mint with the key",
            ));
        }
    }
    let identity = input(env, "sts-identity").unwrap_or_default();
    check_name("sts-identity", identity)?;
    let domain = input_or_default(env, "sts-domain");
    let service = if domain.contains("://") {
        parse_url("sts-domain", domain)?
    } else {
        parse_url("sts-domain", &format!("https://{domain}"))?
    };
    let scope = match input(env, "sts-scope") {
        Some(scope) => scope.to_owned(),
        None => match target(env)? {
            Target::Repositories { owner, repos } if repos.len() == 1 => {
                format!("{owner}/{}", repos[0])
            }
            Target::Owner(owner) => owner,
            _ => {
                return Err(bad(
                    "sts-scope",
                    "a keyless token covers one repository or one owner: set `sts-scope` (`owner/repo` or `owner`)",
                ));
            }
        },
    };
    let target = match scope.split_once('/') {
        Some((owner, repo)) => {
            check_name("sts-scope", owner)?;
            check_name("sts-scope", repo)?;
            Target::Repositories {
                owner: owner.to_owned(),
                repos: vec![repo.to_owned()],
            }
        }
        None => {
            check_name("sts-scope", &scope)?;
            Target::Owner(scope.clone())
        }
    };
    let exchange = Exchange {
        service,
        scope,
        policy: identity.to_owned(),
    };
    Ok((exchange, target))
}

/// The API base URL: the input, else `GITHUB_API_URL`, else github.com's.
pub(crate) fn api_url(env: &Env) -> Result<Url, InputError> {
    let text = input(env, "github-api-url")
        .or_else(|| {
            env.get("GITHUB_API_URL")
                .map(String::as_str)
                .filter(|v| !v.is_empty())
        })
        .unwrap_or("https://api.github.com");
    parse_url("github-api-url", text)
}

fn parse_url(name: &str, text: &str) -> Result<Url, InputError> {
    let shown = shown_url(text);
    // The URL parser drops tabs and line breaks silently: a value holding one is not what it
    // looks like.
    if text.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(bad(
            name,
            format!("`{shown}` has a line break or a blank in it: pass the URL alone"),
        ));
    }
    let mut url = Url::parse(text.trim_end_matches('/')).map_err(|e| {
        bad(
            name,
            format!("`{shown}` is not a URL ({e}): pass for example `https://api.github.com`"),
        )
    })?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(bad(
                name,
                format!(
                    "`{shown}` uses plain http, which would send credentials in clear: use https (plain http is allowed only on loopback)"
                ),
            ));
        }
        other => {
            return Err(bad(
                name,
                format!("`{shown}` has scheme `{other}`: use an https URL"),
            ));
        }
    }
    if url.host_str().is_none()
        || url.query().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(bad(
            name,
            format!("`{shown}` must be a plain https URL with a host, no user and no query"),
        ));
    }
    url.set_fragment(None);
    Ok(url)
}

/// A URL as an error may show it: a user, password, query or fragment can hold a secret, so
/// they are replaced by `…`.
fn shown_url(text: &str) -> String {
    let (scheme, rest) = match text.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), text),
    };
    let (before, tail) = match rest.find(['?', '#']) {
        Some(at) => (&rest[..at], "…"),
        None => (rest, ""),
    };
    let (authority, path) = before.split_at(before.find('/').unwrap_or(before.len()));
    let authority = match authority.rsplit_once('@') {
        Some((_, host)) => format!("…@{host}"),
        None => authority.to_owned(),
    };
    let shown: String = format!("{scheme}{authority}{path}{tail}")
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    short(&shown)
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

fn target(env: &Env) -> Result<Target, InputError> {
    let owner = input(env, "owner");
    let repositories = input(env, "repositories")
        .map(split_list)
        .unwrap_or_default();
    if let Some(enterprise) = input(env, "enterprise") {
        if owner.is_some() || !repositories.is_empty() {
            return Err(bad(
                "enterprise",
                "an enterprise installation has no owner or repositories: leave `owner` and `repositories` empty, or `enterprise` empty",
            ));
        }
        check_name("enterprise", enterprise)?;
        return Ok(Target::Enterprise(enterprise.to_owned()));
    }
    let current = env.get("GITHUB_REPOSITORY").and_then(|r| r.split_once('/'));
    match (owner, repositories.is_empty()) {
        (Some(owner), true) => {
            check_name("owner", owner)?;
            Ok(Target::Owner(owner.to_owned()))
        }
        (owner, false) => {
            let owner = owner
                .map(str::to_owned)
                .or_else(|| env.get("GITHUB_REPOSITORY_OWNER").cloned())
                .or_else(|| current.map(|(o, _)| o.to_owned()))
                .ok_or_else(|| bad("owner", "is not set and `GITHUB_REPOSITORY_OWNER` is empty: name the owner of `repositories`"))?;
            check_name("owner", &owner)?;
            let repos = repositories
                .into_iter()
                .map(|r| repository_name(&owner, &r))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Target::Repositories {
                owner,
                repos: dedup(repos),
            })
        }
        (None, true) => {
            let (owner, repo) = current.ok_or_else(|| {
                bad(
                    "owner",
                    "is not set and `GITHUB_REPOSITORY` is empty: set `owner` (and `repositories`)",
                )
            })?;
            Ok(Target::Repositories {
                owner: owner.to_owned(),
                repos: vec![repo.to_owned()],
            })
        }
    }
}

/// `name` or `owner/name` of the same owner.
fn repository_name(owner: &str, entry: &str) -> Result<String, InputError> {
    let name = match entry.split_once('/') {
        Some((o, name)) if o.eq_ignore_ascii_case(owner) => name,
        Some((o, _)) => {
            let (entry, o, owner) = (short(entry), short(o), short(owner));
            return Err(bad(
                "repositories",
                format!(
                    "`{entry}` belongs to `{o}`, not `{owner}`: a token covers one owner; use one token-keeper step per owner"
                ),
            ));
        }
        None => entry,
    };
    check_name("repositories", name)?;
    Ok(name.to_owned())
}

/// Owners and policies as well as repositories: the widest of GitHub's rules, so that GitHub
/// judges the rest.
fn check_name(input: &str, name: &str) -> Result<(), InputError> {
    if names::is_repository(name) {
        Ok(())
    } else {
        Err(bad(
            input,
            format!(
                "`{}` is not a valid GitHub name: use letters, digits, `-`, `_` and `.` only",
                short(name)
            ),
        ))
    }
}

/// A comma or newline separated list, blanks dropped.
fn split_list(text: &str) -> Vec<String> {
    text.split([',', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn dedup(items: Vec<String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    items
        .into_iter()
        .filter(|i| seen.insert(i.to_ascii_lowercase()))
        .collect()
}

/// The `permission-*` inputs by their API names and, when the server's list is the one we ship
/// (`listed`), a doubt for each name or level it does not have: those go to GitHub as given,
/// and its answer decides. The runner passes inputs that `action.yml` does not declare
/// (`permission-pull_requests`) all the same.
fn permissions(env: &Env, listed: bool) -> (BTreeMap<String, String>, Vec<InputError>) {
    let (mut chosen, mut doubts) = (BTreeMap::new(), Vec::new());
    for (key, value) in env {
        let Some(suffix) = key
            .strip_prefix("INPUT_")
            .and_then(|name| name.strip_prefix(&permissions::INPUT_PREFIX.to_ascii_uppercase()))
        else {
            continue;
        };
        let level = value.trim().to_ascii_lowercase();
        if level.is_empty() {
            continue;
        }
        // As the workflow spelled it, `permission-pull_requests` included.
        let input = format!(
            "{}{}",
            permissions::INPUT_PREFIX,
            suffix.to_ascii_lowercase()
        );
        let name = suffix.to_ascii_lowercase().replace('-', "_");
        match crate::github::permissions::find(suffix) {
            _ if !listed => {}
            Some(known) if known.levels.contains(&level.as_str()) => {}
            Some(known) => doubts.push(bad(
                &input,
                format!(
                    "`{}` is not a level GitHub lists for `{name}` ({})",
                    short(&level),
                    known.levels.join(", ")
                ),
            )),
            None => doubts.push(bad(
                &input,
                format!(
                    "`{}` is not a permission GitHub lists for Apps",
                    short(&name)
                ),
            )),
        }
        chosen.insert(name, level);
    }
    (chosen, doubts)
}

/// A boolean input, or its default.
pub(crate) fn boolean(env: &Env, name: &str) -> Result<bool, InputError> {
    match input_or_default(env, name).to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(bad(
            name,
            format!("`{}` is not a boolean: use `true` or `false`", short(other)),
        )),
    }
}

fn export_env(env: &Env) -> Result<Vec<String>, InputError> {
    let names = input(env, "export-env").map(split_list).unwrap_or_default();
    for name in &names {
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(bad(
                "export-env",
                format!(
                    "`{}` is not a variable name: use names like `GH_TOKEN`",
                    short(name)
                ),
            ));
        }
    }
    Ok(names)
}

/// PEM text with at least one certificate, all of them readable.
fn ca_certificates(env: &Env) -> Result<Option<String>, InputError> {
    let Some(pem) = input(env, "ca-certificates") else {
        return Ok(None);
    };
    match client::ca_certificates(pem) {
        Ok(_) => Ok(Some(pem.to_owned())),
        Err(why) => Err(bad(
            "ca-certificates",
            format!("{why}: pass one or more `-----BEGIN CERTIFICATE-----` blocks"),
        )),
    }
}

/// What an input can do about an answer: a certificate no root vouches for is a private CA's,
/// which the `ca-certificates` input adds.
pub(crate) fn fix_for(answer: &ApiError) -> Option<&'static str> {
    match answer {
        ApiError::Untrusted { .. } => Some(
            "for GitHub Enterprise Server with a private CA, pass the CA's certificate in the `ca-certificates` input (`SSL_CERT_FILE` reaches the tools on the runner host, not the action's container)",
        ),
        _ => None,
    }
}

/// `refresh-after`: a duration below the token's lifetime.
pub(crate) fn refresh_after(text: &str) -> Result<Duration, InputError> {
    let value = parse_duration(text).map_err(|e| {
        bad(
            "refresh-after",
            format!("{e}: use for example `50m` or `90s`"),
        )
    })?;
    if value < MIN_REFRESH_AFTER {
        return Err(bad(
            "refresh-after",
            format!(
                "`{}` is too short: use at least `1m` (every git command would mint a token); the default is `50m`",
                short(text)
            ),
        ));
    }
    if value >= TOKEN_LIFETIME {
        return Err(bad(
            "refresh-after",
            format!(
                "`{}` is not below the token's lifetime of 1h: use at most `59m` (the default is `50m`)",
                short(text)
            ),
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = include_str!("../../tests/fixtures/app-key.pem");

    fn env(pairs: &[(&str, &str)]) -> Env {
        let mut env: Env = [
            ("INPUT_APP-ID", "12345"),
            ("INPUT_PRIVATE-KEY", KEY),
            ("GITHUB_REPOSITORY", "octo-org/app"),
            ("GITHUB_REPOSITORY_OWNER", "octo-org"),
            ("GITHUB_API_URL", "https://api.github.com"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        for (k, v) in pairs {
            env.insert((*k).to_owned(), (*v).to_owned());
        }
        env
    }

    fn error_of(pairs: &[(&str, &str)]) -> InputError {
        parse(&env(pairs)).expect_err("should be refused")
    }

    #[test]
    fn no_owner_and_no_repositories_means_the_current_repository() {
        let config = parse(&env(&[])).unwrap();
        assert_eq!(
            config.target,
            Target::Repositories {
                owner: "octo-org".into(),
                repos: vec!["app".into()]
            }
        );
        assert_eq!(config.request.repositories, vec!["app".to_owned()]);
    }

    #[test]
    fn owner_alone_means_every_repository() {
        let config = parse(&env(&[("INPUT_OWNER", "other")])).unwrap();
        assert_eq!(config.target, Target::Owner("other".into()));
        assert!(config.request.repositories.is_empty());
    }

    #[test]
    fn repositories_are_split_on_commas_and_newlines() {
        let config = parse(&env(&[("INPUT_REPOSITORIES", "a, b\nocto-org/c\n\n a ")])).unwrap();
        assert_eq!(config.request.repositories, vec!["a", "b", "c"]);
    }

    #[test]
    fn empty_inputs_count_as_unset() {
        let config = parse(&env(&[
            ("INPUT_OWNER", ""),
            ("INPUT_REPOSITORIES", "  "),
            ("INPUT_REFRESH-AFTER", ""),
        ]))
        .unwrap();
        assert!(matches!(config.target, Target::Repositories { .. }));
        assert_eq!(config.refresh_after, Duration::from_secs(50 * 60));
    }

    #[test]
    fn client_id_wins_over_app_id() {
        let config = parse(&env(&[("INPUT_CLIENT-ID", "Iv23abc")])).unwrap();
        assert!(matches!(config.source, TokenSource::App { issuer, .. } if issuer == "Iv23abc"));
    }

    #[test]
    fn keyless_mode_needs_no_key_and_scopes_as_owner_and_repositories_do() {
        let keyless = |extra: &[(&str, &str)]| {
            let mut pairs = vec![
                ("INPUT_STS-IDENTITY", "release"),
                ("INPUT_PRIVATE-KEY", ""),
                ("INPUT_APP-ID", ""),
            ];
            pairs.extend_from_slice(extra);
            parse(&env(&pairs))
        };
        let config = keyless(&[]).unwrap();
        let TokenSource::Exchange { exchange, .. } = &config.source else {
            panic!("keyless: {:?}", config.source)
        };
        assert_eq!(exchange.service.as_str(), "https://octo-sts.dev/");
        assert_eq!(exchange.scope, "octo-org/app");
        assert_eq!(
            config.target,
            Target::Repositories {
                owner: "octo-org".into(),
                repos: vec!["app".into()]
            }
        );
        let owner_wide = keyless(&[("INPUT_OWNER", "acme")]).unwrap();
        assert_eq!(owner_wide.target, Target::Owner("acme".into()));
        let local = keyless(&[
            ("INPUT_STS-DOMAIN", "http://127.0.0.1:8080"),
            ("INPUT_STS-SCOPE", "acme/tools"),
        ])
        .unwrap();
        let TokenSource::Exchange { exchange, .. } = &local.source else {
            panic!()
        };
        assert_eq!(exchange.audience(), "127.0.0.1:8080");
        assert_eq!(exchange.scope, "acme/tools");
    }

    #[test]
    fn keyless_mode_refuses_a_key_permissions_or_plain_http_elsewhere() {
        let with = |extra: &[(&str, &str)]| {
            let mut pairs = vec![("INPUT_STS-IDENTITY", "release"), ("INPUT_APP-ID", "")];
            pairs.extend_from_slice(extra);
            parse(&env(&pairs)).unwrap_err().to_string()
        };
        assert!(with(&[]).contains("`private-key`: is set in keyless mode"));
        let no_key = |extra: &[(&str, &str)]| {
            let mut pairs = vec![("INPUT_PRIVATE-KEY", "")];
            pairs.extend_from_slice(extra);
            with(&pairs)
        };
        assert!(no_key(&[("INPUT_PERMISSION-CONTENTS", "write")]).contains("trust policy grants"));
        assert!(no_key(&[("INPUT_STS-DOMAIN", "http://sts.example.com")]).contains("plain http"));
        assert!(no_key(&[("INPUT_REPOSITORIES", "a, b")]).contains("one repository or one owner"));
    }

    #[test]
    fn enterprise_uses_the_enterprise_lookup() {
        let config = parse(&env(&[("INPUT_ENTERPRISE", "acme")])).unwrap();
        assert_eq!(config.target, Target::Enterprise("acme".into()));
    }

    #[test]
    fn permissions_are_read_with_api_names() {
        let config = parse(&env(&[
            ("INPUT_PERMISSION-PULL-REQUESTS", "write"),
            ("INPUT_PERMISSION-CONTENTS", "Read"),
        ]))
        .unwrap();
        let expected = BTreeMap::from([
            ("contents".to_owned(), "read".to_owned()),
            ("pull_requests".to_owned(), "write".to_owned()),
        ]);
        assert_eq!(config.request.permissions, expected);
    }

    #[test]
    fn unknown_permissions_and_levels_are_asked_for_with_a_warning() {
        let config = parse(&env(&[
            ("INPUT_PERMISSION-TELEPATHY", "read"),
            ("INPUT_PERMISSION-CONTENTS", "Admin"),
            ("INPUT_PERMISSION-PULL_REQUESTS", "write"),
        ]))
        .unwrap();
        let expected = BTreeMap::from([
            ("contents".to_owned(), "admin".to_owned()),
            ("pull_requests".to_owned(), "write".to_owned()),
            ("telepathy".to_owned(), "read".to_owned()),
        ]);
        assert_eq!(config.request.permissions, expected);
        let doubts: Vec<String> = config.doubts.iter().map(ToString::to_string).collect();
        assert_eq!(doubts.len(), 2, "{doubts:?}");
        assert!(doubts[0].contains("`admin` is not a level GitHub lists for `contents`"));
        assert!(doubts[1].contains("`telepathy` is not a permission GitHub lists"));
    }

    /// As its description in `action.yml` says: passed on as the official action does, with a
    /// warning where GitHub's list is the one we ship.
    #[test]
    fn the_retired_team_discussions_permission_is_asked_for_as_given() {
        for (api, warned) in [
            ("https://api.github.com", true),
            ("https://ghes.example.com/api/v3", false),
        ] {
            let config = parse(&env(&[
                ("INPUT_GITHUB-API-URL", api),
                ("INPUT_PERMISSION-TEAM-DISCUSSIONS", "read"),
            ]))
            .unwrap();
            let expected = BTreeMap::from([("team_discussions".to_owned(), "read".to_owned())]);
            assert_eq!(config.request.permissions, expected, "{api}");
            let doubts: Vec<String> = config.doubts.iter().map(ToString::to_string).collect();
            assert_eq!(doubts.len(), usize::from(warned), "{api}: {doubts:?}");
            assert!(
                doubts
                    .iter()
                    .all(|d| d.contains("`team_discussions` is not a permission GitHub lists")),
                "{doubts:?}"
            );
        }
    }

    #[test]
    fn on_enterprise_server_unknown_permissions_get_no_warning() {
        let config = parse(&env(&[
            ("INPUT_GITHUB-API-URL", "https://ghes.example.com/api/v3"),
            ("INPUT_PERMISSION-TELEPATHY", "read"),
            ("INPUT_PERMISSION-WORKFLOWS", "read"),
        ]))
        .unwrap();
        assert_eq!(config.request.permissions["telepathy"], "read");
        assert_eq!(config.doubts, Vec::new());
    }

    #[test]
    fn urls_in_errors_never_show_a_user_password_or_query() {
        for text in [
            "https://user:s3cret@ghes.example.com/api/v3",
            "http://x:s3cret@ghes.example.com/api/v3",
            "https://ghes.example.com/api/v3?access_token=s3cret",
            "https://s3cret@ghes.example.com\n/api/v3",
            "ftp://u:s3cret@example.com",
        ] {
            let err = parse_url("github-api-url", text).unwrap_err().to_string();
            assert!(!err.contains("s3cret"), "{err}");
            assert!(
                err.contains("ghes.example.com") || err.contains("example.com"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_url_with_a_line_break_or_blank_is_refused() {
        for text in [
            "https://github.com\n/evil",
            "https://git\thub.com",
            "https://github.com /x",
        ] {
            let err = parse_url("git-server-url", text).unwrap_err().to_string();
            assert!(err.contains("line break or a blank"), "{err}");
        }
    }

    #[test]
    fn bad_inputs_are_named_with_a_fix() {
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: &[Case] = &[
            (&[("INPUT_APP-ID", "")], "app-id", "client id"),
            (&[("INPUT_PRIVATE-KEY", "")], "private-key", "secrets."),
            (
                &[("INPUT_PRIVATE-KEY", "not a key")],
                "private-key",
                "not PEM",
            ),
            (
                &[("INPUT_REPOSITORIES", "other/app")],
                "repositories",
                "one token-keeper step per owner",
            ),
            (
                &[("INPUT_REFRESH-AFTER", "0")],
                "refresh-after",
                "too short",
            ),
            (
                &[("INPUT_REFRESH-AFTER", "-5m")],
                "refresh-after",
                "not a duration",
            ),
            (
                &[("INPUT_REFRESH-AFTER", "61m")],
                "refresh-after",
                "lifetime",
            ),
            (
                &[("INPUT_REFRESH-AFTER", "abc")],
                "refresh-after",
                "not a duration",
            ),
            (
                &[("INPUT_GITHUB-API-URL", "http://ghes.example.com/api/v3")],
                "github-api-url",
                "plain http",
            ),
            (
                &[("INPUT_GITHUB-API-URL", "ftp://x")],
                "github-api-url",
                "https",
            ),
            (
                &[("INPUT_SKIP-TOKEN-REVOKE", "yes")],
                "skip-token-revoke",
                "`true` or `false`",
            ),
            (
                &[("INPUT_OWNER", "bad owner")],
                "owner",
                "not a valid GitHub name",
            ),
            (
                &[("INPUT_ENTERPRISE", "acme"), ("INPUT_OWNER", "o")],
                "enterprise",
                "leave `owner`",
            ),
            (
                &[("INPUT_EXPORT-ENV", "GH TOKEN")],
                "export-env",
                "variable name",
            ),
        ];
        for (pairs, input, fix) in cases {
            let err = error_of(pairs);
            assert_eq!(err.input, *input, "{pairs:?}: {err}");
            assert!(err.message.contains(fix), "{pairs:?}: {err}");
        }
    }

    #[test]
    fn loopback_http_is_allowed() {
        for url in [
            "http://127.0.0.1:8080",
            "http://localhost:1",
            "http://[::1]:9",
        ] {
            assert!(parse_url("github-api-url", url).is_ok(), "{url}");
        }
    }

    #[test]
    fn git_server_url_input_overrides_the_derivation() {
        let config = parse(&env(&[("INPUT_GIT-SERVER-URL", "https://git.example.com")])).unwrap();
        assert_eq!(
            config.git_server.unwrap().as_str(),
            "https://git.example.com/"
        );
    }

    proptest::proptest! {
        #[test]
        fn lists_split_into_trimmed_non_empty_items(text in "[a-z ,\n]{0,40}") {
            for item in split_list(&text) {
                proptest::prop_assert!(!item.is_empty());
                proptest::prop_assert_eq!(item.trim(), item.as_str());
                proptest::prop_assert!(!item.contains([',', '\n']));
            }
        }

        #[test]
        fn refresh_after_accepts_exactly_a_minute_to_below_an_hour(secs in 0u64..10_000) {
            let parsed = refresh_after(&secs.to_string());
            proptest::prop_assert_eq!(parsed.is_ok(), (60..3600).contains(&secs));
        }
    }
}
