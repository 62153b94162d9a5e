//! The main step: read inputs, mint, mask, record, export, install the git credential shim.
//!
//! Order matters. Inputs are checked before anything is written, so bad input leaves nothing
//! behind. The state directory is saved for the post step before minting, and a minted token is
//! masked, then recorded in the ledger, before it is used anywhere: whatever fails later, the
//! post step finds it and revokes it.

use std::time::Duration;

use anyhow::{Result, bail};
use url::Url;

use super::env::{self, Env};
use super::inputs::{self, Config};
use super::layout::{self, Layout, Place};
use super::permissions;
use super::shim;
use super::summary::{origin, summary};
use super::workflow::{self, FileCommand, FileCommands};
use crate::clock::{rfc3339, unix_now};
use crate::github::apps::{BotUser, MintError};
use crate::github::client::{self, Knobs, Runtime};
use crate::github::exchange::ExchangeError;
use crate::github::{GitHub, MintedToken, Target, hosts};
use crate::keeper::locate::Platform;
use crate::keeper::source::{Means, TokenSource};
use crate::keeper::state::{CachedToken, StateDir};
use crate::keeper::{Caller, Keeper, Unminted};
use crate::messages;

/// The main step may wait longer than a git command: nobody is blocked on it yet.
const MAIN_DEADLINE: Duration = Duration::from_secs(60);

/// What the main step settled before touching anything.
struct Plan<'a> {
    env: &'a Env,
    files: FileCommands,
    config: Config,
    /// Where git's fresh tokens are for, when the shim is on.
    git_server: Option<Url>,
    layout: Layout,
    step: String,
    knobs: Knobs,
}

pub(crate) fn run(env: &Env, place: Place) -> Result<()> {
    // The JWT, the job's identity and the new token are masked as they are made.
    workflow::mask_every_secret();
    let files = FileCommands::new(env);
    files.require(&[FileCommand::Output, FileCommand::State])?;
    let config = inputs::parse(env)?;
    let warnings: Vec<String> = config
        .doubts
        .iter()
        .map(|doubt| workflow::warning(&format!("{doubt}; asking for it anyway")))
        .collect();
    workflow::print(&warnings)?;
    let git_server = match (&config.settings.git_server, config.git_credentials) {
        (_, false) => None,
        (Some(server), true) => Some(server.clone()),
        (None, true) => bail!(
            "input `git-server-url`: cannot tell the git server from `{}`: set `git-server-url` (for example `https://ghes.example.com`), or `git-credentials: false`",
            config.settings.api_url
        ),
    };
    if git_server.is_some() || !config.export_env.is_empty() || config.git_identity {
        files.require(&[FileCommand::Env])?;
    }
    let knobs = Knobs::from_env(|name| env.get(name).cloned())?;
    let (gh, runtime) = client::connect(
        config.settings.api_url.clone(),
        MAIN_DEADLINE,
        config.settings.ca_certificates.clone(),
        0,
        &knobs,
    )?;
    let layout = Layout::detect(env, place)?;
    let step = layout::step_name(env);
    let plan = Plan {
        env,
        files,
        config,
        git_server,
        layout,
        step,
        knobs,
    };
    let dir = StateDir::create(
        &plan.layout.root,
        &plan.step,
        plan.layout.owner,
        &plan.config.settings.api(),
    )?;
    let result = mint_and_export(&plan, &gh, &runtime, &dir);
    if result.is_err() {
        discard_if_unused(&dir);
    }
    result
}

fn mint_and_export(plan: &Plan, gh: &GitHub, runtime: &Runtime, dir: &StateDir) -> Result<()> {
    let (files, config) = (&plan.files, &plan.config);
    files.set(
        FileCommand::State,
        &[(layout::SAVED_DIR, &dir.path().to_string_lossy())],
    )?;
    let caller = Caller::new(
        plan.knobs.clone(),
        env::identity_request(|name| plan.env.get(name).cloned()).ok_or_else(|| {
            "keyless mode needs the job's identity, and `ACTIONS_ID_TOKEN_REQUEST_URL` is not set: add `permissions: id-token: write` to the job".to_owned()
        }),
    );
    let means = Means {
        key: config.settings.key.as_ref(),
        caller: &caller,
    };
    let mut source = config.settings.source.clone();
    let minted = match Keeper::first(
        dir,
        &mut source,
        &config.settings.target,
        &config.settings.request,
        &means,
        (gh, runtime),
    ) {
        Ok(minted) => minted,
        Err(Unminted::Mint(err)) => return Err(blame_inputs(err, config)),
        Err(Unminted::Record(why)) => bail!("cannot record the new token: {why}"),
    };
    let token = &minted.token;
    let account = config.settings.account(&source);
    // Later steps re-mint when the shim is on: the App's key goes with the state, if any.
    if let Some(server) = &plan.git_server {
        let cached = CachedToken::received(token, gh.clock().offset(), unix_now());
        Keeper::keep(
            dir,
            config.settings.kept(&source, server),
            cached,
            config.settings.key.as_ref(),
        )?;
    }
    // GitHub can refuse a brand-new token for a few seconds; later steps do not see that, as
    // the new token was checked. The check is the bot user's lookup, so the identity costs no
    // extra round trip; a keyless token's App is not known to us, so its check is a plain one.
    let bot = minted.accepted.unwrap_or_else(|err| {
        let why = format!("the new token is not accepted yet: {err}");
        // With `git-identity`, the warning that the bot's id is unknown gives the reason.
        if !(config.git_identity && source.app_slug().is_some()) {
            workflow::print(&[workflow::warning(&why)]).ok();
        }
        source
            .app_slug()
            .map(|slug| BotUser::of_app(slug, Err(why)))
    });
    let origin = origin(&source);
    export(files, config, &source, &account, token, bot.as_ref())?;
    workflow::print(&[messages::line(&format!(
        "minted a token for {} ({origin}): {}, expires at {}",
        config.settings.target.describe(),
        token.token.fingerprint(),
        rfc3339(token.expires_at),
    ))])?;
    if let Some(server) = &plan.git_server {
        install_shim(plan, server, &account, token)?;
    }
    Ok(())
}

/// Name the inputs behind GitHub's refusals, and what to do, so the fix is plain: the `github`
/// module speaks of requests and answers, not of inputs.
fn blame_inputs(err: anyhow::Error, config: &Config) -> anyhow::Error {
    let refusal = err.downcast_ref::<MintError>();
    let answer = match refusal {
        Some(MintError::Api(answer)) => Some(answer),
        _ => err.downcast_ref::<ExchangeError>().and_then(|e| match e {
            ExchangeError::Api(answer) => Some(answer),
            _ => None,
        }),
    };
    if let Some(fix) = answer.and_then(inputs::fix_for) {
        return anyhow::anyhow!("{err}: {fix}");
    }
    let inputs: Vec<String> = match refusal {
        None => return err,
        Some(MintError::BadCredentials { .. }) => {
            return anyhow::anyhow!(
                "{err}: check that `app-id` or `client-id` belongs to the App whose `private-key` you pass"
            );
        }
        Some(MintError::NotInstalled { .. } | MintError::NoEnterpriseInstallation { .. }) => {
            match &config.settings.target {
                Target::Owner(_) => vec!["owner".into()],
                Target::Repositories { .. } => vec!["owner".into(), "repositories".into()],
                Target::Enterprise(_) => vec!["enterprise".into()],
            }
        }
        Some(MintError::Refused { .. }) => {
            let mut names: Vec<String> = Vec::new();
            if !config.settings.request.repositories.is_empty() {
                names.push("repositories".into());
            }
            names.extend(
                config
                    .settings
                    .request
                    .permissions
                    .keys()
                    .map(|name| permissions::input_name(name)),
            );
            names
        }
        Some(MintError::Moved { .. }) => match &config.settings.target {
            Target::Owner(_) => vec!["owner".into()],
            _ => vec!["owner".into(), "repositories".into()],
        },
        // Their messages name the answer's fields already.
        Some(MintError::Unusable(_) | MintError::Api(_)) => Vec::new(),
    };
    if inputs.is_empty() {
        return err;
    }
    anyhow::anyhow!("{err} (inputs {})", messages::quoted_list(&inputs))
}

/// A main step that failed before minting leaves nothing behind.
fn discard_if_unused(dir: &StateDir) {
    if !dir.ledger().is_ok_and(|ledger| ledger.entries.is_empty()) {
        return;
    }
    let root = dir.path().parent().map(ToOwned::to_owned);
    let _ = dir.remove(None);
    if let Some(root) = root {
        // Only when empty: other steps' state may live there.
        let _ = std::fs::remove_dir(root);
    }
}

fn install_shim(plan: &Plan, server: &Url, account: &str, minted: &MintedToken) -> Result<()> {
    let (env, files, config, layout) = (plan.env, &plan.files, &plan.config, &plan.layout);
    shim::install_binary(layout)?;
    if matches!(config.settings.target, Target::Enterprise(_)) {
        // An enterprise token reaches no repository: nothing for git, fresh tokens for tools.
        workflow::print(&[messages::line(shim::NO_REPOSITORY)])?;
    } else {
        configure_git(plan, server, account, minted)?;
    }
    if let Some(host_bin) = layout.host_bin() {
        files.add_path(&host_bin.to_string_lossy())?;
    }
    let event = env
        .get("GITHUB_EVENT_NAME")
        .map(String::as_str)
        .unwrap_or("");
    let holds_key = config.settings.key.is_some();
    if holds_key && matches!(event, "pull_request_target" | "workflow_run") {
        workflow::print(&[workflow::warning(&format!(
            "this `{event}` job may run untrusted code, and every later step can read the App's private key while the git credential shim is on: use keyless mode (`sts-identity`) or `git-credentials: false` unless later steps are trusted"
        ))])?;
    }
    Ok(())
}

/// `GIT_CONFIG_*` entries for later steps, scoped to what the token covers.
fn configure_git(plan: &Plan, server: &Url, account: &str, minted: &MintedToken) -> Result<()> {
    let (config, layout) = (&plan.config, &plan.layout);
    let scopes = shim::scopes(
        server,
        account,
        &config.settings.request.repositories,
        &minted.repositories,
    );
    let entries = shim::git_config_env(
        shim::existing_count(plan.env),
        &scopes,
        &shim::helper_command(layout, &plan.step, Platform::HOST),
        config.override_checkout_credentials,
    );
    let mut pairs: Vec<(&str, &str)> = entries
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    // cargo's own git library reads no `GIT_CONFIG_*`: with git's command line, cargo's git
    // dependencies get fresh tokens too. A workflow that chose otherwise keeps its choice.
    let cargo = !plan.env.contains_key(shim::CARGO_GIT_CLI);
    if cargo {
        pairs.push((shim::CARGO_GIT_CLI, "true"));
    }
    plan.files.set(FileCommand::Env, &pairs)?;
    let mut said = vec![messages::line(&format!(
        "git will get fresh tokens for {}",
        scopes.join(", ")
    ))];
    if cargo {
        said.push(messages::line(&format!(
            "cargo will fetch git dependencies with git's command line ({}=true), so they get fresh tokens too",
            shim::CARGO_GIT_CLI
        )));
    }
    workflow::print(&said)?;
    Ok(())
}

fn export(
    files: &FileCommands,
    config: &Config,
    source: &TokenSource,
    account: &str,
    minted: &MintedToken,
    bot: Option<&BotUser>,
) -> Result<()> {
    let token = minted.token.expose();
    // A keyless token comes from an exchange that names no installation and no App.
    let id = source
        .installation()
        .map(|i| i.id.to_string())
        .unwrap_or_default();
    let expires = rfc3339(minted.expires_at);
    let host = config
        .settings
        .git_server
        .as_ref()
        .and_then(Url::host_str)
        .unwrap_or(hosts::GITHUB_COM);
    let user_id = bot.and_then(|b| b.id.as_ref().ok()).map(u64::to_string);
    let (name, email) = match bot {
        Some(bot) => (bot.login.clone(), bot.email(host)),
        None => (String::new(), String::new()),
    };
    files.set(
        FileCommand::Output,
        &[
            ("token", token),
            ("installation-id", &id),
            ("app-slug", source.app_slug().unwrap_or_default()),
            ("expires-at", &expires),
            ("app-user-id", user_id.as_deref().unwrap_or_default()),
            ("git-user-name", &name),
            ("git-user-email", &email),
        ],
    )?;
    if config.git_identity && bot.is_none() {
        workflow::print(&[workflow::warning(
            "`git-identity` is ignored in keyless mode: the exchange does not say which App's bot the token acts as; set `GIT_AUTHOR_*` and `GIT_COMMITTER_*` yourself",
        )])?;
    } else if config.git_identity {
        if let Some(Err(why)) = bot.map(|b| &b.id) {
            workflow::print(&[workflow::warning(&format!(
                "cannot look up the App's bot user `{name}` ({why}): later commits are by `{email}`, which GitHub does not link to the bot"
            ))])?;
        }
        let (name, email) = (name.as_str(), email.as_str());
        files.set(
            FileCommand::Env,
            &[
                ("GIT_AUTHOR_NAME", name),
                ("GIT_AUTHOR_EMAIL", email),
                ("GIT_COMMITTER_NAME", name),
                ("GIT_COMMITTER_EMAIL", email),
            ],
        )?;
    }
    let exported: Vec<(&str, &str)> = config
        .export_env
        .iter()
        .map(|name| (name.as_str(), token))
        .collect();
    if !exported.is_empty() {
        files.set(FileCommand::Env, &exported)?;
    }
    // The summary is for people; a missing summary file must not fail the step.
    if let Err(err) = files.summary(&summary(config, source, account, minted)) {
        tracing::debug!("no step summary: {err:#}");
    }
    Ok(())
}
