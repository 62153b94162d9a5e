//! `proxy start`: the proxy for the rest of the job, in a process of its own, for actions and
//! steps that take a token once (an action's `github-token:` input).
//!
//! `start` starts `proxy serve` apart from the step (its own process group, no stdio of the
//! step's, so the step ends and the runner waits for nothing), waits for the record it leaves in
//! the store (`ProxyRecord`), checks that the proxy answers, and prints what reaches it. The
//! proxy ends itself once the store's end begins (the post step, `revoke`), which also says if it
//! had stopped before, or once its store is one a killed job left behind. A later `start` for the
//! same store finds the running one.
//!
//! Nothing is exported job-wide on its own: a container action or a job container would read
//! `127.0.0.1` as itself. The shell's `export` lines route whatever runs in that shell; in Actions,
//! `--format github-env` gives later steps only where the proxy is, for a step to opt in to.

use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use super::{Reach, route, with_proxy};
use crate::keeper::Keeper;
use crate::keeper::proxied::ProxyRecord;
use crate::keeper::store::State;
use crate::process;
use crate::process::shell_quoted;
use crate::secret::Secret;
use crate::tools::Asker;

/// How long a new proxy may take to come up.
const START_BOUND: Duration = Duration::from_secs(10);
/// How often a job-wide proxy looks whether its store's end has begun, and whether its store is
/// one a killed job left behind (which nothing will end).
const WATCH_EVERY: Duration = Duration::from_millis(250);
const ABANDONED_EVERY: Duration = Duration::from_secs(60);

/// What `proxy start` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// `export NAME='value'` lines that route the shell's clients through the proxy, as
    /// `exec --proxy` routes its child's.
    Export,
    /// `NAME=value` lines for `$GITHUB_ENV`: where the proxy is, and its authority and bundle,
    /// for a later step to opt in to; nothing a tool reads by itself.
    GithubEnv,
}

/// The variables `--format github-env` gives later steps.
const PROXY_URL: &str = "TOKEN_KEEPER_PROXY";
const PROXY_CA: &str = "TOKEN_KEEPER_PROXY_CA";
const PROXY_BUNDLE: &str = "TOKEN_KEEPER_PROXY_BUNDLE";

/// `proxy start`: the store's job-wide proxy, started unless it runs already, and what reaches it
/// on stdout.
pub(crate) fn start(
    keeper: &Keeper,
    state: State,
    token_variables: &[String],
    format: Format,
    asker: &Asker,
) -> Result<ExitCode> {
    for name in token_variables {
        route::check_variable_name(name).map_err(|why| anyhow!("`--token-env`: {why}"))?;
    }
    let dir = keeper.dir();
    let record = match ProxyRecord::read(dir).filter(ProxyRecord::answers) {
        Some(running) => running,
        None => spawn(dir.path(), token_variables)?,
    };
    // Its secret is masked before anything that holds it is printed.
    let secret = Secret::new(record.secret.clone());
    let served = super::serve(keeper, state, asker)?;
    let reach = Reach {
        url: record.url(),
        port: record.port,
        secret,
        hosts: record.hosts.clone(),
        bundle: record.bundle.clone(),
        authority: record.authority.clone(),
        token: served.token,
        token_variables: token_variables.to_vec(),
    };
    let text = match format {
        Format::Export => route::variables(&reach.route(), asker.env)
            .into_iter()
            .map(|(name, value)| match value {
                Some(value) => format!("export {name}={}\n", shell_quoted(&value)),
                None => format!("unset {name}\n"),
            })
            .collect::<String>(),
        Format::GithubEnv => [
            (PROXY_URL, reach.url.clone()),
            (PROXY_CA, record.authority.to_string_lossy().into_owned()),
            (PROXY_BUNDLE, record.bundle.to_string_lossy().into_owned()),
        ]
        .iter()
        .map(|(name, value)| format!("{name}={value}\n"))
        .collect(),
    };
    asker.reporter.say(&format!(
        "the proxy for {} listens on 127.0.0.1:{} for the rest of the job",
        record.hosts.join(", "),
        record.port
    ));
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

/// Start `proxy serve` for the store at `store`, apart from this step, and wait until its record
/// is there and it answers; one that does not come up in time is ended.
fn spawn(store: &std::path::Path, token_variables: &[String]) -> Result<ProxyRecord> {
    let binary = process::running_binary().context("cannot find the running binary")?;
    let mut command = Command::new(binary);
    command.args(["proxy", "serve", "--state"]).arg(store);
    for name in token_variables {
        command.args(["--token-env", name]);
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = process::spawn_apart(&mut command)?;
    let pid = child.id();
    let dir = crate::keeper::store::StateDir::open(store)?;
    let started = Instant::now();
    while started.elapsed() < START_BOUND {
        if let Some(record) = ProxyRecord::read(&dir).filter(|r| r.pid == pid)
            && record.answers()
        {
            return Ok(record);
        }
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    bail!(
        "the proxy did not come up within {} s: run `TOKEN_KEEPER_LOG=1 token-keeper proxy serve --state {}` to see why",
        START_BOUND.as_secs(),
        crate::messages::short(&store.to_string_lossy())
    )
}

/// `proxy serve`: the job-wide proxy, until the store's end begins.
pub(crate) fn serve(
    keeper: &Keeper,
    state: State,
    token_variables: &[String],
    asker: &Asker,
) -> Result<ExitCode> {
    let dir = keeper.dir();
    with_proxy(keeper, state, token_variables, asker, |reach| {
        let record = ProxyRecord {
            secret: reach.secret.expose().to_owned(),
            port: reach.port,
            pid: std::process::id(),
            hosts: reach.hosts.clone(),
            bundle: reach.bundle.clone(),
            authority: reach.authority.clone(),
        };
        record.write(dir)?;
        let mut looked = Instant::now();
        while dir.path().exists() && !dir.is_retiring() {
            if looked.elapsed() >= ABANDONED_EVERY {
                if dir.is_abandoned(crate::clock::unix_now()) {
                    break;
                }
                looked = Instant::now();
            }
            std::thread::sleep(WATCH_EVERY);
        }
        record.remove(dir);
        Ok(ExitCode::SUCCESS)
    })
}
