//! `token-keeper setup`: mint a job's first token outside Actions, keep it fresh for git and the
//! tools, and print what the job's shell needs.
//!
//! Its flags and `TOKEN_KEEPER_*` variables become the keeper's settings in `flags`, checked by
//! the same core as the action's inputs. Setup begins the job's keeper as the main step does
//! (`keeper::job::begin`), then either prints the scoped `GIT_CONFIG_*` entries for the shell or
//! writes them to the global git config. A setup that fails after minting ends its store
//! (`keeper::job::end`) and leaves nothing behind.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use url::Url;

use super::exports::{self, Facts};
use super::flags::{Args, GitConfig};
use super::tidy;
use crate::clock::unix_now;
use crate::env::Env;
use crate::git;
use crate::github::client::{HttpEnv, Server};
use crate::keeper::job::{self, Begun, End, Start};
use crate::keeper::settings::Settings;
use crate::keeper::store::StateDir;
use crate::keeper::store::locate;
use crate::keeper::{Caller, Keeper, NoIdentityRequest, Unended};
use crate::messages;
use crate::private::{Owner, check_mine, create_private_dir};
use crate::process;
use crate::report::Reporter;

/// Setup may wait as long as the main step: nothing is blocked on it yet.
const SETUP_DEADLINE: Duration = Duration::from_secs(60);
/// A setup that failed ends what it minted within about this.
const END_BOUND: Duration = Duration::from_secs(10);
/// How the names of setup's stores start: in an Actions job, the action's own stores share
/// their folder.
pub(super) const STORE_PREFIX: &str = "setup-";

pub(crate) fn run(args: &Args, env: &Env, reporter: &dyn Reporter) -> Result<ExitCode> {
    let settings = args.settings(env)?;
    let Some(git_server) = settings.git_server.clone() else {
        bail!(
            "`--git-server-url`: cannot tell the git server from `{}`: set `--git-server-url` (for example `https://ghes.example.com`)",
            messages::short(settings.api.url.as_str())
        );
    };
    let caller = Caller::new(env, NoIdentityRequest::NotActions)?;
    let dir = new_store(args.state.as_deref(), &settings.api, env)?;
    let start = Start {
        settings: &settings,
        dir: &dir,
        caller: &caller,
        git_server: Some(&git_server),
        deadline: SETUP_DEADLINE,
    };
    // From the first mint on, a failure ends the store: its tokens revoked, nothing left behind.
    let printed = job::begin(&start, reporter, &|field| args.field(field))
        .and_then(|begun| render(args, env, &settings, &git_server, &dir, &begun, reporter));
    match printed {
        Ok(text) => {
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            end_failed(dir, env, &caller.http_env, reporter);
            Err(err)
        }
    }
}

/// The store of a setup that failed ends: every token it recorded is revoked (one that cannot
/// be stays in its ledger for `revoke`), and the job's folder goes if it was the last.
fn end_failed(dir: StateDir, env: &Env, http_env: &HttpEnv, reporter: &dyn Reporter) {
    let _ = git::global::remove(dir.path(), env);
    let end = End {
        lock_wait: Duration::ZERO,
        deadline: Instant::now() + END_BOUND,
        unended: Unended::Kept,
        http_env,
        skip: None,
        api_otherwise: None,
    };
    let _ = job::end(dir, &end, reporter);
    tidy(&locate::ci_root(env), env);
}

/// Say what was minted, set git up (but for an enterprise's token, which reaches no
/// repository), and the text for the shell: the variables later commands need.
fn render(
    args: &Args,
    env: &Env,
    settings: &Settings,
    git_server: &Url,
    dir: &StateDir,
    begun: &Begun,
    reporter: &dyn Reporter,
) -> Result<String> {
    let token = &begun.token;
    let (fingerprint, expires_at) = (token.token.fingerprint(), token.expires_at.rfc3339());
    reporter.say(&format!(
        "minted a token for {}: {fingerprint}, expires at {expires_at}",
        settings.target.describe()
    ));
    let state = dir.path().to_string_lossy().into_owned();
    let mut variables = vec![(locate::STATE_VARIABLE.to_owned(), state.clone())];
    let scopes = git::config::scopes_of(begun, settings, git_server, reporter);
    if !scopes.is_empty() {
        let binary = process::running_binary()
            .context("cannot find the running binary, which git's helper runs")?;
        let helper = git::config::helper_command_at(&binary, dir.path());
        match args.git_config {
            GitConfig::Env => variables.extend(git::config::variables(
                git::config::existing_count(env),
                &scopes,
                &helper,
                true,
            )),
            GitConfig::Global => git::global::install(
                dir.path(),
                &git::config::entries(&scopes, &helper, true),
                env,
            )?,
        }
        let cargo = git::config::cargo_variable(env);
        git::config::say_installed(reporter, &scopes, cargo.is_some());
        variables.extend(cargo);
    }
    let facts = Facts {
        state: &state,
        fingerprint: &fingerprint,
        expires_at: &expires_at,
    };
    exports::render(args.format, &variables, &facts)
}

/// A new store for tokens from `api`: in `explicit`, or in a new folder of this job's, listed in
/// the job's folder before anything is minted into it. Stores that other jobs of this user left
/// behind go first.
fn new_store(explicit: Option<&Path>, api: &Server, env: &Env) -> Result<StateDir> {
    let owner = Owner::me();
    let job = locate::ci_root(env);
    let user = locate::user_root(env);
    if job.parent() == Some(user.as_path()) {
        create_private_dir(&user, owner)?;
        sweep(&user, &job, env);
    }
    create_private_dir(&job, owner)?;
    let path = match explicit {
        Some(dir) => std::path::absolute(dir).with_context(|| {
            format!(
                "`--state`: cannot tell where `{}` is",
                messages::short(&dir.to_string_lossy())
            )
        })?,
        None => tempfile::Builder::new()
            .prefix(STORE_PREFIX)
            .tempdir_in(&job)
            .with_context(|| {
                format!(
                    "cannot create a folder in `{}`",
                    messages::short(&job.to_string_lossy())
                )
            })?
            .keep(),
    };
    let dir = StateDir::create_at(&path, owner, api).map_err(|err| match explicit {
        Some(_) => anyhow!("`--state`: {err}"),
        None => {
            let _ = std::fs::remove_dir(&path);
            err.into()
        }
    })?;
    if let Err(err) = locate::list_store(&job, &path, owner) {
        let _ = dir.remove(None);
        return Err(err.into());
    }
    Ok(dir)
}

/// End the stores in `user`'s other job folders that a killed job left behind (`is_abandoned`),
/// their global git config entries with them, and the folders they leave empty.
fn sweep(user: &Path, this_job: &Path, env: &Env) {
    let Ok(jobs) = std::fs::read_dir(user) else {
        return;
    };
    let now = unix_now();
    for job in jobs.flatten() {
        let job = job.path();
        let ours = std::fs::symlink_metadata(&job)
            .is_ok_and(|meta| meta.is_dir() && check_mine(&job, &meta).is_ok());
        if job == this_job || !ours {
            continue;
        }
        let Ok(stores) = locate::listed_stores(&job) else {
            continue;
        };
        for store in &stores {
            let Ok(Some(dir)) = StateDir::open_store(store) else {
                continue;
            };
            if dir.is_abandoned(now)
                && Keeper::retire(dir, Duration::ZERO, Unended::Kept, |_| Vec::new()).is_ok()
            {
                let _ = git::global::remove(store, env);
            }
        }
        tidy(&job, env);
    }
}
