//! The command line: which role this process plays, and running it.
//!
//! The action's image runs the same binary under two names: `token-keeper-main` for the main step
//! and `token-keeper-post` for the post step. The runner gives both the same arguments and only
//! changes the entrypoint, so the name is what tells a post step, which must never mint, from a
//! main step. Any other name is the command-line tool that later steps and git run.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::action::inputs::Env;
use crate::action::{main_step, post_step, workflow};
use crate::github::client::unix_now;
use crate::keeper::locate;
use crate::{credential, keeper};

/// Keep GitHub App installation tokens alive for long GitHub Actions jobs.
#[derive(Debug, Parser)]
#[command(name = "token-keeper", version)]
pub struct Cli {
    #[command(subcommand)]
    command: Tool,
}

#[derive(Debug, Subcommand)]
enum Tool {
    /// Git credential helper: answers `get` with a live token, marks it stale on `erase`.
    Credential {
        /// The step's state directory (default: the job's only one).
        #[arg(long)]
        state: Option<PathBuf>,
        /// `get`, `store` or `erase` (anything else is ignored, as git asks).
        operation: String,
    },
    /// Print a live token on stdout.
    Token {
        /// The owner whose token to print, when the job minted for several.
        #[arg(long)]
        owner: Option<String>,
        #[arg(long)]
        state: Option<PathBuf>,
    },
    /// Run a command with `GH_TOKEN` and `GITHUB_TOKEN` set to a live token.
    Exec {
        #[arg(long)]
        owner: Option<String>,
        #[arg(long)]
        state: Option<PathBuf>,
        /// The command and its arguments.
        #[arg(trailing_var_arg = true, required = true, allow_hyphen_values = true)]
        command: Vec<OsString>,
    },
}

/// What this process is.
#[derive(Debug)]
pub enum Role {
    MainStep,
    PostStep,
    Tool(Cli),
}

impl Role {
    /// Errors of the action's steps become `::error::` lines; the tool's go to stderr.
    pub fn report(&self, err: &anyhow::Error) {
        match self {
            Role::MainStep | Role::PostStep => {
                let _ = workflow::print(&[workflow::error(&format!("{err:#}"))]);
            }
            Role::Tool(_) => eprintln!("token-keeper: {err:#}"),
        }
    }
}

/// Tell the role from the program's name, then parse the tool's arguments.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Role, clap::Error> {
    let args: Vec<OsString> = args.into_iter().collect();
    let name = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match name.as_str() {
        "token-keeper-main" => Ok(Role::MainStep),
        "token-keeper-post" => Ok(Role::PostStep),
        _ => Cli::try_parse_from(args).map(Role::Tool),
    }
}

pub fn run(role: &Role) -> Result<ExitCode> {
    init_logging();
    match role {
        Role::MainStep => main_step::run(&process_env())?,
        Role::PostStep => post_step::run(&process_env())?,
        Role::Tool(cli) => return run_tool(&cli.command),
    }
    Ok(ExitCode::SUCCESS)
}

fn run_tool(tool: &Tool) -> Result<ExitCode> {
    match tool {
        Tool::Credential { state, operation } => {
            // The installed helper names its state; by hand, the job's only one will do.
            let state = match state {
                Some(dir) => dir.clone(),
                None => locate::find(None, None)?.0.dir().path().to_owned(),
            };
            let stdin = std::io::stdin().lock();
            let stdout = std::io::stdout().lock();
            credential::run(
                operation,
                &state,
                stdin,
                stdout,
                std::io::stderr(),
                unix_now(),
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Tool::Token { owner, state } => {
            let served = live(state.as_deref(), owner.as_deref())?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", served.token.expose())?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Tool::Exec {
            owner,
            state,
            command,
        } => {
            let (keeper, state) = locate::find(state.as_deref(), owner.as_deref())?;
            let ghes = state.config.is_enterprise_server();
            let served = serve(&keeper, state)?;
            let (program, args) = command
                .split_first()
                .context("no command given after `--`")?;
            let mut child = Command::new(program);
            child
                .args(args)
                .env("GH_TOKEN", served.token.expose())
                .env("GITHUB_TOKEN", served.token.expose());
            if ghes {
                child.env("GH_ENTERPRISE_TOKEN", served.token.expose());
            }
            let status = child
                .status()
                .with_context(|| format!("cannot run `{}`", program.to_string_lossy()))?;
            Ok(exit_code(status))
        }
    }
}

fn live(state: Option<&Path>, owner: Option<&str>) -> Result<keeper::Served> {
    let (keeper, state) = locate::find(state, owner)?;
    serve(&keeper, state)
}

/// A live token for a tool. In Actions its mask goes to stderr first: a tool that echoes a
/// re-minted token must not show it in the log.
fn serve(keeper: &keeper::Keeper, state: keeper::state::State) -> Result<keeper::Served> {
    let served = keeper.serve(state, unix_now())?;
    if std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true") {
        eprintln!("::add-mask::{}", served.token.expose());
    }
    if let Some(warning) = &served.warning {
        eprintln!("token-keeper: warning: {warning}");
    }
    Ok(served)
}

/// The child's status as ours; a signal becomes 128 + its number, as shells report it.
fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// The environment as a map; names and values that are not UTF-8 are skipped.
fn process_env() -> Env {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// Diagnostics on stderr, when `TOKEN_KEEPER_LOG` or the runner's debug mode asks for them.
fn init_logging() {
    let debug = std::env::var_os("TOKEN_KEEPER_LOG").is_some_and(|v| !v.is_empty())
        || std::env::var("RUNNER_DEBUG").is_ok_and(|v| v == "1");
    if debug {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_max_level(tracing::Level::DEBUG)
            .with_target(false)
            .without_time()
            .init();
    }
}
