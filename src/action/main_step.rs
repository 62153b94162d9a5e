//! The main step: read inputs, mint, mask, record, export, install git's credential helper.
//!
//! Order matters. Inputs are checked before anything is written, so bad input leaves nothing
//! behind. The state directory is saved for the post step before minting, and a minted token is
//! masked, then recorded in the ledger, before it is used anywhere: whatever fails later, the
//! post step finds it and revokes it.

use std::time::Duration;

use anyhow::{Result, bail};
use url::Url;

use super::file_commands::{FileCommand, FileCommands};
use super::inputs::{self, Config};
use super::summary::{origin, summary};
use crate::env::Env;
use crate::git;
use crate::github::apps::{BotUser, NoBotId};
use crate::github::{Signer, hosts};
use crate::keeper::job::{self, Begun, Start};
use crate::keeper::settings::Setting;
use crate::keeper::store::StateDir;
use crate::keeper::store::layout::{self, Layout, Place};
use crate::keeper::store::locate::Platform;
use crate::keeper::{Caller, NoIdentityRequest};
use crate::report::Reporter;

/// The main step may wait longer than a git command: nobody is blocked on it yet.
const MAIN_DEADLINE: Duration = Duration::from_secs(60);

/// What the main step settled before touching anything.
struct Plan<'a> {
    env: &'a Env,
    files: FileCommands,
    config: Config,
    /// Where git's fresh tokens are for, when git's helper is on.
    git_server: Option<Url>,
    layout: Layout,
    step: String,
    caller: Caller,
}

pub(crate) fn run(env: &Env, place: Place, reporter: &dyn Reporter) -> Result<()> {
    // The JWT, the job's identity and the new token are masked as they are made.
    reporter.mask_secrets();
    let files = FileCommands::new(env);
    files.require(&[FileCommand::Output, FileCommand::State])?;
    let config = inputs::parse(env)?;
    if place == Place::Container && matches!(config.settings.signer(), Some(Signer::Command(_))) {
        bail!(
            "input `{}`: the container entry's image has no shell and no CLI to run it: use the native entry (`uses: org/token-keeper/native@v1`) on a runner with the signer's CLI",
            Setting::SignerCommand.names().input
        );
    }
    for doubt in &config.doubts {
        reporter.warn(&format!("{doubt}; asking for it anyway"));
    }
    let git_server = match (&config.settings.git_server, config.git_credentials) {
        (_, false) => None,
        (Some(server), true) => Some(server.clone()),
        (None, true) => bail!(
            "input `git-server-url`: cannot tell the git server from `{}`: set `git-server-url` (for example `https://ghes.example.com`), or `git-credentials: false`",
            config.settings.api.url
        ),
    };
    if git_server.is_some() || !config.export_env.is_empty() || config.git_identity {
        files.require(&[FileCommand::Env])?;
    }
    let caller = Caller::new(env, NoIdentityRequest::NoPermission)?;
    let layout = Layout::detect(env, place)?;
    let step = layout::step_name(env);
    let plan = Plan {
        env,
        files,
        config,
        git_server,
        layout,
        step,
        caller,
    };
    let dir = StateDir::create(
        &plan.layout.root,
        &plan.step,
        plan.layout.owner,
        &plan.config.settings.api,
    )?;
    let result = mint_and_export(&plan, &dir, reporter);
    if result.is_err() {
        discard_if_unused(&dir);
    }
    result
}

fn mint_and_export(plan: &Plan, dir: &StateDir, reporter: &dyn Reporter) -> Result<()> {
    let (files, config) = (&plan.files, &plan.config);
    files.set(
        FileCommand::State,
        &[(layout::SAVED_DIR, &dir.path().to_string_lossy())],
    )?;
    let start = Start {
        settings: &config.settings,
        dir,
        caller: &plan.caller,
        git_server: plan.git_server.as_ref(),
        deadline: MAIN_DEADLINE,
    };
    let begun = job::begin(&start, reporter, &inputs::input_of)?;
    let (token, source) = (&begun.token, &begun.source);
    // GitHub can refuse a brand-new token for a few seconds; later steps do not see that, as
    // the new token was checked. The check is the bot user's lookup, so the identity costs no
    // extra round trip; a keyless token's App is not known to us, so its check is a plain one.
    let bot = match &begun.accepted {
        Ok(bot) => bot.clone(),
        Err(err) => {
            let why = NoBotId::NotAccepted(err.to_string());
            // With `git-identity`, the warning that the bot's id is unknown gives the reason.
            if !(config.git_identity && source.app_slug().is_some()) {
                reporter.warn(&why.to_string());
            }
            source
                .app_slug()
                .map(|slug| BotUser::of_app(slug, Err(why)))
        }
    };
    export(files, config, &begun, bot.as_ref(), reporter)?;
    reporter.say(&format!(
        "minted a token for {} ({}): {}, expires at {}",
        config.settings.target.describe(),
        origin(source),
        token.token.fingerprint(),
        token.expires_at.rfc3339(),
    ));
    if let Some(server) = &plan.git_server {
        install_helper(plan, server, &begun, reporter)?;
    }
    Ok(())
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

fn install_helper(plan: &Plan, server: &Url, begun: &Begun, reporter: &dyn Reporter) -> Result<()> {
    let (env, files, config, layout) = (plan.env, &plan.files, &plan.config, &plan.layout);
    git::binary::install_binary(layout)?;
    let scopes = git::config::scopes_of(begun, &config.settings, server, reporter);
    if !scopes.is_empty() {
        configure_git(plan, &scopes, reporter)?;
    }
    if let Some(host_bin) = layout.host_bin() {
        files.add_path(&host_bin.to_string_lossy())?;
    }
    let event = env.get("GITHUB_EVENT_NAME").unwrap_or("");
    let reach = match config.settings.signer() {
        Some(Signer::Key(_)) => "read the App's private key",
        Some(Signer::Command(_)) => "run the signer command, and so sign the App's JWTs,",
        Some(Signer::AwsKms(_)) => "sign the App's JWTs in KMS with the job's AWS credentials",
        None => "",
    };
    if !reach.is_empty() && matches!(event, "pull_request_target" | "workflow_run") {
        reporter.warn(&format!(
            "this `{event}` job may run untrusted code, and every later step can {reach} while git's credential helper is on: use keyless mode (`sts-identity`) or `git-credentials: false` unless later steps are trusted"
        ));
    }
    Ok(())
}

/// `GIT_CONFIG_*` entries for later steps, scoped to what the token covers.
fn configure_git(plan: &Plan, scopes: &[String], reporter: &dyn Reporter) -> Result<()> {
    let mut variables = git::config::variables(
        git::config::existing_count(plan.env),
        scopes,
        &git::binary::helper_command(&plan.layout, &plan.step, Platform::HOST),
        plan.config.override_checkout_credentials,
    );
    let cargo = git::config::cargo_variable(plan.env);
    git::config::say_installed(reporter, scopes, cargo.is_some());
    variables.extend(cargo);
    let pairs: Vec<(&str, &str)> = variables
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    plan.files.set(FileCommand::Env, &pairs)
}

fn export(
    files: &FileCommands,
    config: &Config,
    begun: &Begun,
    bot: Option<&BotUser>,
    reporter: &dyn Reporter,
) -> Result<()> {
    let (source, minted) = (&begun.source, &begun.token);
    let token = minted.token.expose();
    // A keyless token comes from an exchange that names no installation and no App.
    let id = source
        .installation()
        .map(|i| i.id.to_string())
        .unwrap_or_default();
    let expires = minted.expires_at.rfc3339();
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
        reporter.warn(
            "`git-identity` is ignored in keyless mode: the exchange does not say which App's bot the token acts as; set `GIT_AUTHOR_*` and `GIT_COMMITTER_*` yourself",
        );
    } else if config.git_identity {
        if let Some(Err(why)) = bot.map(|b| &b.id) {
            reporter.warn(&format!(
                "cannot look up the App's bot user `{name}` ({why}): later commits are by `{email}`, which GitHub does not link to the bot"
            ));
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
    if let Err(err) = files.summary(&summary(config, source, &begun.account, minted)) {
        tracing::debug!("no step summary: {err:#}");
    }
    Ok(())
}
