//! A job's keeper begun and ended, the same for both front doors: the first token minted,
//! recorded, kept for re-mints and scoped for git (`begin`); a store's end, every live token
//! revoked (`end`). The doors render what `begin` gives (the action's outputs and file
//! commands, or the shell's variables) and name the settings a refusal blames as their user
//! typed them.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use url::Url;

use super::MintFailure;
use super::proxied::ProxyRecord;
use super::settings::{Door, Field, Setting, Settings};
use super::source::{Minter, TokenSource};
use super::store::{CachedToken, StateDir};
use super::{Caller, Keeper, Unended, Unminted};
use crate::clock::{Offset, unix_now};
use crate::github::apps::{BotUser, MintError};
use crate::github::client::{self, ApiError, HttpEnv, Server};
use crate::github::exchange::ExchangeError;
use crate::github::{MintedToken, Signer, Target};
use crate::messages;
use crate::report::Reporter;

/// What a door settled before the first mint.
pub(crate) struct Start<'a> {
    pub(crate) settings: &'a Settings,
    /// The store, listed where the door's end finds it before anything is minted into it.
    pub(crate) dir: &'a StateDir,
    pub(crate) caller: &'a Caller,
    /// The git server later commands get fresh tokens for; without one nothing is kept for
    /// re-mints (the action's `git-credentials: false`).
    pub(crate) git_server: Option<&'a Url>,
    /// How long the first mint may take.
    pub(crate) deadline: Duration,
}

/// A job's keeper, begun.
pub(crate) struct Begun {
    pub(crate) token: MintedToken,
    /// The source as the first mint settled it (for an App, its installation).
    pub(crate) source: TokenSource,
    /// The owner the token reaches, as GitHub spells it where it said.
    pub(crate) account: String,
    /// The App's bot user (for an App) from the check that GitHub accepts the new token, or why
    /// that check failed.
    pub(crate) accepted: Result<Option<BotUser>, ApiError>,
}

/// Mint the job's first token into `start.dir`, recorded before anything uses it; keep the
/// store for re-mints when there is a git server. A refusal blames the settings
/// behind it, each named by `name` as the door's user typed it.
pub(crate) fn begin(
    start: &Start,
    reporter: &dyn Reporter,
    name: &dyn Fn(&Field) -> String,
) -> Result<Begun> {
    let Start {
        settings,
        dir,
        caller,
        git_server,
        deadline,
    } = *start;
    let (gh, runtime) =
        client::connect(&settings.api, deadline, Offset::default(), &caller.http_env)?;
    let minter = Minter {
        signer: settings.signer(),
        caller,
    };
    let first = Keeper::first(
        dir,
        &settings.origin,
        &settings.target,
        &settings.request,
        &minter,
        (&gh, &runtime),
    );
    let (source, minted) = match first {
        Ok(first) => first,
        Err(Unminted::Mint(err)) => return Err(blame(err, settings, reporter.door(), name)),
        Err(Unminted::Record(why)) => bail!("cannot record the new token: {why}"),
    };
    let account = settings.account(&source);
    if let Some(server) = git_server {
        let cached = CachedToken::received(&minted.token, gh.clock().offset(), unix_now());
        Keeper::keep(
            dir,
            settings.kept(&source, server),
            cached,
            settings.signer(),
        )?;
    }
    Ok(Begun {
        token: minted.token,
        source,
        account,
        accepted: minted.accepted,
    })
}

/// Name the settings behind GitHub's refusal of a first mint, and what to do, so the fix is
/// plain: the `github` module speaks of requests and answers, not of settings.
fn blame(
    err: MintFailure,
    settings: &Settings,
    door: Door,
    name: &dyn Fn(&Field) -> String,
) -> anyhow::Error {
    let (refusal, answer) = match &err {
        MintFailure::App(refusal @ MintError::Api(answer)) => (Some(refusal), Some(answer)),
        MintFailure::App(refusal) => (Some(refusal), None),
        MintFailure::Exchange(ExchangeError::Api(answer)) => (None, Some(answer)),
        MintFailure::Exchange(_) | MintFailure::Other(_) => (None, None),
    };
    if let Some(fix) = answer.and_then(|answer| fix_for(answer, door)) {
        return anyhow::anyhow!("{err}: {fix}");
    }
    let setting = |setting| name(&Field::Setting(setting));
    let target = || match &settings.target {
        Target::Owner(_) => vec![setting(Setting::Owner)],
        Target::Repositories { .. } => {
            vec![setting(Setting::Owner), setting(Setting::Repositories)]
        }
        Target::Enterprise(_) => vec![setting(Setting::Enterprise)],
    };
    let blamed: Vec<String> = match refusal {
        None => return err.into(),
        Some(MintError::BadCredentials { .. }) => {
            let whose = match settings.signer() {
                Some(Signer::Command(_)) => {
                    format!("whose key `{}` signs with", setting(Setting::SignerCommand))
                }
                Some(Signer::AwsKms(_)) => {
                    format!("whose key `{}` names", setting(Setting::AwsKmsKey))
                }
                _ => format!("whose `{}` you pass", setting(Setting::PrivateKey)),
            };
            return anyhow::anyhow!(
                "{err}: check that `{}` or `{}` belongs to the App {whose}",
                setting(Setting::AppId),
                setting(Setting::ClientId),
            );
        }
        Some(MintError::NotInstalled { .. } | MintError::NoEnterpriseInstallation { .. }) => {
            target()
        }
        Some(MintError::Refused { .. }) => {
            let mut names = Vec::new();
            if !settings.request.repositories.is_empty() {
                names.push(setting(Setting::Repositories));
            }
            names.extend(
                settings
                    .request
                    .permissions
                    .keys()
                    .map(|permission| name(&Field::Permission(permission.clone()))),
            );
            names
        }
        Some(MintError::Moved { .. }) => target(),
        // Their messages name the answer's fields already.
        Some(MintError::Unusable(_) | MintError::Api(_)) => Vec::new(),
    };
    if blamed.is_empty() {
        return err.into();
    }
    let kind = match door {
        Door::Action => "inputs",
        Door::CommandLine => "from",
    };
    anyhow::anyhow!("{err} ({kind} {})", messages::quoted_list(&blamed))
}

/// What can be done about GitHub's `answer`, where there is a fix the door's user can make.
pub(crate) fn fix_for(answer: &ApiError, door: Door) -> Option<String> {
    let ApiError::Untrusted { .. } = answer else {
        return None;
    };
    let ca = Setting::CaCertificates.name(door);
    Some(match door {
        Door::Action => format!(
            "for GitHub Enterprise Server with a private CA, pass the CA's certificate in the `{ca}` input (`SSL_CERT_FILE` reaches the tools on the runner host, not the action's container)"
        ),
        Door::CommandLine => format!(
            "for GitHub Enterprise Server with a private CA, pass the CA's certificate with `{ca}`"
        ),
    })
}

/// How a store ends.
pub(crate) struct End<'a> {
    /// How long a re-mint in progress may hold up the end; after that it revokes regardless.
    pub(crate) lock_wait: Duration,
    /// Every revocation ends by then.
    pub(crate) deadline: Instant,
    pub(crate) unended: Unended,
    pub(crate) http_env: &'a HttpEnv,
    /// Why the tokens are left to live, when they are (the action's `skip-token-revoke`).
    pub(crate) skip: Option<&'a str>,
    /// Where to revoke when the ledger's first line, which names its API, is lost: the door's
    /// own setting, if it has one.
    pub(crate) api_otherwise: Option<Server>,
}

/// End the store `dir`: revoke its live tokens where its ledger says they came from, all at
/// once, and say how each went; the store goes as `Keeper::retire` says.
pub(crate) fn end(dir: StateDir, end: &End, reporter: &dyn Reporter) -> Result<()> {
    // The job-wide proxy ends itself once the end begins; it should not have stopped before.
    if let Some(proxy) = ProxyRecord::read(&dir)
        && !proxy.answers()
    {
        reporter.warn(
            "the proxy `token-keeper proxy start` started for this job had stopped before its end: what went through it got no fresh token since",
        );
    }
    Keeper::retire(dir, end.lock_wait, end.unended, |live| {
        let count = live.entries.len();
        if let Some(why) = end.skip {
            reporter.say(&format!("not revoking {count} token(s): {why}"));
            // Left to live, as asked: nothing more is ours to do for them.
            return vec![true; count];
        }
        let Some(api) = live.api.as_ref().or(end.api_otherwise.as_ref()) else {
            reporter.warn("the store's ledger names no API to revoke its tokens at");
            return vec![false; count];
        };
        let left = end.deadline.saturating_duration_since(Instant::now());
        match client::connect(api, left, Offset::default(), end.http_env) {
            Ok((gh, runtime)) => super::revoke_and_tell(gh, &runtime, &live.entries, reporter),
            Err(err) => {
                reporter.warn(&format!("cannot revoke tokens: {err:#}"));
                vec![false; count]
            }
        }
    })
}
