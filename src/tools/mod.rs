//! The commands later steps and git run: `credential`, `token` and `exec`.
//!
//! `credential` speaks git's helper protocol (`git::helper`); `exec --keep-fresh` lives in
//! `fresh`: a long-running child whose `gh` reads a token that is replaced before it expires.
//!
//! They find the job's token store (the one the main step named, or the only one), and hand out
//! a live token. A person may be waiting on `token` and `exec`, so they say when a re-mint waits
//! for another process's; git's helper stays quiet but for warnings. What to do about a missing
//! store is worded for where they run: an Actions job's step, or `setup` elsewhere.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result};

mod fresh;
pub(crate) mod proxy;

use crate::clock::unix_now;
use crate::env::Env;
use crate::keeper::settings::Door;
use crate::keeper::store::State;
use crate::keeper::store::locate;
use crate::keeper::{Caller, Keeper, NoIdentityRequest, Served, Unfound};
use crate::process::{self, CannotRun};
use crate::report::Reporter;

/// `credential <operation>`: answer git.
pub(crate) fn credential(state: Option<&Path>, operation: &str, asker: &Asker) -> Result<ExitCode> {
    let env = asker.env;
    crate::git::helper::run(
        operation,
        // The installed helper names its state; by hand, the job's only one will do.
        || {
            match state {
                Some(dir) => Keeper::open(dir, caller(env)?),
                None => Ok(find(None, None, env)?.0),
            }
            .map_err(|err| advised(err, asker))
        },
        std::io::stdin().lock(),
        std::io::stdout().lock(),
        std::io::stderr(),
        unix_now(),
    )?;
    Ok(ExitCode::SUCCESS)
}

/// What a person runs asks this of the store: who they are, where the job runs and how to speak.
pub(crate) struct Asker<'a> {
    pub(crate) env: &'a Env,
    pub(crate) reporter: &'static dyn Reporter,
}

/// `token`: print a live token on stdout.
pub(crate) fn token(state: Option<&Path>, owner: Option<&str>, asker: &Asker) -> Result<ExitCode> {
    asker.reporter.mask_secrets();
    let (keeper, state) = find(state, owner, asker.env).map_err(|err| advised(err, asker))?;
    let served = serve(&keeper.announcing_waits(asker.reporter), state, asker)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", served.token.expose())
        .and_then(|()| out.flush())
        .context("cannot print the token")?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) use proxy::Format as ProxyFormat;

/// `proxy start`: a proxy for the rest of the job (`proxy`), and what reaches it on stdout.
pub(crate) fn proxy_start(
    state: Option<&Path>,
    owner: Option<&str>,
    token_variables: &[String],
    format: ProxyFormat,
    asker: &Asker,
) -> Result<ExitCode> {
    asker.reporter.mask_secrets();
    let (keeper, state) = find(state, owner, asker.env).map_err(|err| advised(err, asker))?;
    proxy::start_job(&keeper, state, token_variables, format, asker)
}

/// `proxy serve`: the job-wide proxy `proxy start` starts, until its store's end begins.
pub(crate) fn proxy_serve(
    state: &Path,
    token_variables: &[String],
    asker: &Asker,
) -> Result<ExitCode> {
    let (keeper, state) = find(Some(state), None, asker.env)?;
    proxy::serve_job(&keeper, state, token_variables, asker)
}

/// How `exec` keeps its command supplied with a live token.
pub(crate) enum Supply<'a> {
    /// In `GH_TOKEN` and `GITHUB_TOKEN`, live when the command starts.
    Variables,
    /// In a `gh` configuration kept fresh for as long as it runs (`fresh`).
    KeepFresh,
    /// On every GitHub request its clients make, through a proxy of ours (`proxy`), and in the
    /// token variables and the ones named here.
    Proxy(&'a [String]),
}

/// `exec -- COMMAND`: run it with `GH_TOKEN` and `GITHUB_TOKEN` set to a live token (and
/// `GH_ENTERPRISE_TOKEN` on GitHub Enterprise Server), or as `supply` says; its exit status
/// becomes ours.
pub(crate) fn exec(
    state: Option<&Path>,
    owner: Option<&str>,
    supply: Supply,
    command: &[OsString],
    asker: &Asker,
) -> Result<ExitCode, ExecFailure> {
    let (program, args) = command
        .split_first()
        .context("no command given after `--`")?;
    asker.reporter.mask_secrets();
    let (keeper, state) = find(state, owner, asker.env).map_err(|err| advised(err, asker))?;
    let keeper = keeper.announcing_waits(asker.reporter);
    let mut child = Command::new(program);
    child.args(args);
    match supply {
        Supply::Variables => {}
        Supply::KeepFresh => return fresh::run(&keeper, state, child, asker),
        Supply::Proxy(names) => return proxy::run(&keeper, state, child, names, asker),
    }
    let ghes = state.config.is_enterprise_server();
    let served = serve(&keeper, state, asker)?;
    child
        .env("GH_TOKEN", served.token.expose())
        .env("GITHUB_TOKEN", served.token.expose());
    if ghes {
        child.env("GH_ENTERPRISE_TOKEN", served.token.expose());
    }
    Ok(process::run_attached(&mut child)?)
}

/// `exec`'s own failures have exit codes of their own, as `env`'s do, so that none is taken for
/// the command's: 125 when token-keeper failed, and a shell's 126 or 127 when the command cannot
/// be run (`CannotRun`). Any other code is the command's.
const EXEC_FAILED: u8 = 125;

/// Why `exec` ran no command to its end.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExecFailure {
    #[error(transparent)]
    CannotRun(#[from] CannotRun),
    /// No token to give it, or the keeping failed.
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

impl ExecFailure {
    /// `exec`'s exit code for it.
    pub(crate) fn exit_code(&self) -> ExitCode {
        match self {
            ExecFailure::CannotRun(cannot) => cannot.exit_code(),
            ExecFailure::Failed(_) => ExitCode::from(EXEC_FAILED),
        }
    }
}

/// What this process brings to a re-mint: its `TOKEN_KEEPER_*` bounds and its step's identity.
fn caller(env: &Env) -> Result<Caller> {
    Caller::new(env, NoIdentityRequest::NotPassedOn)
}

/// The job's store that `state` names, or the only one (for `owner`).
/// Without either, the store `TOKEN_KEEPER_STATE` names (as `setup` exports it), else the job's
/// only one, in Actions' places or `setup`'s.
fn find(state: Option<&Path>, owner: Option<&str>, env: &Env) -> Result<(Keeper, State), Unfound> {
    let exported = env
        .given(locate::STATE_VARIABLE)
        .filter(|_| owner.is_none())
        .map(PathBuf::from);
    let state = state.or(exported.as_deref());
    let exe = std::env::current_exe().ok();
    let runner_temp = env.get("RUNNER_TEMP").map(PathBuf::from);
    let mut roots = locate::job_roots(exe.as_deref(), runner_temp.as_deref());
    let ci_root = locate::ci_root(env);
    if !roots.contains(&ci_root) {
        roots.push(ci_root);
    }
    locate::find(&roots, state, owner, &caller(env)?)
}

/// `err`, with what to do about a store that is not there, in the words of where this runs.
fn advised(err: Unfound, asker: &Asker) -> anyhow::Error {
    let action = asker.reporter.door() == Door::Action;
    let advice = match (&err, action) {
        (Unfound::NoStore(_), true) => {
            "run the token-keeper step (with `git-credentials: true`) earlier in this job"
        }
        (Unfound::NoStore(_), false) => {
            "run `token-keeper setup` earlier in this job, and pass `TOKEN_KEEPER_STATE` on to this command"
        }
        (Unfound::NoState(_), true) => {
            "the token-keeper step of this job did not run, or its post step already cleaned up"
        }
        (Unfound::NoState(_), false) => {
            "`token-keeper setup` did not run in this job, or `token-keeper revoke` already ended it"
        }
        (Unfound::Other(_), _) => return err.into(),
    };
    anyhow::anyhow!("{err}: {advice}")
}

/// A live token for a person's command, and its warning, if any.
fn serve(keeper: &Keeper, state: State, asker: &Asker) -> Result<Served> {
    let served = keeper.serve(state, unix_now())?;
    if let Some(warning) = &served.warning {
        asker.reporter.warn(warning);
    }
    Ok(served)
}
