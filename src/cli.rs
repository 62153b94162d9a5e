//! The command line: which role this process plays, and running it.
//!
//! The action's image runs the same binary under two names: `token-keeper-main` for the main step
//! and `token-keeper-post` for the post step. The runner gives both the same arguments and only
//! changes the entrypoint, so the name is what tells a post step, which must never mint, from a
//! main step. The native entry runs the steps in place on the runner host, as exactly
//! `token-keeper step main` and `token-keeper step post`. Anything else is the command-line tool
//! that later steps and git run; what a person gives it is checked for secrets before anything
//! can echo it (`given`), and a mistake in it is one line on stderr.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::action::{main_step, post_step};
use crate::ci::{flags, revoke, setup};
use crate::env::Env;
use crate::keeper::store::layout::Place;
use crate::messages;
use crate::report::{self, Reporter};
use crate::tools::{self, Asker, ExecFailure, ProxyFormat, Supply};

mod given;

pub use given::Refused;

/// Keep GitHub App installation tokens alive for long CI jobs: GitHub Actions or any other.
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
        #[arg(long, value_name = "DIR")]
        state: Option<PathBuf>,
        /// `get`, `store` or `erase` (anything else is ignored, as git asks).
        operation: String,
    },
    /// Print a live token on stdout.
    Token {
        #[command(flatten)]
        store: Store,
    },
    /// Outside GitHub Actions: mint a token for this job, keep it fresh for git and the tools,
    /// and print what the shell needs (`eval "$(token-keeper setup …)"`).
    Setup(Box<flags::Args>),
    /// Revoke every token `setup` minted, and remove its state and git configuration.
    Revoke {
        /// The one store to end (default: every store `setup` made for this job,
        /// `TOKEN_KEEPER_STATE`'s among them).
        #[arg(long, value_name = "DIR")]
        state: Option<PathBuf>,
    },
    /// A proxy for the rest of the job that puts a live token on every GitHub request, for
    /// actions and steps that take a token once.
    Proxy {
        #[command(subcommand)]
        command: ProxyCommand,
    },
    /// Run a command with `GH_TOKEN` and `GITHUB_TOKEN` set to a live token. Its exit code is
    /// the command's, but for token-keeper's own: 125 (no token), 126 (the command cannot be
    /// run), 127 (it is not found).
    Exec {
        #[command(flatten)]
        store: Store,
        /// For a long-running command: instead of `GH_TOKEN`, give it a private
        /// `GH_CONFIG_DIR` whose token is replaced before it expires, for as long as it runs.
        #[arg(long, conflicts_with = "proxy")]
        keep_fresh: bool,
        /// For a command whose tools read a token once (MCP servers, agents, Terraform,
        /// octokit): route its HTTP clients through a proxy that puts a live token on every
        /// GitHub request, for as long as it runs.
        #[arg(long)]
        proxy: bool,
        /// With `--proxy`: another variable to give the token in (`RENOVATE_TOKEN`); again for
        /// each.
        #[arg(long = "token-env", value_name = "NAME", requires = "proxy")]
        token_variables: Vec<String>,
        /// The command and its arguments.
        #[arg(trailing_var_arg = true, required = true, allow_hyphen_values = true)]
        command: Vec<OsString>,
    },
}

/// Which of the job's stores a tool takes its token from.
#[derive(Debug, clap::Args)]
struct Store {
    /// The owner whose token to use, when the job minted for several.
    #[arg(long)]
    owner: Option<String>,
    /// The store's folder (default: the one `TOKEN_KEEPER_STATE` names, else the job's only
    /// one, or `--owner`'s).
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum ProxyCommand {
    /// Start it, unless it runs already, and print what reaches it: `export` lines for a shell
    /// to `eval`, or (`--format github-env`) for `$GITHUB_ENV` only where it is, which no tool
    /// reads by itself. The post step or `revoke` stops it.
    Start {
        #[command(flatten)]
        store: Store,
        /// Another variable to give the token in (`RENOVATE_TOKEN`); again for each.
        #[arg(long = "token-env", value_name = "NAME")]
        token_variables: Vec<String>,
        /// `export` lines for a shell to `eval`, or `github-env` lines for `$GITHUB_ENV`.
        #[arg(long, value_enum, default_value = "export")]
        format: ProxyFormat,
    },
    /// The proxy itself, as `start` starts it.
    #[command(hide = true)]
    Serve {
        #[arg(long, value_name = "DIR")]
        state: PathBuf,
        #[arg(long = "token-env", value_name = "NAME")]
        token_variables: Vec<String>,
    },
}

/// What this process is: its role, the environment it was given, read once, and how it speaks.
pub struct Role {
    kind: Kind,
    env: Env,
    reporter: &'static dyn Reporter,
}

#[derive(Debug)]
enum Kind {
    MainStep(Place),
    PostStep(Place),
    Tool(Cli),
}

impl Role {
    fn new(kind: Kind, env: Env) -> Self {
        let reporter = match kind {
            Kind::MainStep(_) | Kind::PostStep(_) => &report::STEP,
            Kind::Tool(_) => report::for_command(&env),
        };
        Self {
            kind,
            env,
            reporter,
        }
    }

    /// Errors of the action's steps become `::error::` lines; the tool's go to stderr.
    pub fn report(&self, failure: &Failure) {
        self.reporter.error(&failure.error);
    }
}

/// A role that failed: what went wrong, and the exit code that says so.
#[derive(Debug)]
pub struct Failure {
    error: anyhow::Error,
    code: ExitCode,
}

impl Failure {
    pub fn code(&self) -> ExitCode {
        self.code
    }

    /// `exec` keeps codes of its own, so that none is taken for its command's.
    fn of_exec(failure: ExecFailure) -> Self {
        Self {
            code: failure.exit_code(),
            error: match failure {
                ExecFailure::CannotRun(cannot) => cannot.into(),
                ExecFailure::Failed(error) => error,
            },
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Self {
            error,
            code: ExitCode::FAILURE,
        }
    }
}

/// Why the command line gave no role: help or a version to print, or a mistake to report.
#[derive(Debug)]
pub enum Usage {
    Clap(clap::Error),
    Refused(Refused),
}

impl Usage {
    /// Print what clap prints for help and versions, or the mistake on one line on stderr; the
    /// exit code is clap's.
    pub fn exit(self) -> ExitCode {
        let line = match self {
            Usage::Refused(Refused(why)) => why,
            Usage::Clap(err) => match given::one_line(err) {
                Ok(line) => line,
                Err(shown) => {
                    let _ = shown.print();
                    return ExitCode::from(u8::try_from(shown.exit_code()).unwrap_or(1));
                }
            },
        };
        messages::say(std::io::stderr(), &line);
        ExitCode::from(2)
    }
}

/// Tell the role from the program's name, then check the tool's arguments and variables
/// (`given`) and parse them. The process's environment is read here, once.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Role, Usage> {
    parse_in(args, Env::of_process())
}

fn parse_in(args: impl IntoIterator<Item = OsString>, env: Env) -> Result<Role, Usage> {
    let args: Vec<OsString> = args.into_iter().collect();
    let name = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let rest: Option<Vec<&str>> = args.iter().skip(1).map(|a| a.to_str()).collect();
    match (name.as_str(), rest.as_deref()) {
        ("token-keeper-main", _) => return Ok(Role::new(Kind::MainStep(Place::Container), env)),
        ("token-keeper-post", _) => return Ok(Role::new(Kind::PostStep(Place::Container), env)),
        (_, Some(["step", "main"])) => return Ok(Role::new(Kind::MainStep(Place::Host), env)),
        (_, Some(["step", "post"])) => return Ok(Role::new(Kind::PostStep(Place::Host), env)),
        _ => {}
    }
    let command = command();
    given::check(&command, &args, &env).map_err(Usage::Refused)?;
    let matches = command.try_get_matches_from(args).map_err(Usage::Clap)?;
    let mut cli = Cli::from_arg_matches(&matches).map_err(Usage::Clap)?;
    // setup's errors name a variable when that is where a value came from.
    if let (Tool::Setup(args), Some((_, given))) = (&mut cli.command, matches.subcommand()) {
        args.note_variables(given);
    }
    Ok(Role::new(Kind::Tool(cli), env))
}

/// The tool's command line; `--help` names the variables a flag reads, never their values.
fn command() -> clap::Command {
    Cli::command().mut_subcommands(|sub| sub.mut_args(|arg| arg.hide_env_values(true)))
}

pub fn run(role: &Role) -> Result<ExitCode, Failure> {
    let (env, reporter) = (&role.env, role.reporter);
    init_logging(env);
    let asker = Asker { env, reporter };
    let ran = match &role.kind {
        Kind::MainStep(place) => main_step::run(env, *place, reporter).map(|()| ExitCode::SUCCESS),
        Kind::PostStep(place) => post_step::run(env, *place, reporter).map(|()| ExitCode::SUCCESS),
        Kind::Tool(cli) => match &cli.command {
            Tool::Credential { state, operation } => {
                tools::credential(state.as_deref(), operation, &asker)
            }
            Tool::Token { store } => {
                tools::token(store.state.as_deref(), store.owner.as_deref(), &asker)
            }
            Tool::Exec {
                store,
                keep_fresh,
                proxy,
                token_variables,
                command,
            } => {
                let supply = match (keep_fresh, proxy) {
                    (_, true) => Supply::Proxy(token_variables),
                    (true, false) => Supply::KeepFresh,
                    (false, false) => Supply::Variables,
                };
                return tools::exec(
                    store.state.as_deref(),
                    store.owner.as_deref(),
                    supply,
                    command,
                    &asker,
                )
                .map_err(Failure::of_exec);
            }
            Tool::Proxy { command } => match command {
                ProxyCommand::Start {
                    store,
                    token_variables,
                    format,
                } => tools::proxy_start(
                    store.state.as_deref(),
                    store.owner.as_deref(),
                    token_variables,
                    *format,
                    &asker,
                ),
                ProxyCommand::Serve {
                    state,
                    token_variables,
                } => tools::proxy_serve(state, token_variables, &asker),
            },
            Tool::Setup(args) => setup::run(args, env, reporter),
            Tool::Revoke { state } => revoke::run(state.as_deref(), env, reporter),
        },
    };
    ran.map_err(Failure::from)
}

/// Diagnostics on stderr, when `TOKEN_KEEPER_LOG` or the runner's debug mode asks for them.
fn init_logging(env: &Env) {
    let debug = env.given("TOKEN_KEEPER_LOG").is_some() || env.get("RUNNER_DEBUG") == Some("1");
    if debug {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_max_level(tracing::Level::DEBUG)
            .with_target(false)
            .without_time()
            .init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(args: &[&str]) -> Result<Kind, Usage> {
        parse_in(args.iter().map(OsString::from), Env::default()).map(|role| role.kind)
    }

    #[test]
    fn every_argument_of_every_command_says_what_it_is() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && !arg.is_hide_set() && arg.get_help().is_none() {
                    missing.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "token-keeper", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:?}");
    }

    #[test]
    fn the_program_name_or_exactly_step_main_or_post_makes_a_step() {
        let place = |args: &[&str]| match role(args) {
            Ok(Kind::MainStep(place)) => Some(("main", place)),
            Ok(Kind::PostStep(place)) => Some(("post", place)),
            _ => None,
        };
        let main = "/usr/local/bin/token-keeper-main";
        assert_eq!(place(&[main]), Some(("main", Place::Container)));
        assert_eq!(
            place(&[main, "step", "post"]),
            Some(("main", Place::Container))
        );
        assert_eq!(
            place(&["token-keeper-post"]),
            Some(("post", Place::Container))
        );
        assert_eq!(
            place(&["token-keeper", "step", "main"]),
            Some(("main", Place::Host))
        );
        assert_eq!(
            place(&["tk.exe", "step", "post"]),
            Some(("post", Place::Host))
        );
        // Nothing else is a step: no tool's mistyped command mints or revokes.
        for args in [
            &["token-keeper", "step"][..],
            &["token-keeper", "step", "main", "--owner", "x"],
            &["token-keeper", "step", "Main"],
            &["token-keeper", "--", "step", "main"],
        ] {
            assert!(role(args).is_err(), "{args:?}");
        }
        assert!(matches!(
            role(&["token-keeper", "token"]),
            Ok(Kind::Tool(_))
        ));
    }
}
