//! The commands later steps and git run: `credential`, `token` and `exec`.
//!
//! `credential` speaks git's helper protocol (its own file); `exec --keep-fresh` lives in
//! `fresh`: a long-running child whose `gh` reads a token that is replaced before it expires.
//!
//! They find the job's token store (the one the main step named, or the only one), and hand out
//! a live token. A person may be waiting on `token` and `exec`, so they say when a re-mint waits
//! for another process's; git's helper stays quiet but for warnings.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result};

mod credential;
mod fresh;

use crate::action::{env, workflow};
use crate::clock::unix_now;
use crate::github::client::Knobs;
use crate::keeper::state::State;
use crate::keeper::{Caller, Keeper, Served, locate};
use crate::messages;
use crate::process::{self, CannotRun};
use crate::secret;

/// `credential <operation>`: answer git.
pub(crate) fn credential(state: Option<&Path>, operation: &str) -> Result<ExitCode> {
    credential::run(
        operation,
        // The installed helper names its state; by hand, the job's only one will do.
        || match state {
            Some(dir) => Keeper::open(dir, caller()?),
            None => Ok(find(None, None)?.0),
        },
        std::io::stdin().lock(),
        std::io::stdout().lock(),
        std::io::stderr(),
        unix_now(),
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `token`: print a live token on stdout.
pub(crate) fn token(state: Option<&Path>, owner: Option<&str>) -> Result<ExitCode> {
    mask_on_stderr();
    let (keeper, state) = find(state, owner)?;
    let served = serve(&keeper.announcing_waits(say_waiting), state)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", served.token.expose())
        .and_then(|()| out.flush())
        .context("cannot print the token")?;
    Ok(ExitCode::SUCCESS)
}

/// `exec -- COMMAND`: run it with `GH_TOKEN` and `GITHUB_TOKEN` set to a live token (and
/// `GH_ENTERPRISE_TOKEN` on GitHub Enterprise Server); its exit status becomes ours. With
/// `keep_fresh`, the child gets a `gh` configuration kept fresh instead (`fresh`).
pub(crate) fn exec(
    state: Option<&Path>,
    owner: Option<&str>,
    keep_fresh: bool,
    command: &[OsString],
) -> Result<ExitCode> {
    let (program, args) = command
        .split_first()
        .context("no command given after `--`")?;
    mask_on_stderr();
    let (keeper, state) = find(state, owner)?;
    let keeper = keeper.announcing_waits(say_waiting);
    let mut child = Command::new(program);
    child.args(args);
    if keep_fresh {
        return fresh::run(&keeper, state, child);
    }
    let ghes = state.config.is_enterprise_server();
    let served = serve(&keeper, state)?;
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

/// The exit code of `exec` when it failed with `err` rather than run its command to the end.
pub(crate) fn exec_failure(err: &anyhow::Error) -> ExitCode {
    match err.downcast_ref::<CannotRun>() {
        Some(cannot) => cannot.exit_code(),
        None => ExitCode::from(EXEC_FAILED),
    }
}

/// What this process brings to a re-mint: its `TOKEN_KEEPER_*` bounds and its step's identity.
fn caller() -> Result<Caller> {
    let get = |name: &str| std::env::var(name).ok();
    Ok(Caller::new(
        Knobs::from_env(get)?,
        env::identity_request(get).ok_or_else(|| {
            "this step cannot ask for the job's identity: `ACTIONS_ID_TOKEN_REQUEST_URL` and `ACTIONS_ID_TOKEN_REQUEST_TOKEN` are not set here (a container step, or a tool that clears its environment); run it as an ordinary step, or pass the two variables on".to_owned()
        }),
    ))
}

/// The job's store that `state` names, or the only one (for `owner`).
/// Without either, the store `TOKEN_KEEPER_STATE` names (as `setup` exports it), else the job's
/// only one, in Actions' places or `setup`'s.
fn find(state: Option<&Path>, owner: Option<&str>) -> Result<(Keeper, State)> {
    let exported = std::env::var_os(locate::STATE_VARIABLE)
        .filter(|s| !s.is_empty() && owner.is_none())
        .map(PathBuf::from);
    let state = state.or(exported.as_deref());
    let exe = std::env::current_exe().ok();
    let runner_temp = std::env::var_os("RUNNER_TEMP").map(PathBuf::from);
    let mut roots = locate::job_roots(exe.as_deref(), runner_temp.as_deref());
    let ci_root = locate::ci_root(|name| std::env::var(name).ok());
    if !roots.contains(&ci_root) {
        roots.push(ci_root);
    }
    locate::find(&roots, state, owner, &caller()?)
}

/// A live token for a person's command, and its warning, if any, on stderr.
fn serve(keeper: &Keeper, state: State) -> Result<Served> {
    let served = keeper.serve(state, unix_now())?;
    if let Some(warning) = &served.warning {
        messages::warn(std::io::stderr(), warning);
    }
    Ok(served)
}

/// In Actions, every secret this process makes (a re-minted token among them) is masked on
/// stderr as it is made: the person's command shares stderr, and must not show one in the log.
fn mask_on_stderr() {
    if std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true") {
        secret::announce_with(|value| {
            let masks = workflow::masks_on_shared_stream(value);
            let _ = std::io::stderr().write_all(masks.as_bytes());
        });
    }
}

fn say_waiting() {
    messages::say(
        std::io::stderr(),
        "waiting for another process of this job to finish re-minting",
    );
}
