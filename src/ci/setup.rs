//! `token-keeper setup`: mint a job's first token outside Actions, keep it fresh for git and the
//! tools, and print what the job's shell needs.
//!
//! Its flags and `TOKEN_KEEPER_*` variables become the keeper's settings in `flags`, checked by
//! the same core as the action's inputs. Setup mints and records as the main step does, keeps
//! the store for re-mints, and either prints the scoped `GIT_CONFIG_*` entries for the shell or
//! writes them to the global git config. A setup that fails after minting revokes what it
//! minted and leaves nothing behind.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use url::Url;

use super::flags::{Args, GitConfig};
use super::shell::{self, Facts};
use super::{ci_root, gitconfig, tidy};
use crate::action::env;
use crate::action::shim;
use crate::clock::{rfc3339, unix_now};
use crate::github::client::{self, Knobs, Runtime};
use crate::github::{GitHub, Target};
use crate::keeper::settings::Settings;
use crate::keeper::source::{Means, TokenSource};
use crate::keeper::state::{Api, CachedToken, StateDir};
use crate::keeper::{self, Caller, Keeper, Unended, Unminted, locate};
use crate::messages;
use crate::private::{Owner, check_mine, create_private_dir};

/// Setup may wait as long as the main step: nothing is blocked on it yet.
const SETUP_DEADLINE: Duration = Duration::from_secs(60);
/// How the names of setup's stores start: in an Actions job, the action's own stores share
/// their folder.
pub(super) const STORE_PREFIX: &str = "setup-";

pub(crate) fn run(args: &Args) -> Result<ExitCode> {
    let settings = args.settings()?;
    let Some(git_server) = settings.git_server.clone() else {
        bail!(
            "`--git-server-url`: cannot tell the git server from `{}`: set `--git-server-url` (for example `https://ghes.example.com`)",
            messages::short(settings.api_url.as_str())
        );
    };
    let get = |name: &str| std::env::var(name).ok();
    let knobs = Knobs::from_env(get)?;
    let (gh, runtime) = client::connect(
        settings.api_url.clone(),
        SETUP_DEADLINE,
        settings.ca_certificates.clone(),
        0,
        &knobs,
    )?;
    let dir = new_store(args.state.as_deref(), &settings.api())?;
    let caller = Caller::new(
        knobs,
        env::identity_request(get).ok_or_else(|| {
            "keyless mode without `--identity-env` or `--identity-command` asks the Actions runner for the job's identity, and `ACTIONS_ID_TOKEN_REQUEST_URL` is not set: name where this CI keeps the job's identity token".to_owned()
        }),
    );
    let means = Means {
        key: settings.key.as_ref(),
        caller: &caller,
    };
    let mut source = settings.source.clone();
    let minted = match Keeper::first(
        &dir,
        &mut source,
        &settings.target,
        &settings.request,
        &means,
        (&gh, &runtime),
    ) {
        Ok(minted) => minted,
        Err(Unminted::Mint(err)) => {
            end_failed(dir, gh, &runtime);
            return Err(err);
        }
        Err(Unminted::Record(why)) => {
            end_failed(dir, gh, &runtime);
            bail!("cannot record the new token: {why}");
        }
    };
    // From here on, a failure ends the store: its token revoked, nothing left behind.
    let kept = keep(
        args,
        &settings,
        &dir,
        &source,
        &git_server,
        &minted.token,
        &gh,
    );
    let printed = kept.and_then(|variables| {
        let token = &minted.token;
        let fingerprint = token.token.fingerprint();
        let expires_at = rfc3339(token.expires_at);
        let state = dir.path().to_string_lossy();
        let facts = Facts {
            state: &state,
            fingerprint: &fingerprint,
            expires_at: &expires_at,
        };
        shell::render(args.format, &variables, &facts)
    });
    match printed {
        Ok(text) => {
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            end_failed(dir, gh, &runtime);
            Err(err)
        }
    }
}

/// The store of a setup that failed ends: every token it recorded is revoked (one that cannot
/// be stays in its ledger for `revoke`), and the job's folder goes if it was the last.
fn end_failed(dir: StateDir, gh: GitHub, runtime: &Runtime) {
    let _ = gitconfig::remove(dir.path());
    let _ = Keeper::retire(dir, Duration::ZERO, Unended::Kept, |live| {
        keeper::revoke_all(gh, runtime, &live.entries)
            .iter()
            .map(Result::is_ok)
            .collect()
    });
    tidy(&ci_root());
}

/// A new store for tokens from `api`: in `explicit`, or in a new folder of this job's, listed in
/// the job's folder before anything is minted into it. Stores that other jobs of this user left
/// behind go first.
fn new_store(explicit: Option<&Path>, api: &Api) -> Result<StateDir> {
    let owner = Owner::me();
    let job = ci_root();
    let user = locate::user_root(|name| std::env::var(name).ok());
    if job.parent() == Some(user.as_path()) {
        create_private_dir(&user, owner)?;
        sweep(&user, &job);
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
fn sweep(user: &Path, this_job: &Path) {
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
                let _ = gitconfig::remove(store);
            }
        }
        tidy(&job);
    }
}

/// Keep the store for re-mints and set git up (but for an enterprise's token, which reaches no
/// repository); the variables later commands need.
fn keep(
    args: &Args,
    settings: &Settings,
    dir: &StateDir,
    source: &TokenSource,
    git_server: &Url,
    token: &crate::github::MintedToken,
    gh: &crate::github::GitHub,
) -> Result<Vec<(String, String)>> {
    let account = settings.account(source);
    let cached = CachedToken::received(token, gh.clock().offset(), unix_now());
    Keeper::keep(
        dir,
        settings.kept(source, git_server),
        cached,
        settings.key.as_ref(),
    )?;
    messages::say(
        std::io::stderr(),
        &format!(
            "minted a token for {}: {}, expires at {}",
            settings.target.describe(),
            token.token.fingerprint(),
            rfc3339(token.expires_at)
        ),
    );
    let state = dir.path().to_string_lossy().into_owned();
    let mut variables = vec![(locate::STATE_VARIABLE.to_owned(), state)];
    if matches!(settings.target, Target::Enterprise(_)) {
        messages::say(std::io::stderr(), shim::NO_REPOSITORY);
        return Ok(variables);
    }
    let binary =
        running_binary().context("cannot find the running binary, which git's helper runs")?;
    let scopes = shim::scopes(
        git_server,
        &account,
        &settings.request.repositories,
        &token.repositories,
    );
    let helper = shim::helper_command_at(&binary, dir.path());
    match args.git_config {
        GitConfig::Env => {
            let existing = shim::existing_count(&env::process_env());
            variables.extend(shim::git_config_env(existing, &scopes, &helper, true));
        }
        GitConfig::Global => {
            gitconfig::install(dir.path(), &shim::entries(&scopes, &helper, true))?
        }
    }
    if std::env::var_os(shim::CARGO_GIT_CLI).is_none() {
        variables.push((shim::CARGO_GIT_CLI.to_owned(), "true".to_owned()));
    }
    messages::say(
        std::io::stderr(),
        &format!("git will get fresh tokens for {}", scopes.join(", ")),
    );
    Ok(variables)
}

/// The running binary, links resolved. Not on Windows, where that would give a `\\?\` path,
/// which Git for Windows' `sh` cannot run, and where the system's own path is absolute already.
fn running_binary() -> std::io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    if cfg!(windows) {
        Ok(exe)
    } else {
        exe.canonicalize()
    }
}
