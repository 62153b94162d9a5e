//! The main step: read inputs, mint, mask, record, export, install the git credential shim.
//!
//! Order matters. Inputs are checked before anything is written, so bad input leaves nothing
//! behind. The state directory is saved for the post step before minting, and a minted token is
//! masked, then recorded in the ledger, before it is used anywhere: whatever fails later, the
//! post step finds it and revokes it.

use std::time::Duration;

use anyhow::{Result, bail};
use url::Url;

use super::inputs::{self, Config, Env, Source};
use super::layout::{self, Layout};
use super::shim;
use super::summary::{origin, summary};
use super::workflow::{self, FileCommand, FileCommands};
use crate::clock::{rfc3339, unix_now};
use crate::github::apps::{self, App, BotUser, MintError};
use crate::github::client::{self, Knobs, Runtime};
use crate::github::exchange::{self, IdentityRequest};
use crate::github::{GitHub, Installation, MintedToken, Target};
use crate::keeper::Keeper;
use crate::keeper::policy::Lifetime;
use crate::keeper::state::{CachedToken, ExchangeConfig, MintConfig, StateDir};
use crate::messages;

/// cargo's switch from its own git library to git's command line, which reads our shim.
const CARGO_GIT_CLI: &str = "CARGO_NET_GIT_FETCH_WITH_CLI";

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
}

pub(crate) fn run(env: &Env) -> Result<()> {
    // The JWT, the job's identity and the new token are masked as they are made.
    workflow::mask_every_secret();
    let files = FileCommands::new(env);
    files.require(&[FileCommand::Output, FileCommand::State])?;
    let config = inputs::parse(env)?;
    let warnings: Vec<String> = config
        .warnings
        .iter()
        .map(|w| workflow::warning(w))
        .collect();
    workflow::print(&warnings)?;
    let git_server = match (&config.git_server, config.git_credentials) {
        (_, false) => None,
        (Some(server), true) => Some(server.clone()),
        (None, true) => bail!(
            "input `git-server-url`: cannot tell the git server from `{}`: set `git-server-url` (for example `https://ghes.example.com`), or `git-credentials: false`",
            config.api_url
        ),
    };
    if git_server.is_some() || !config.export_env.is_empty() || config.git_identity {
        files.require(&[FileCommand::Env])?;
    }
    let knobs = Knobs::from_env(|name| env.get(name).cloned())?;
    let (gh, runtime) = client::connect(
        config.api_url.clone(),
        MAIN_DEADLINE,
        config.ca_certificates.clone(),
        0,
        &knobs,
    )?;
    let layout = Layout::detect(env)?;
    let step = layout::step_name(env);
    let plan = Plan {
        env,
        files,
        config,
        git_server,
        layout,
        step,
    };
    let dir = StateDir::create(&plan.layout.root, &plan.step, plan.layout.owner)?;
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
        &[("dir", &dir.path().to_string_lossy())],
    )?;
    let (installation, minted) = mint(plan, gh, runtime)?;
    let cached = CachedToken {
        token: minted.token.clone(),
        lifetime: Lifetime {
            minted_at: unix_now(),
            expires_at: minted.expires_at,
            clock_offset: gh.clock().offset(),
        },
    };
    // Later steps re-mint when the shim is on: the App's key goes with the state, if any.
    let keep = plan
        .git_server
        .as_ref()
        .map(|server| mint_config(config, &installation, server));
    let key = match &config.source {
        Source::App { key, .. } => Some(key),
        Source::Exchange(_) => None,
    };
    if let Err(err) = Keeper::start(dir, cached, keep, key) {
        // Unrecorded, the post step could never revoke it: revoke it now.
        if let Err(revoke) = runtime.block_on(apps::revoke(gh, &minted.token)) {
            workflow::print(&[workflow::warning(&format!(
                "cannot revoke {} either, so it stays valid until it expires: {revoke}",
                minted.token.fingerprint()
            ))])?;
        }
        return Err(err.context("cannot record the new token"));
    }
    // GitHub can refuse a brand-new token for a few seconds; let later steps not see that. The
    // check is the bot user's lookup, so the identity costs no extra round trip; a keyless
    // token's App is not known to us, so its check is a plain one.
    let bot = runtime
        .block_on(apps::check_new(gh, &minted.token, &installation.app_slug))
        .unwrap_or_else(|err| {
            let why = format!("the new token is not accepted yet: {err}");
            workflow::print(&[workflow::warning(&why)]).ok();
            (!installation.app_slug.is_empty())
                .then(|| BotUser::of_app(&installation.app_slug, Err(why)))
        });

    export(files, config, &installation, &minted, bot.as_ref())?;
    workflow::print(&[messages::line(&format!(
        "minted a token for {} ({}): {}, expires at {}",
        config.target.describe(),
        origin(config, &installation),
        minted.token.fingerprint(),
        rfc3339(minted.expires_at),
    ))])?;
    if let Some(server) = &plan.git_server {
        install_shim(plan, server, &installation, &minted)?;
    }
    Ok(())
}

/// Mint with the App's key, or exchange the job's identity (keyless).
fn mint(plan: &Plan, gh: &GitHub, runtime: &Runtime) -> Result<(Installation, MintedToken)> {
    let config = &plan.config;
    match &config.source {
        Source::App { issuer, key } => {
            let app = App { issuer, key };
            runtime
                .block_on(async {
                    let installation = apps::find_installation(gh, &app, &config.target).await?;
                    let minted =
                        apps::create_token(gh, &app, &installation, &config.request).await?;
                    Ok((installation, minted))
                })
                .map_err(|err| blame_inputs(err, config))
        }
        Source::Exchange(wanted) => {
            let identity = IdentityRequest::from_env(|name| plan.env.get(name).cloned())
                .ok_or_else(|| anyhow::anyhow!(
                    "keyless mode needs the job's identity, and `ACTIONS_ID_TOKEN_REQUEST_URL` is not set: add `permissions: id-token: write` to the job"
                ))?;
            let minted = runtime.block_on(exchange::mint(gh, &identity, wanted))?;
            let installation = Installation {
                id: 0,
                app_slug: String::new(),
                account: config.target.owner().to_owned(),
            };
            Ok((installation, minted))
        }
    }
}

/// Name the inputs behind GitHub's refusals, so the fix is plain.
fn blame_inputs(err: MintError, config: &Config) -> anyhow::Error {
    let inputs: Vec<String> = match &err {
        MintError::NotInstalled { .. } | MintError::NoEnterpriseInstallation { .. } => {
            match &config.target {
                Target::Owner(_) => vec!["owner".into()],
                Target::Repositories { .. } => vec!["owner".into(), "repositories".into()],
                Target::Enterprise(_) => vec!["enterprise".into()],
            }
        }
        MintError::Refused { .. } => {
            let mut names: Vec<String> = Vec::new();
            if !config.request.repositories.is_empty() {
                names.push("repositories".into());
            }
            names.extend(
                config
                    .request
                    .permissions
                    .keys()
                    .map(|p| format!("permission-{}", p.replace('_', "-"))),
            );
            names
        }
        MintError::Moved { .. } => match &config.target {
            Target::Owner(_) => vec!["owner".into()],
            _ => vec!["owner".into(), "repositories".into()],
        },
        // Their messages name the inputs, or the answer's fields, already.
        MintError::BadCredentials { .. } | MintError::Unusable(_) | MintError::Api(_) => Vec::new(),
    };
    if inputs.is_empty() {
        return err.into();
    }
    let named: Vec<String> = inputs.iter().map(|i| format!("`{i}`")).collect();
    anyhow::anyhow!("{err} (inputs {})", named.join(", "))
}

/// A main step that failed before minting leaves nothing behind.
fn discard_if_unused(dir: &StateDir) {
    if !dir.ledger().is_ok_and(|ledger| ledger.is_empty()) {
        return;
    }
    let root = dir.path().parent().map(ToOwned::to_owned);
    let _ = dir.remove();
    if let Some(root) = root {
        // Only when empty: other steps' state may live there.
        let _ = std::fs::remove_dir(root);
    }
}

/// What a re-mint asks for: what the workflow asked for.
fn mint_config(config: &Config, installation: &Installation, server: &Url) -> MintConfig {
    let (issuer, exchange) = match &config.source {
        Source::App { issuer, .. } => (issuer.clone(), None),
        Source::Exchange(exchange) => (
            String::new(),
            Some(ExchangeConfig {
                service: exchange.service.to_string(),
                scope: exchange.scope.clone(),
                identity: exchange.identity.clone(),
            }),
        ),
    };
    MintConfig {
        api_url: config.api_url.to_string(),
        git_server: server.to_string(),
        issuer,
        installation_id: installation.id,
        app_slug: installation.app_slug.clone(),
        account: installation.account.clone(),
        repositories: config.request.repositories.clone(),
        permissions: config.request.permissions.clone(),
        refresh_after: config.refresh_after.as_secs(),
        ca_certificates: config.ca_certificates.clone(),
        exchange,
    }
}

fn install_shim(
    plan: &Plan,
    server: &Url,
    installation: &Installation,
    minted: &MintedToken,
) -> Result<()> {
    let (env, files, config, layout) = (plan.env, &plan.files, &plan.config, &plan.layout);
    shim::install_binary(layout)?;
    if matches!(config.target, Target::Enterprise(_)) {
        // An enterprise token reaches no repository: nothing for git, fresh tokens for tools.
        workflow::print(&[messages::line(
            "an enterprise token reaches no repository, so git is left alone; `token-keeper token` and `exec` keep it fresh",
        )])?;
    } else {
        configure_git(plan, server, installation, minted)?;
    }
    if let Some(host_bin) = layout.host_root.as_ref().map(|root| root.join("bin")) {
        files.add_path(&host_bin.to_string_lossy())?;
    }
    let event = env
        .get("GITHUB_EVENT_NAME")
        .map(String::as_str)
        .unwrap_or("");
    let holds_key = matches!(config.source, Source::App { .. });
    if holds_key && matches!(event, "pull_request_target" | "workflow_run") {
        workflow::print(&[workflow::warning(&format!(
            "this `{event}` job may run untrusted code, and every later step can read the App's private key while the git credential shim is on: use keyless mode (`sts-identity`) or `git-credentials: false` unless later steps are trusted"
        ))])?;
    }
    Ok(())
}

/// `GIT_CONFIG_*` entries for later steps, scoped to what the token covers.
fn configure_git(
    plan: &Plan,
    server: &Url,
    installation: &Installation,
    minted: &MintedToken,
) -> Result<()> {
    let (config, layout) = (&plan.config, &plan.layout);
    // The names asked for, as the workflow wrote them and as GitHub spells them: no name the
    // answer adds widens the scope.
    let mut repositories = config.request.repositories.clone();
    for repo in &minted.repositories {
        let asked = repositories.iter().any(|r| r.eq_ignore_ascii_case(repo));
        if asked && !repositories.contains(repo) {
            repositories.push(repo.clone());
        }
    }
    let scopes = shim::scopes(server, &installation.account, &repositories);
    let entries = shim::git_config_env(
        shim::existing_count(plan.env),
        &scopes,
        &shim::helper_command(layout, &plan.step),
        config.override_checkout_credentials,
    );
    let mut pairs: Vec<(&str, &str)> = entries
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    // cargo's own git library reads no `GIT_CONFIG_*`: with git's command line, cargo's git
    // dependencies get fresh tokens too. A workflow that chose otherwise keeps its choice.
    let cargo = !plan.env.contains_key(CARGO_GIT_CLI);
    if cargo {
        pairs.push((CARGO_GIT_CLI, "true"));
    }
    plan.files.set(FileCommand::Env, &pairs)?;
    let mut said = vec![messages::line(&format!(
        "git will get fresh tokens for {}",
        scopes.join(", ")
    ))];
    if cargo {
        said.push(messages::line(&format!(
            "cargo will fetch git dependencies with git's command line ({CARGO_GIT_CLI}=true), so they get fresh tokens too"
        )));
    }
    workflow::print(&said)?;
    Ok(())
}

fn export(
    files: &FileCommands,
    config: &Config,
    installation: &Installation,
    minted: &MintedToken,
    bot: Option<&BotUser>,
) -> Result<()> {
    let token = minted.token.expose();
    // A keyless token comes from an exchange that names no installation and no App.
    let id = match installation.id {
        0 => String::new(),
        id => id.to_string(),
    };
    let expires = rfc3339(minted.expires_at);
    let host = config
        .git_server
        .as_ref()
        .and_then(Url::host_str)
        .unwrap_or("github.com");
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
            ("app-slug", &installation.app_slug),
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
    if let Err(err) = files.summary(&summary(config, installation, minted)) {
        tracing::debug!("no step summary: {err:#}");
    }
    Ok(())
}
