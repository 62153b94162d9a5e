//! `token-keeper setup`: mint a job's first token outside Actions, keep it fresh for git and the
//! tools, and print what the job's shell needs.
//!
//! The flags are the action's inputs (and `TOKEN_KEEPER_*` variables), checked by the same code;
//! the key comes from a file or a variable, never from the command line. Setup mints and records
//! as the main step does, keeps the store for re-mints, and either prints the scoped
//! `GIT_CONFIG_*` entries for the shell or writes them to the global git config. A setup that
//! fails after minting revokes what it minted and leaves nothing behind.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use url::Url;

use super::shell::{self, Facts, Format};
use super::{ci_root, gitconfig, tidy};
use crate::action::env::{self, Env};
use crate::action::inputs::{self, Config, InputError};
use crate::action::{permissions, shim};
use crate::clock::{rfc3339, unix_now};
use crate::github::GitHub;
use crate::github::client::{self, Knobs, Runtime};
use crate::keeper::source::{IdentityFrom, Means, TokenSource};
use crate::keeper::state::{Api, CachedToken, StateDir};
use crate::keeper::{self, Caller, Keeper, Unended, Unminted, locate};
use crate::messages;
use crate::private::{Owner, check_mine, create_private_dir};

/// Setup may wait as long as the main step: nothing is blocked on it yet.
const SETUP_DEADLINE: Duration = Duration::from_secs(60);
/// How the names of setup's stores start: in an Actions job, the action's own stores share
/// their folder.
pub(super) const STORE_PREFIX: &str = "setup-";

/// Where the scoped git configuration goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum GitConfig {
    /// Printed as `GIT_CONFIG_*` variables, for the shell that evaluates them and what it runs.
    Env,
    /// Added to the user's global git config, for steps that share no environment.
    Global,
}

/// The flags of `setup`: the action's inputs, by the same names where they fit.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The App's client id (or `--app-id`).
    #[arg(long, env = "TOKEN_KEEPER_CLIENT_ID")]
    client_id: Option<String>,
    /// The App's id.
    #[arg(long, env = "TOKEN_KEEPER_APP_ID")]
    app_id: Option<String>,
    /// A file that holds the App's private key (PEM).
    #[arg(long, env = "TOKEN_KEEPER_PRIVATE_KEY_FILE", value_name = "PATH")]
    private_key_file: Option<PathBuf>,
    /// The variable that holds the App's private key.
    #[arg(long, env = "TOKEN_KEEPER_PRIVATE_KEY_ENV", value_name = "NAME")]
    private_key_env: Option<String>,
    /// The account that installed the App.
    #[arg(long, env = "TOKEN_KEEPER_OWNER")]
    owner: Option<String>,
    /// Comma separated names of the owner's repositories to limit the token to.
    #[arg(long, env = "TOKEN_KEEPER_REPOSITORIES", value_name = "NAMES")]
    repositories: Option<String>,
    /// A permission to ask for, `contents=write`; again for each.
    #[arg(long = "permission", value_name = "NAME=LEVEL")]
    permissions: Vec<String>,
    /// The REST API (default `https://api.github.com`; `https://HOST/api/v3` on GHES).
    #[arg(long, env = "TOKEN_KEEPER_API_URL", value_name = "URL")]
    api_url: Option<String>,
    /// The git server the token is for (default: derived from the API URL).
    #[arg(long, env = "TOKEN_KEEPER_GIT_SERVER_URL", value_name = "URL")]
    git_server_url: Option<String>,
    /// Age after which git gets a new token.
    #[arg(long, env = "TOKEN_KEEPER_REFRESH_AFTER", value_name = "DURATION")]
    refresh_after: Option<String>,
    /// A PEM file of extra CA certificates to trust.
    #[arg(long, env = "TOKEN_KEEPER_CA_CERTIFICATES", value_name = "FILE")]
    ca_certificates: Option<PathBuf>,
    /// The new store's folder (default: a new one in the CI's temporary folder).
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
    /// How to print what the shell needs.
    #[arg(long, value_enum, default_value_t = Format::Export)]
    format: Format,
    /// Where git's scoped configuration goes.
    #[arg(long, value_enum, default_value_t = GitConfig::Env)]
    git_config: GitConfig,
    /// Keyless mode: the trust policy's name at the token exchange service.
    #[arg(long, env = "TOKEN_KEEPER_STS_IDENTITY", value_name = "POLICY")]
    sts_identity: Option<String>,
    /// Keyless mode: `owner/repo` or `owner`, whose policy is asked.
    #[arg(long, env = "TOKEN_KEEPER_STS_SCOPE", value_name = "SCOPE")]
    sts_scope: Option<String>,
    /// Keyless mode: the token exchange service (default `octo-sts.dev`).
    #[arg(long, env = "TOKEN_KEEPER_STS_DOMAIN", value_name = "DOMAIN")]
    sts_domain: Option<String>,
    /// Keyless mode: the variable that holds the job's OIDC identity token, read again at every
    /// refresh (GitLab's `id_tokens:`, CircleCI's `CIRCLE_OIDC_TOKEN_V2`).
    #[arg(
        long,
        env = "TOKEN_KEEPER_IDENTITY_ENV",
        value_name = "NAME",
        conflicts_with = "identity_command"
    )]
    identity_env: Option<String>,
    /// Keyless mode: a command that prints the job's OIDC identity token, run again at every
    /// refresh (Buildkite's `buildkite-agent oidc request-token --audience …`).
    #[arg(long, env = "TOKEN_KEEPER_IDENTITY_COMMAND", value_name = "COMMAND")]
    identity_command: Option<String>,
}

impl Args {
    /// The flags as the action's inputs, for `inputs::parse`, with what the process's own
    /// environment says of the job (the current repository in an Actions job).
    fn inputs(&self, key: Option<String>, ca: Option<String>) -> Result<Env> {
        let mut env: Env = ["GITHUB_REPOSITORY", "GITHUB_REPOSITORY_OWNER"]
            .into_iter()
            .filter_map(|name| Some((name.to_owned(), std::env::var(name).ok()?)))
            .collect();
        let mut set = |input: &str, value: Option<String>| {
            if let Some(value) = value {
                env.insert(format!("INPUT_{}", input.to_ascii_uppercase()), value);
            }
        };
        set("client-id", self.client_id.clone());
        set("app-id", self.app_id.clone());
        set("private-key", key);
        set("owner", self.owner.clone());
        set("repositories", self.repositories.clone());
        // Unset, the inputs' own default applies.
        set("github-api-url", self.api_url.clone());
        set("git-server-url", self.git_server_url.clone());
        set("refresh-after", self.refresh_after.clone());
        set("ca-certificates", ca);
        set("sts-identity", self.sts_identity.clone());
        set("sts-scope", self.sts_scope.clone());
        set("sts-domain", self.sts_domain.clone());
        for permission in &self.permissions {
            // An empty input is an unset one: without a level, the permission would be dropped.
            let Some((name, level)) = permission
                .split_once('=')
                .filter(|(_, level)| !level.trim().is_empty())
            else {
                bail!(
                    "`--permission`: `{}` gives no level: write it `--permission NAME=LEVEL`, such as `--permission contents=write`",
                    messages::short(permission)
                );
            };
            set(&permissions::input_name(name), Some(level.to_owned()));
        }
        Ok(env)
    }

    /// Where a keyless mint gets the job's identity.
    fn identity(&self) -> IdentityFrom {
        match (&self.identity_env, &self.identity_command) {
            (Some(name), _) => IdentityFrom::Variable { name: name.clone() },
            (None, Some(command)) => IdentityFrom::Command {
                command: command.clone(),
            },
            (None, None) => IdentityFrom::Actions,
        }
    }
}

/// The flag an input's error is about, as a person typed it here.
fn flag_of(input: &str) -> String {
    match input {
        "github-api-url" => "--api-url".into(),
        "private-key" => "--private-key-file`/`--private-key-env".into(),
        permission if permission.starts_with(permissions::INPUT_PREFIX) => "--permission".into(),
        other => format!("--{other}"),
    }
}

fn flag_error(err: InputError) -> anyhow::Error {
    anyhow!("`{}`: {}", flag_of(&err.input), err.message)
}

pub(crate) fn run(args: &Args) -> Result<ExitCode> {
    let config = config(args)?;
    // Outside Actions nobody reads a warning before the token is used: refuse instead.
    if let Some(doubt) = config.doubts.first() {
        let message = format!(
            "{}: check its spelling (GitHub's API names, such as `pull_requests`), or leave it out",
            doubt.message
        );
        return Err(flag_error(InputError {
            input: doubt.input.clone(),
            message,
        }));
    }
    let Some(git_server) = config.git_server.clone() else {
        bail!(
            "`--git-server-url`: cannot tell the git server from `{}`: set `--git-server-url` (for example `https://ghes.example.com`)",
            messages::short(config.api_url.as_str())
        );
    };
    let get = |name: &str| std::env::var(name).ok();
    let knobs = Knobs::from_env(get)?;
    let (gh, runtime) = client::connect(
        config.api_url.clone(),
        SETUP_DEADLINE,
        config.ca_certificates.clone(),
        0,
        &knobs,
    )?;
    let dir = new_store(args.state.as_deref(), &config.api())?;
    let caller = Caller::new(
        knobs,
        env::identity_request(get).ok_or_else(|| {
            "keyless mode without `--identity-env` or `--identity-command` asks the Actions runner for the job's identity, and `ACTIONS_ID_TOKEN_REQUEST_URL` is not set: name where this CI keeps the job's identity token".to_owned()
        }),
    );
    let means = Means {
        key: config.key.as_ref(),
        caller: &caller,
    };
    let mut source = config.source.clone();
    let minted = match Keeper::first(
        &dir,
        &mut source,
        &config.target,
        &config.request,
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
        &config,
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

/// The flags read and checked as the action's inputs, the key from its file or variable.
fn config(args: &Args) -> Result<Config> {
    let keyless = args.sts_identity.is_some();
    if !keyless && (args.identity_env.is_some() || args.identity_command.is_some()) {
        bail!(
            "`--identity-env` and `--identity-command` are for keyless mode: add `--sts-identity POLICY`, or leave them out to mint with the App's key"
        );
    }
    let key = match (&args.private_key_file, &args.private_key_env) {
        (Some(_), Some(_)) => bail!(
            "`--private-key-file` and `--private-key-env` are both set: pass the key one way"
        ),
        (Some(path), None) => Some(std::fs::read_to_string(path).with_context(|| {
            format!(
                "`--private-key-file`: cannot read `{}`: pass the path of the App's `.pem` file",
                messages::short(&path.to_string_lossy())
            )
        })?),
        (None, Some(name)) => Some(
            std::env::var(name)
                .ok()
                .filter(|key| !key.trim().is_empty())
                .with_context(|| {
                    format!(
                        "`--private-key-env`: `{}` is not set or empty: put the App's private key in it, or use `--private-key-file`",
                        messages::short(name)
                    )
                })?,
        ),
        (None, None) if keyless => None,
        (None, None) => bail!(
            "the App's private key is needed: pass `--private-key-file PATH` or `--private-key-env NAME` (or keyless mode, `--sts-identity`)"
        ),
    };
    let ca = match &args.ca_certificates {
        Some(path) => Some(std::fs::read_to_string(path).with_context(|| {
            format!(
                "`--ca-certificates`: cannot read `{}`",
                messages::short(&path.to_string_lossy())
            )
        })?),
        None => None,
    };
    let mut config = inputs::parse(&args.inputs(key, ca)?).map_err(flag_error)?;
    if let TokenSource::Exchange { identity, .. } = &mut config.source {
        *identity = args.identity();
    }
    Ok(config)
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

/// Keep the store for re-mints and set git up; the variables later commands need.
fn keep(
    args: &Args,
    config: &Config,
    dir: &StateDir,
    source: &TokenSource,
    git_server: &Url,
    token: &crate::github::MintedToken,
    gh: &crate::github::GitHub,
) -> Result<Vec<(String, String)>> {
    let account = config.account(source);
    let cached = CachedToken::received(token, gh.clock().offset(), unix_now());
    Keeper::keep(
        dir,
        config.kept(source, git_server),
        cached,
        config.key.as_ref(),
    )?;
    messages::say(
        std::io::stderr(),
        &format!(
            "minted a token for {}: {}, expires at {}",
            config.target.describe(),
            token.token.fingerprint(),
            rfc3339(token.expires_at)
        ),
    );
    let binary =
        running_binary().context("cannot find the running binary, which git's helper runs")?;
    let scopes = shim::scopes(
        git_server,
        &account,
        &config.request.repositories,
        &token.repositories,
    );
    let helper = shim::helper_command_at(&binary, dir.path());
    let state = dir.path().to_string_lossy().into_owned();
    let mut variables = vec![(locate::STATE_VARIABLE.to_owned(), state)];
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_flag_a_person_typed() {
        assert_eq!(flag_of("github-api-url"), "--api-url");
        assert_eq!(flag_of("permission-contents"), "--permission");
        assert_eq!(flag_of("owner"), "--owner");
    }
}
