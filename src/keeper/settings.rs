//! What a job's keeper needs, checked: where its tokens come from (the App's key, or a keyless
//! exchange), the target, the permissions, the servers, the refresh and the CA. Pure: no I/O.
//!
//! Two front doors build it from what their user gives (`Given`): the action from its step's
//! inputs (`action::inputs`), and `setup` from its flags and `TOKEN_KEEPER_*` variables
//! (`ci::flags`). A check that fails names the setting it refuses (`Refusal`), and the door words
//! it as its user typed it. `SETTINGS` is the one table of every setting and its name at each
//! door; tests hold it to `action.yml`, to setup's flags and to the README.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use url::Url;

use super::source::{IdentityFrom, Origin, TokenSource};
use super::store::MintConfig;
use crate::duration::parse_duration;
use crate::github::apps::TOKEN_LIFETIME;
use crate::github::client::{self, Server};
use crate::github::exchange::Exchange;
use crate::github::signer::{AwsKms, PublicKey, SignerCommand};
use crate::github::{PrivateKey, Signer, Target, TokenRequest, hosts, names, permissions};
use crate::messages::short;
pub(crate) use crate::report::Door;
use crate::secret;

/// Re-mints at most once a minute: a shorter age would mint for nearly every git command.
const MIN_REFRESH_AFTER: Duration = Duration::from_secs(60);

/// Every setting a person gives a keeper, at one front door or both, in `SETTINGS`' order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Setting {
    ClientId,
    AppId,
    PrivateKey,
    PrivateKeyFile,
    PrivateKeyEnv,
    SignerCommand,
    SignerPublicKey,
    SignerPublicKeyFile,
    AwsKmsKey,
    AwsRegion,
    Owner,
    Repositories,
    Enterprise,
    Permission,
    ApiUrl,
    GitServerUrl,
    RefreshAfter,
    CaCertificates,
    StsIdentity,
    StsScope,
    StsDomain,
    IdentityEnv,
    IdentityCommand,
    SkipTokenRevoke,
    GitCredentials,
    OverrideCheckoutCredentials,
    ExportEnv,
    GitIdentity,
    State,
    Format,
    GitConfig,
}

/// A setting's names at each front door, and the value it takes when none is given. An empty
/// name: that door does not take it; an empty default: there is none, or it is derived.
#[derive(Debug)]
pub(crate) struct Names {
    pub(crate) setting: Setting,
    /// The action's input; `permission-<name>` is one input per permission.
    pub(crate) input: &'static str,
    /// setup's flag.
    pub(crate) flag: &'static str,
    /// The variable setup reads when its flag is not given.
    pub(crate) variable: &'static str,
    pub(crate) default: &'static str,
}

const fn row(
    setting: Setting,
    input: &'static str,
    flag: &'static str,
    variable: &'static str,
    default: &'static str,
) -> Names {
    Names {
        setting,
        input,
        flag,
        variable,
        default,
    }
}

/// Every setting, a row each, a column per front door.
#[rustfmt::skip]
pub(crate) const SETTINGS: &[Names] = {
    use Setting::*;
    &[
    //  setting                      input                            flag                  variable                          default
    row(ClientId,                    "client-id",                     "--client-id",        "TOKEN_KEEPER_CLIENT_ID",         ""),
    row(AppId,                       "app-id",                        "--app-id",           "TOKEN_KEEPER_APP_ID",            ""),
    row(PrivateKey,                  "private-key",                   "",                   "",                               ""),
    row(PrivateKeyFile,              "",                              "--private-key-file", "TOKEN_KEEPER_PRIVATE_KEY_FILE",  ""),
    row(PrivateKeyEnv,               "",                              "--private-key-env",  "TOKEN_KEEPER_PRIVATE_KEY_ENV",   ""),
    row(SignerCommand,               "signer-command",                "--signer-command",   "TOKEN_KEEPER_SIGNER_COMMAND",    ""),
    row(SignerPublicKey,             "signer-public-key",             "",                   "",                               ""),
    row(SignerPublicKeyFile,         "",                              "--signer-public-key-file", "TOKEN_KEEPER_SIGNER_PUBLIC_KEY_FILE", ""),
    row(AwsKmsKey,                   "aws-kms-key",                   "--aws-kms-key",      "TOKEN_KEEPER_AWS_KMS_KEY",       ""),
    row(AwsRegion,                   "aws-region",                    "--aws-region",       "TOKEN_KEEPER_AWS_REGION",        ""),
    row(Owner,                       "owner",                         "--owner",            "TOKEN_KEEPER_OWNER",             ""),
    row(Repositories,                "repositories",                  "--repositories",     "TOKEN_KEEPER_REPOSITORIES",      ""),
    row(Enterprise,                  "enterprise",                    "--enterprise",       "TOKEN_KEEPER_ENTERPRISE",        ""),
    row(Permission,                  "permission-<name>",             "--permission",       "",                               ""),
    row(ApiUrl,                      "github-api-url",                "--api-url",          "TOKEN_KEEPER_API_URL",           "https://api.github.com"),
    row(GitServerUrl,                "git-server-url",                "--git-server-url",   "TOKEN_KEEPER_GIT_SERVER_URL",    ""),
    row(RefreshAfter,                "refresh-after",                 "--refresh-after",    "TOKEN_KEEPER_REFRESH_AFTER",     "50m"),
    row(CaCertificates,              "ca-certificates",               "--ca-certificates",  "TOKEN_KEEPER_CA_CERTIFICATES",   ""),
    row(StsIdentity,                 "sts-identity",                  "--sts-identity",     "TOKEN_KEEPER_STS_IDENTITY",      ""),
    row(StsScope,                    "sts-scope",                     "--sts-scope",        "TOKEN_KEEPER_STS_SCOPE",         ""),
    row(StsDomain,                   "sts-domain",                    "--sts-domain",       "TOKEN_KEEPER_STS_DOMAIN",        "octo-sts.dev"),
    row(IdentityEnv,                 "",                              "--identity-env",     "TOKEN_KEEPER_IDENTITY_ENV",      ""),
    row(IdentityCommand,             "",                              "--identity-command", "TOKEN_KEEPER_IDENTITY_COMMAND",  ""),
    row(SkipTokenRevoke,             "skip-token-revoke",             "",                   "",                               "false"),
    row(GitCredentials,              "git-credentials",               "",                   "",                               "true"),
    row(OverrideCheckoutCredentials, "override-checkout-credentials", "",                   "",                               "true"),
    row(ExportEnv,                   "export-env",                    "",                   "",                               ""),
    row(GitIdentity,                 "git-identity",                  "",                   "",                               "false"),
    row(State,                       "",                              "--state",            "",                               ""),
    row(Format,                      "",                              "--format",           "",                               "export"),
    row(GitConfig,                   "",                              "--git-config",       "",                               "env"),
    ]
};

impl Setting {
    /// Its row of `SETTINGS`.
    pub(crate) fn names(self) -> &'static Names {
        &SETTINGS[self as usize]
    }

    /// Its name at `door`.
    pub(crate) fn name(self, door: Door) -> &'static str {
        let names = self.names();
        match door {
            Door::Action => names.input,
            Door::CommandLine => names.flag,
        }
    }

    /// `given`, or the setting's default; empty when it has none.
    fn or_default(self, given: &Option<String>) -> &str {
        value(given).unwrap_or(self.names().default)
    }
}

/// What a refusal is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Field {
    Setting(Setting),
    /// One permission, by the name its user gave it (`pull-requests`, `pull_requests`).
    Permission(String),
}

/// A setting refused, and what to do about it; the door names the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) field: Field,
    pub(crate) message: String,
}

fn bad(setting: Setting, message: impl Into<String>) -> Refusal {
    Refusal {
        field: Field::Setting(setting),
        message: message.into(),
    }
}

/// What a person gave at a front door, unchecked; blank counts as not given.
#[derive(Debug, Default)]
pub(crate) struct Given {
    pub(crate) client_id: Option<String>,
    pub(crate) app_id: Option<String>,
    /// The App's private key, as its text.
    pub(crate) private_key: Option<String>,
    /// A command that signs the App's JWTs, in place of the key.
    pub(crate) signer_command: Option<String>,
    /// The App's public key, to check the signer command's signatures: PEM or DER.
    pub(crate) signer_public_key: Option<Vec<u8>>,
    /// The App's key in AWS KMS, in place of the key: its id, alias or ARN.
    pub(crate) aws_kms_key: Option<String>,
    /// The KMS key's region, when `AWS_REGION` does not say it.
    pub(crate) aws_region: Option<String>,
    pub(crate) owner: Option<String>,
    /// Comma or newline separated.
    pub(crate) repositories: Option<String>,
    pub(crate) enterprise: Option<String>,
    /// Each permission by the name given, with its level; one without a level is left out.
    pub(crate) permissions: Vec<(String, String)>,
    pub(crate) api_url: Option<String>,
    pub(crate) git_server_url: Option<String>,
    pub(crate) refresh_after: Option<String>,
    /// Extra CA certificates, as PEM text.
    pub(crate) ca_certificates: Option<String>,
    pub(crate) sts_identity: Option<String>,
    pub(crate) sts_scope: Option<String>,
    pub(crate) sts_domain: Option<String>,
    /// Where a keyless mint gets the job's identity.
    pub(crate) identity: IdentityFrom,
    /// The job's repository, `owner/name`, and its owner, where the CI says
    /// (`GITHUB_REPOSITORY`, `GITHUB_REPOSITORY_OWNER`): the target when none is given.
    pub(crate) repository: Option<String>,
    pub(crate) repository_owner: Option<String>,
}

/// A given value, trimmed; blank is none.
fn value(given: &Option<String>) -> Option<&str> {
    given.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// What a job's keeper needs, checked.
#[derive(Debug)]
pub(crate) struct Settings {
    /// The App (its installation not looked up yet) and its signer, or an exchange.
    pub(crate) origin: Origin,
    pub(crate) target: Target,
    pub(crate) request: TokenRequest,
    pub(crate) api: Server,
    /// The git server the tokens are for; `None` when it cannot be told from the API URL.
    pub(crate) git_server: Option<Url>,
    pub(crate) refresh_after: Duration,
}

impl Settings {
    /// What signs the App's JWTs; keyless has nothing to sign.
    pub(crate) fn signer(&self) -> Option<&Signer> {
        match &self.origin {
            Origin::App { signer, .. } => Some(signer),
            Origin::Exchange { .. } => None,
        }
    }

    /// Check `given`, the other settings a message mentions named as `door` names them. With
    /// the settings come the doubts: permission names or levels taken but not vouched for, as
    /// GitHub's list lacks them, which go to GitHub as given.
    pub(crate) fn check(given: &Given, door: Door) -> Result<(Settings, Vec<Refusal>), Refusal> {
        let keyless = value(&given.sts_identity).is_some();
        let api_url = parse_url(Setting::ApiUrl, Setting::ApiUrl.or_default(&given.api_url))?;
        let git_server = match value(&given.git_server_url) {
            Some(text) => Some(parse_url(Setting::GitServerUrl, text)?),
            None => hosts::git_server_of(&api_url),
        };
        let refresh_after = refresh_after(Setting::RefreshAfter.or_default(&given.refresh_after))?;
        let (source, target) = if keyless {
            let (exchange, target) = keyless_source(given, door)?;
            let source = Origin::Exchange {
                exchange,
                identity: given.identity.clone(),
            };
            (source, target)
        } else {
            let (issuer, signer) = app_source(given, door)?;
            (Origin::App { issuer, signer }, target(given, door)?)
        };
        let repositories = match &target {
            Target::Repositories { repos, .. } => repos.clone(),
            _ => Vec::new(),
        };
        // The list we ship is GitHub's cloud's; each Enterprise Server version lists its own,
        // so there a name we do not know is no reason to doubt.
        let listed = [Some(&api_url), git_server.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(Url::host_str)
            .any(hosts::is_cloud);
        let (permissions, doubts) = permissions(&given.permissions, listed);
        if keyless && !permissions.is_empty() {
            let remove = match door {
                Door::Action => "the `permission-*` inputs",
                Door::CommandLine => "every `--permission`",
            };
            return Err(bad(
                Setting::StsIdentity,
                format!(
                    "a keyless token gets what its trust policy grants: remove {remove}, or grant less in the policy"
                ),
            ));
        }
        let settings = Settings {
            origin: source,
            target,
            request: TokenRequest {
                repositories,
                permissions,
            },
            api: Server {
                url: api_url,
                ca_certificates: ca_certificates(&given.ca_certificates)?,
            },
            git_server,
            refresh_after,
        };
        Ok((settings, doubts))
    }

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
            api: self.api.clone(),
            git_server: server.clone(),
            source: source.clone(),
            account: self.account(source),
            request: self.request.clone(),
            refresh_after: self.refresh_after.as_secs(),
        }
    }
}

/// The App's id (or client id) and what signs its JWTs: its key, a signer command, or a key in
/// AWS KMS.
fn app_source(given: &Given, door: Door) -> Result<(String, Signer), Refusal> {
    let issuer = match (value(&given.client_id), value(&given.app_id)) {
        (Some(client), _) => (Setting::ClientId, client),
        (None, Some(app)) => (Setting::AppId, app),
        (None, None) => {
            return Err(bad(
                Setting::AppId,
                format!(
                    "neither `{}` nor `{}` is set: pass the App's client id (or app id) from its settings page, or use keyless mode with `{}`",
                    Setting::AppId.name(door),
                    Setting::ClientId.name(door),
                    Setting::StsIdentity.name(door)
                ),
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
    Ok((issuer.1.to_owned(), signer(given, door)?))
}

/// The App's key, the command that signs in its place (with the public key to check it), or
/// the key in AWS KMS: one of them.
fn signer(given: &Given, door: Door) -> Result<Signer, Refusal> {
    let public_key = given
        .signer_public_key
        .as_deref()
        .filter(|key| !key.trim_ascii().is_empty());
    let (key, command, kms) = (
        Setting::PrivateKey,
        Setting::SignerCommand,
        Setting::AwsKmsKey,
    );
    let region = value(&given.aws_region);
    let other = [
        ("the App's private key", &given.private_key),
        ("a signer command", &given.signer_command),
    ]
    .into_iter()
    .find_map(|(what, set)| value(set).map(|_| what));
    if let (Some(_), Some(other)) = (value(&given.aws_kms_key), other) {
        return Err(bad(
            kms,
            format!("{other} is given too: sign in KMS or with that, not both"),
        ));
    }
    if let Some(kms_key) = value(&given.aws_kms_key) {
        if public_key.is_some() {
            return Err(bad(
                Setting::SignerPublicKey,
                format!(
                    "checks what `{}` signs, and KMS gives the key's public key itself: remove it",
                    command.name(door)
                ),
            ));
        }
        check_kms_key(kms_key).map_err(|why| bad(kms, why.to_string()))?;
        return Ok(Signer::AwsKms(AwsKms::new(kms_key, region)));
    }
    if region.is_some() {
        return Err(bad(
            Setting::AwsRegion,
            format!(
                "is the region of `{}`, which is not set: set it too, or remove the region",
                kms.name(door)
            ),
        ));
    }
    match (value(&given.private_key), value(&given.signer_command)) {
        (Some(_), Some(_)) => Err(bad(
            command,
            "the App's private key is given too: sign with the key here or with the command, not both",
        )),
        (Some(text), None) => {
            if public_key.is_some() {
                return Err(bad(
                    Setting::SignerPublicKey,
                    format!(
                        "checks what `{}` signs, and the key is given: remove it",
                        command.name(door)
                    ),
                ));
            }
            let key = PrivateKey::parse(text).map_err(|e| bad(key, e.to_string()))?;
            Ok(Signer::Key(key))
        }
        (None, Some(text)) => {
            // The command is kept in the state and named in messages.
            if let Some(kind) = secret::kind_in(text) {
                return Err(bad(
                    command,
                    format!(
                        "holds {}: give the signer's credentials in the environment, as its CLI's own variables, never in the command",
                        kind.what()
                    ),
                ));
            }
            let public = public_key
                .map(PublicKey::parse)
                .transpose()
                .map_err(|e| bad(Setting::SignerPublicKey, e.to_string()))?;
            Ok(Signer::Command(SignerCommand {
                command: text.to_owned(),
                public,
            }))
        }
        // How to pass a key is the door's to say.
        (None, None) => Err(bad(
            key,
            format!(
                "is not set: pass the App's private key, or `{}` to sign where the key is kept, or `{}` to sign in AWS KMS",
                command.name(door),
                kms.name(door)
            ),
        )),
    }
}

/// How to name a KMS key, the end of each refusal of one.
const KMS_KEY_FIX: &str = "name the key by its id, alias (`alias/…`) or ARN";

/// Why a KMS key's name is refused: a secret in it, characters or a length no name has.
#[derive(Debug, thiserror::Error)]
enum BadKmsKey {
    /// The kind of secret it holds, in words (`a private key`).
    #[error("holds {0}: {KMS_KEY_FIX}")]
    Secret(&'static str),
    #[error(
        "has characters no key id, alias or ARN has (only letters, digits, `:`, `/`, `_` and `-`): {KMS_KEY_FIX}"
    )]
    Characters,
    #[error("is longer than any key id, alias or ARN: {KMS_KEY_FIX}")]
    TooLong,
}

/// A KMS key's id, alias or ARN, which the state keeps and messages name: nothing secret,
/// and only the characters and length AWS allows them (`KeyId` is 1 to 2048 characters).
fn check_kms_key(key: &str) -> Result<(), BadKmsKey> {
    if let Some(kind) = secret::kind_in(key) {
        return Err(BadKmsKey::Secret(kind.what()));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, ':' | '/' | '_' | '-');
    if !key.chars().all(allowed) {
        return Err(BadKmsKey::Characters);
    }
    if key.len() > 2048 {
        return Err(BadKmsKey::TooLong);
    }
    Ok(())
}

fn in_keyless(setting: Setting, sts_identity: &str) -> Refusal {
    bad(
        setting,
        format!(
            "is set in keyless mode (`{sts_identity}`): no App key is needed there; remove it, or remove `{sts_identity}` to mint with the key"
        ),
    )
}

/// Keyless mode: the exchange service, scope and policy, and the target the scope names. The
/// scope defaults as `owner` and `repositories` do, to one repository or a whole owner.
fn keyless_source(given: &Given, door: Door) -> Result<(Exchange, Target), Refusal> {
    let sts_identity = Setting::StsIdentity.name(door);
    for (setting, set) in [
        (Setting::AppId, &given.app_id),
        (Setting::ClientId, &given.client_id),
        (Setting::PrivateKey, &given.private_key),
        (Setting::SignerCommand, &given.signer_command),
        (Setting::AwsKmsKey, &given.aws_kms_key),
        (Setting::AwsRegion, &given.aws_region),
        (Setting::Enterprise, &given.enterprise),
    ] {
        if value(set).is_some() {
            return Err(in_keyless(setting, sts_identity));
        }
    }
    if given.signer_public_key.is_some() {
        return Err(in_keyless(Setting::SignerPublicKey, sts_identity));
    }
    let identity = value(&given.sts_identity).unwrap_or_default();
    check_name(Setting::StsIdentity, identity)?;
    let domain = Setting::StsDomain.or_default(&given.sts_domain);
    let service = if domain.contains("://") {
        parse_url(Setting::StsDomain, domain)?
    } else {
        parse_url(Setting::StsDomain, &format!("https://{domain}"))?
    };
    let scope = match value(&given.sts_scope) {
        Some(scope) => scope.to_owned(),
        None => match target(given, door)? {
            Target::Repositories { owner, repos } if repos.len() == 1 => {
                format!("{owner}/{}", repos[0])
            }
            Target::Owner(owner) => owner,
            _ => {
                return Err(bad(
                    Setting::StsScope,
                    format!(
                        "a keyless token covers one repository or one owner: set `{}` (`owner/repo` or `owner`)",
                        Setting::StsScope.name(door)
                    ),
                ));
            }
        },
    };
    let target = match scope.split_once('/') {
        Some((owner, repo)) => {
            check_name(Setting::StsScope, owner)?;
            check_name(Setting::StsScope, repo)?;
            Target::Repositories {
                owner: owner.to_owned(),
                repos: vec![repo.to_owned()],
            }
        }
        None => {
            check_name(Setting::StsScope, &scope)?;
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

/// An https URL (plain http on loopback only) with a host, and no user, password or query.
pub(crate) fn parse_url(setting: Setting, text: &str) -> Result<Url, Refusal> {
    let shown = shown_url(text);
    // The URL parser drops tabs and line breaks silently: a value holding one is not what it
    // looks like.
    if text.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(bad(
            setting,
            format!("`{shown}` has a line break or a blank in it: pass the URL alone"),
        ));
    }
    let mut url = Url::parse(text.trim_end_matches('/')).map_err(|e| {
        bad(
            setting,
            format!("`{shown}` is not a URL ({e}): pass for example `https://api.github.com`"),
        )
    })?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(bad(
                setting,
                format!(
                    "`{shown}` uses plain http, which would send credentials in clear: use https (plain http is allowed only on loopback)"
                ),
            ));
        }
        other => {
            return Err(bad(
                setting,
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
            setting,
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

/// The owner, its repositories or an enterprise; by default the job's current repository.
fn target(given: &Given, door: Door) -> Result<Target, Refusal> {
    let owner = value(&given.owner);
    let repositories = value(&given.repositories)
        .map(split_list)
        .unwrap_or_default();
    if let Some(enterprise) = value(&given.enterprise) {
        if owner.is_some() || !repositories.is_empty() {
            return Err(bad(
                Setting::Enterprise,
                format!(
                    "an enterprise installation has no owner or repositories: leave `{}` and `{}` empty, or `{}` empty",
                    Setting::Owner.name(door),
                    Setting::Repositories.name(door),
                    Setting::Enterprise.name(door)
                ),
            ));
        }
        check_name(Setting::Enterprise, enterprise)?;
        return Ok(Target::Enterprise(enterprise.to_owned()));
    }
    let current = given.repository.as_deref().and_then(|r| r.split_once('/'));
    match (owner, repositories.is_empty()) {
        (Some(owner), true) => {
            check_name(Setting::Owner, owner)?;
            Ok(Target::Owner(owner.to_owned()))
        }
        (owner, false) => {
            let owner = owner
                .map(str::to_owned)
                .or_else(|| given.repository_owner.clone())
                .or_else(|| current.map(|(o, _)| o.to_owned()))
                .ok_or_else(|| {
                    bad(
                        Setting::Owner,
                        format!(
                            "is not set and `GITHUB_REPOSITORY_OWNER` is empty: name the owner of `{}`",
                            Setting::Repositories.name(door)
                        ),
                    )
                })?;
            check_name(Setting::Owner, &owner)?;
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
                    Setting::Owner,
                    format!(
                        "is not set and `GITHUB_REPOSITORY` is empty: set `{}` (and `{}`)",
                        Setting::Owner.name(door),
                        Setting::Repositories.name(door)
                    ),
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
fn repository_name(owner: &str, entry: &str) -> Result<String, Refusal> {
    let name = match entry.split_once('/') {
        Some((o, name)) if o.eq_ignore_ascii_case(owner) => name,
        Some((o, _)) => {
            let (entry, o, owner) = (short(entry), short(o), short(owner));
            return Err(bad(
                Setting::Repositories,
                format!(
                    "`{entry}` belongs to `{o}`, not `{owner}`: a token covers one owner; use one token-keeper step per owner"
                ),
            ));
        }
        None => entry,
    };
    check_name(Setting::Repositories, name)?;
    Ok(name.to_owned())
}

/// Owners and policies as well as repositories: the widest of GitHub's rules, so that GitHub
/// judges the rest.
fn check_name(setting: Setting, name: &str) -> Result<(), Refusal> {
    if names::is_repository(name) {
        Ok(())
    } else {
        Err(bad(
            setting,
            format!(
                "`{}` is not a valid GitHub name: use letters, digits, `-`, `_` and `.` only",
                short(name)
            ),
        ))
    }
}

/// A comma or newline separated list, blanks dropped.
pub(crate) fn split_list(text: &str) -> Vec<String> {
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

/// The permissions by their API names and, when the server's list is the one we ship
/// (`listed`), a doubt for each name or level it does not have: those go to GitHub as given,
/// and its answer decides.
fn permissions(
    given: &[(String, String)],
    listed: bool,
) -> (BTreeMap<String, String>, Vec<Refusal>) {
    let (mut chosen, mut doubts) = (BTreeMap::new(), Vec::new());
    for (named, level) in given {
        let level = level.trim().to_ascii_lowercase();
        if level.is_empty() {
            continue;
        }
        let name = named.to_ascii_lowercase().replace('-', "_");
        let doubt = |message: String| Refusal {
            field: Field::Permission(named.clone()),
            message,
        };
        match permissions::find(named) {
            _ if !listed => {}
            Some(known) if known.levels.contains(&level.as_str()) => {}
            Some(known) => doubts.push(doubt(format!(
                "`{}` is not a level GitHub lists for `{name}` ({})",
                short(&level),
                known.levels.join(", ")
            ))),
            None => doubts.push(doubt(format!(
                "`{}` is not a permission GitHub lists for Apps",
                short(&name)
            ))),
        }
        chosen.insert(name, level);
    }
    (chosen, doubts)
}

/// PEM text with at least one certificate, all of them readable.
fn ca_certificates(given: &Option<String>) -> Result<Option<String>, Refusal> {
    let Some(pem) = value(given) else {
        return Ok(None);
    };
    match client::ca_certificates(pem) {
        Ok(_) => Ok(Some(pem.to_owned())),
        Err(why) => Err(bad(
            Setting::CaCertificates,
            format!("{why}: pass one or more `-----BEGIN CERTIFICATE-----` blocks"),
        )),
    }
}

/// The age at which git gets a new token: a duration below the token's lifetime.
fn refresh_after(text: &str) -> Result<Duration, Refusal> {
    let value = parse_duration(text).map_err(|e| {
        bad(
            Setting::RefreshAfter,
            format!("{e}: use for example `50m` or `90s`"),
        )
    })?;
    if value < MIN_REFRESH_AFTER {
        return Err(bad(
            Setting::RefreshAfter,
            format!(
                "`{}` is too short: use at least `1m` (every git command would mint a token); the default is `50m`",
                short(text)
            ),
        ));
    }
    if value >= TOKEN_LIFETIME {
        return Err(bad(
            Setting::RefreshAfter,
            format!(
                "`{}` is not below the token's lifetime of 1h: use at most `59m` (the default is `50m`)",
                short(text)
            ),
        ));
    }
    Ok(value)
}

/// The rows of the README's table whose header is `header`, each cut into its cells (a `\|` is
/// a pipe within a cell), and the code spans of each cell.
#[cfg(test)]
pub(crate) fn readme_table(header: &str) -> Vec<Vec<Vec<String>>> {
    let readme = include_str!("../../README.md");
    let lines: Vec<&str> = readme.lines().collect();
    let start = lines
        .iter()
        .position(|line| *line == header)
        .unwrap_or_else(|| panic!("the README has no table `{header}`"));
    let spans = |cell: &str| -> Vec<String> {
        cell.split('`')
            .skip(1)
            .step_by(2)
            .map(|span| span.replace("\\|", "|"))
            .collect()
    };
    lines[start + 2..]
        .iter()
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            let cells = line.trim_matches('|').replace("\\|", "\u{0}");
            cells
                .split('|')
                .map(|cell| spans(&cell.replace('\u{0}', "\\|")))
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keeper::source::SignedBy;

    #[test]
    fn the_table_lists_every_setting_once_in_its_order() {
        for (at, names) in SETTINGS.iter().enumerate() {
            assert_eq!(names.setting as usize, at, "{names:?}");
            assert!(
                !(names.input.is_empty() && names.flag.is_empty()),
                "{names:?} is at no door"
            );
            assert!(
                names.variable.is_empty() || !names.flag.is_empty(),
                "{names:?}: a variable stands in for a flag"
            );
        }
        assert_eq!(SETTINGS.len(), Setting::GitConfig as usize + 1);
    }

    #[test]
    fn a_refusal_names_the_other_settings_it_mentions_as_its_door_does() {
        let given = Given {
            sts_identity: Some("release".into()),
            owner: Some("octo-org".into()),
            app_id: Some("1".into()),
            ..Given::default()
        };
        let refused = |door| Settings::check(&given, door).unwrap_err();
        let (action, flags) = (refused(Door::Action), refused(Door::CommandLine));
        assert_eq!(action.field, Field::Setting(Setting::AppId));
        assert_eq!(flags.field, action.field);
        assert_eq!(
            action.message,
            "is set in keyless mode (`sts-identity`): no App key is needed there; remove it, or remove `sts-identity` to mint with the key"
        );
        assert_eq!(
            flags.message,
            "is set in keyless mode (`--sts-identity`): no App key is needed there; remove it, or remove `--sts-identity` to mint with the key"
        );
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
            let err = parse_url(Setting::ApiUrl, text).unwrap_err().message;
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
            let err = parse_url(Setting::GitServerUrl, text).unwrap_err().message;
            assert!(err.contains("line break or a blank"), "{err}");
        }
    }

    #[test]
    fn loopback_http_is_allowed() {
        for url in [
            "http://127.0.0.1:8080",
            "http://localhost:1",
            "http://[::1]:9",
        ] {
            assert!(parse_url(Setting::ApiUrl, url).is_ok(), "{url}");
        }
    }

    fn app(extra: impl FnOnce(&mut Given)) -> Result<Settings, Refusal> {
        let mut given = Given {
            app_id: Some("12345".into()),
            owner: Some("Octo-Org".into()),
            ..Given::default()
        };
        extra(&mut given);
        Settings::check(&given, Door::Action).map(|(settings, _)| settings)
    }

    const PUBLIC: &str = include_str!("../../tests/fixtures/app-key.pub.pem");
    const KEY: &str = include_str!("../../tests/fixtures/app-key.pem");

    #[test]
    fn a_signer_command_signs_in_place_of_the_key_and_is_kept_with_its_public_key() {
        let settings = app(|g| {
            g.signer_command = Some("aws kms sign …".into());
            g.signer_public_key = Some(PUBLIC.into());
        })
        .unwrap();
        let Some(Signer::Command(command)) = settings.signer() else {
            panic!("{:?}", settings.origin);
        };
        assert_eq!(command.command, "aws kms sign …");
        assert_eq!(command.public.as_ref().unwrap().modulus_len(), 256);
        let signer = settings.signer().map(SignedBy::of);
        let Some(SignedBy::Command {
            command,
            public_key,
        }) = &signer
        else {
            panic!("{signer:?}");
        };
        assert_eq!(command, "aws kms sign …");
        assert!(
            public_key
                .as_ref()
                .unwrap()
                .starts_with("-----BEGIN RSA PUBLIC KEY-----")
        );
        let unchecked = app(|g| g.signer_command = Some("sign".into())).unwrap();
        assert!(matches!(
            unchecked.signer(),
            Some(Signer::Command(SignerCommand { public: None, .. }))
        ));
    }

    #[test]
    fn the_key_and_a_signer_command_are_one_or_the_other() {
        let refused = |extra: fn(&mut Given)| app(extra).unwrap_err();
        let both = refused(|g| {
            g.private_key = Some(KEY.into());
            g.signer_command = Some("sign".into());
        });
        assert_eq!(both.field, Field::Setting(Setting::SignerCommand));
        assert!(both.message.contains("not both"), "{}", both.message);
        let checks_nothing = refused(|g| {
            g.private_key = Some(KEY.into());
            g.signer_public_key = Some(PUBLIC.into());
        });
        assert_eq!(
            checks_nothing.field,
            Field::Setting(Setting::SignerPublicKey)
        );
        let neither = refused(|_| {});
        assert_eq!(neither.field, Field::Setting(Setting::PrivateKey));
        assert!(
            neither.message.contains("`signer-command`"),
            "{}",
            neither.message
        );
        let bad = refused(|g| {
            g.signer_command = Some("sign".into());
            g.signer_public_key = Some(KEY.into());
        });
        assert_eq!(bad.field, Field::Setting(Setting::SignerPublicKey));
        assert!(bad.message.contains("is a private key"), "{}", bad.message);
        assert!(!bad.message.contains("MII"), "{}", bad.message);
    }

    #[test]
    fn a_signer_command_that_holds_a_secret_is_refused_without_showing_it() {
        let token = "ghs_0123456789abcdefghijklmnopqrstuvwxyzAB";
        let bad = app(|g| {
            g.private_key = None;
            g.signer_command = Some(format!(
                "vault write -field=signature transit/sign/app token={token}"
            ));
        })
        .unwrap_err();
        assert_eq!(bad.field, Field::Setting(Setting::SignerCommand));
        assert!(bad.message.contains("holds a token"), "{}", bad.message);
        assert!(!bad.message.contains(token), "{}", bad.message);
    }

    #[test]
    fn keyless_mode_refuses_a_signer_command_and_its_public_key() {
        let keyless = |extra: fn(&mut Given)| {
            let mut given = Given {
                sts_identity: Some("release".into()),
                owner: Some("Octo-Org".into()),
                ..Given::default()
            };
            extra(&mut given);
            Settings::check(&given, Door::Action).unwrap_err()
        };
        let command = keyless(|g| g.signer_command = Some("sign".into()));
        assert_eq!(command.field, Field::Setting(Setting::SignerCommand));
        assert!(
            command.message.contains("keyless mode"),
            "{}",
            command.message
        );
        let public = keyless(|g| g.signer_public_key = Some(PUBLIC.into()));
        assert_eq!(public.field, Field::Setting(Setting::SignerPublicKey));
    }

    #[test]
    fn a_kms_key_signs_in_place_of_the_key_and_is_kept_by_name_and_region() {
        let settings = app(|g| {
            g.aws_kms_key = Some(" alias/app ".into());
            g.aws_region = Some("eu-west-1".into());
        })
        .unwrap();
        let Some(Signer::AwsKms(kms)) = settings.signer() else {
            panic!("{:?}", settings.origin);
        };
        assert_eq!(
            (kms.key.as_str(), kms.region()),
            ("alias/app", Some("eu-west-1"))
        );
        let kept = |settings: &Settings| match settings.signer() {
            Some(signer) => SignedBy::of(signer),
            None => panic!("{:?}", settings.origin),
        };
        let in_region = |region: Option<&str>| SignedBy::AwsKms {
            key: "alias/app".into(),
            region: region.map(str::to_owned),
        };
        assert_eq!(kept(&settings), in_region(Some("eu-west-1")));
        let anywhere = app(|g| g.aws_kms_key = Some("alias/app".into())).unwrap();
        assert_eq!(kept(&anywhere), in_region(None));
    }

    /// `refusal` is about `setting` and says `words`.
    #[track_caller]
    fn assert_refused(refusal: &Refusal, setting: Setting, words: &str) {
        assert_eq!(
            refusal.field,
            Field::Setting(setting),
            "{}",
            refusal.message
        );
        assert!(refusal.message.contains(words), "{}", refusal.message);
    }

    #[test]
    fn a_kms_key_that_is_no_key_name_is_refused_without_showing_it() {
        let token = "ghs_16C7e42F292c6912E7710c838347Ae178B4a";
        let refusals = [
            (format!("alias/{token}"), "holds a token: name the key"),
            (
                "alias/app key".into(),
                "has characters no key id, alias or ARN has",
            ),
            (
                format!("alias/{}", "a".repeat(2048)),
                "is longer than any key id",
            ),
        ];
        for (key, words) in refusals {
            let refusal = app(|g| g.aws_kms_key = Some(key.clone())).unwrap_err();
            assert_refused(&refusal, Setting::AwsKmsKey, words);
            let quoted = |part: &str| refusal.message.contains(part);
            assert!(
                !quoted(token) && !quoted("app key") && !quoted("aaaaaaaa"),
                "{}",
                refusal.message
            );
        }
        let arn = "arn:aws-us-gov:kms:us-gov-west-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab";
        assert!(app(|g| g.aws_kms_key = Some(arn.into())).is_ok());
    }

    #[test]
    fn a_kms_key_is_the_one_signer() {
        let refused = |extra: fn(&mut Given)| app(extra).unwrap_err();
        let with_key = refused(|g| {
            g.private_key = Some(KEY.into());
            g.aws_kms_key = Some("alias/app".into());
        });
        assert_refused(&with_key, Setting::AwsKmsKey, "private key is given too");
        assert!(!with_key.message.contains("MII"), "{}", with_key.message);
        let with_command = refused(|g| {
            g.signer_command = Some("sign".into());
            g.aws_kms_key = Some("alias/app".into());
        });
        assert_refused(
            &with_command,
            Setting::AwsKmsKey,
            "signer command is given too",
        );
        let with_public = refused(|g| {
            g.aws_kms_key = Some("alias/app".into());
            g.signer_public_key = Some(PUBLIC.into());
        });
        assert_refused(&with_public, Setting::SignerPublicKey, "KMS gives");
        let region_alone = refused(|g| g.aws_region = Some("eu-west-1".into()));
        assert_refused(&region_alone, Setting::AwsRegion, "`aws-kms-key`");
        assert_refused(&refused(|_| {}), Setting::PrivateKey, "`aws-kms-key`");
    }

    #[test]
    fn keyless_mode_refuses_a_kms_key_and_its_region() {
        for (setting, extra) in [
            (
                Setting::AwsKmsKey,
                (|g: &mut Given| g.aws_kms_key = Some("alias/app".into())) as fn(&mut Given),
            ),
            (Setting::AwsRegion, |g| {
                g.aws_region = Some("eu-west-1".into())
            }),
        ] {
            let mut given = Given {
                sts_identity: Some("release".into()),
                owner: Some("Octo-Org".into()),
                ..Given::default()
            };
            extra(&mut given);
            let refused = Settings::check(&given, Door::Action).unwrap_err();
            assert_refused(&refused, setting, "keyless mode");
        }
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
