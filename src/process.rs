//! The processes we start, and their ends: their whole tree within bounds, the job's signals
//! passed on, and a child's end as our exit code.
//!
//! `run` starts a command with stdin closed and reads its stdout and stderr within `Limits`.
//! Past the stdout bound the command is ended: what it prints there is its answer, and an answer
//! that long is wrong already, so reading on would only spend the time limit. Past the stderr
//! bound the rest is read and dropped: a command may say much there and still answer. At the
//! time limit, past the stdout bound, and also as soon as the command itself has exited, every
//! process it started is ended: what we start, we end.
//!
//! `run_attached` and `spawn_forwarding` give a command our stdin, stdout and stderr, as `exec`
//! does, the second also the signals a cancelled job sends us: its end becomes our exit code as
//! a shell reports it (`exit_code`), and a command that cannot be run gets a shell's code too
//! (`CannotRun`).
//!
//! How a command's tree is held and ended, how signals reach a child, how its end is told, and
//! the shell that runs a script (`shell`) are the platform's (`unix`: a process group, signals,
//! `sh`; `windows`: a Job Object, none, `cmd`); the bounds, the reading and the codes are the
//! same on both.
//!
//! A pipe still held by a process that escaped the tree (each platform says how one can) keeps
//! its reading thread waiting: `run` returns at the time limit all the same, and that thread
//! ends when the pipe closes.

use std::io::{self, Read};
use std::process::{Child, Command, ExitCode, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as platform;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as platform;

pub(crate) use platform::shell;

/// `text` for a POSIX shell, as it is: in single quotes, each `'` written `'\''`.
pub(crate) fn shell_quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// What a command may print, and for how long it may run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Bytes of stdout: a command that prints more is ended.
    pub(crate) stdout: usize,
    /// Bytes of stderr kept: the rest is read and dropped.
    pub(crate) stderr: usize,
    /// From its start to the end of what it prints.
    pub(crate) time: Duration,
}

/// Why a command gave no output.
#[derive(Debug)]
pub(crate) enum Stopped {
    /// It could not be started, read or waited for.
    Failed(io::Error),
    /// It was still running, or printing, at the time limit.
    Late,
    /// It printed more than `Limits::stdout` bytes on stdout.
    TooLong,
}

/// Run `command` within `limits`: its status, its stdout, and the first `Limits::stderr` bytes of
/// its stderr. Its whole tree is ended by the time this returns.
pub(crate) fn run(mut command: Command, limits: &Limits) -> Result<Output, Stopped> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let deadline = Instant::now() + limits.time;
    let mut tree = Tree::start(command).map_err(Stopped::Failed)?;
    let (tell, events) = mpsc::channel();
    let printed = match watch(&mut tree, limits, tell) {
        Ok(()) => collect(&mut tree, &events, deadline),
        Err(cause) => Err(Stopped::Failed(cause)),
    };
    let status = tree.finish().map_err(Stopped::Failed)?;
    let (stdout, stderr) = printed?;
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// Run `command` to its end with our stdin, stdout and stderr: its end as our exit code.
pub(crate) fn run_attached(command: &mut Command) -> Result<ExitCode, CannotRun> {
    let status = command
        .status()
        .map_err(|cause| CannotRun::new(command, cause))?;
    Ok(exit_code(status))
}

/// Start `command` apart from us and from the step that runs us, to outlive both: in a process
/// group of its own (on Windows, detached from our console), so that no signal or Ctrl+C meant
/// for the step reaches it. Dropping the child leaves it running.
pub(crate) fn spawn_apart(command: &mut Command) -> Result<Child, CannotRun> {
    platform::apart(command);
    command
        .spawn()
        .map_err(|cause| CannotRun::new(command, cause))
}

/// The running binary, links resolved, for what runs it again later (git's helper, the
/// job-wide proxy). Not on Windows, where that would give a `\\?\` path, which Git for Windows'
/// `sh` cannot run, and where the system's own path is absolute already.
pub(crate) fn running_binary() -> io::Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    if cfg!(windows) {
        Ok(exe)
    } else {
        exe.canonicalize()
    }
}

/// Start `command` with our stdin, stdout and stderr, and pass on to it, for the rest of our
/// life, the signals a cancelled job sends, instead of ending us: we outlive it. Windows has none
/// to pass on.
pub(crate) fn spawn_forwarding(command: &mut Command) -> Result<Child, CannotRun> {
    platform::spawn_forwarding(command).map_err(|cause| CannotRun::new(command, cause))
}

/// A command that could not be started.
#[derive(Debug, thiserror::Error)]
#[error("cannot run `{program}`: {cause}")]
pub(crate) struct CannotRun {
    program: String,
    cause: io::Error,
}

impl CannotRun {
    fn new(command: &Command, cause: io::Error) -> Self {
        Self {
            program: command.get_program().to_string_lossy().into_owned(),
            cause,
        }
    }

    /// Our exit code for it, a shell's: 127 when it is not found, 126 when it cannot be run.
    pub(crate) fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self.cause.kind() {
            io::ErrorKind::NotFound => 127,
            _ => 126,
        })
    }
}

/// The child's status as ours.
pub(crate) fn exit_code(status: ExitStatus) -> ExitCode {
    ExitCode::from(code_of(status.code(), platform::signal(status)))
}

/// The exit code for a child that exited with `code` or was ended by `signal`: its own code; a
/// signal's 128 + its number, as shells report it. A code no exit code of ours can carry (on
/// Windows, a crash's `0xC0000005`) is 1, a failure still.
fn code_of(code: Option<i32>, signal: Option<i32>) -> u8 {
    code.or_else(|| signal.map(|s| 128 + s))
        .and_then(|code| u8::try_from(code).ok())
        .unwrap_or(1)
}

/// What the threads watching a command see, each once.
enum Event {
    /// The command itself exited; it is not reaped yet.
    Exited,
    Stdout(io::Result<Vec<u8>>),
    /// Stdout went past its bound, and is no longer read.
    TooLong,
    Stderr(io::Result<Vec<u8>>),
}

/// Read the command's stdout and stderr, and see it exit, each on a thread that tells `tell`.
fn watch(tree: &mut Tree, limits: &Limits, tell: Sender<Event>) -> io::Result<()> {
    let (Some(mut stdout), Some(mut stderr)) = (tree.child.stdout.take(), tree.child.stderr.take())
    else {
        return Err(io::Error::other("the command's output is not piped"));
    };
    let (bound, told) = (limits.stdout, tell.clone());
    thread::Builder::new().spawn(move || {
        let _ = told.send(match read_up_to(&mut stdout, bound) {
            Ok((_, true)) => Event::TooLong,
            read => Event::Stdout(read.map(|(bytes, _)| bytes)),
        });
    })?;
    let (bound, told) = (limits.stderr, tell.clone());
    thread::Builder::new().spawn(move || {
        let read = read_up_to(&mut stderr, bound).and_then(|(bytes, more)| {
            if more {
                io::copy(&mut stderr, &mut io::sink())?;
            }
            Ok(bytes)
        });
        let _ = told.send(Event::Stderr(read));
    })?;
    let exited = tree.exited()?;
    tree.watcher = Some(thread::Builder::new().spawn(move || {
        exited();
        let _ = tell.send(Event::Exited);
    })?);
    Ok(())
}

/// Up to `bound` bytes from `pipe`, and whether it had more.
fn read_up_to(pipe: &mut impl Read, bound: usize) -> io::Result<(Vec<u8>, bool)> {
    let mut bytes = Vec::new();
    pipe.take(bound as u64 + 1).read_to_end(&mut bytes)?;
    let more = bytes.len() > bound;
    bytes.truncate(bound);
    Ok((bytes, more))
}

/// Stdout and stderr once the command has exited and both are closed, before `deadline`. The
/// tree is ended as soon as the command exits.
fn collect(
    tree: &mut Tree,
    events: &Receiver<Event>,
    deadline: Instant,
) -> Result<(Vec<u8>, Vec<u8>), Stopped> {
    let (mut exited, mut stdout, mut stderr) = (false, None, None);
    while !(exited && stdout.is_some() && stderr.is_some()) {
        match events.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Event::Exited) => {
                exited = true;
                // What it left running would only hold its pipes open.
                tree.end();
            }
            Ok(Event::Stdout(read)) => stdout = Some(read.map_err(Stopped::Failed)?),
            Ok(Event::Stderr(read)) => stderr = Some(read.map_err(Stopped::Failed)?),
            Ok(Event::TooLong) => return Err(Stopped::TooLong),
            Err(RecvTimeoutError::Timeout) => return Err(Stopped::Late),
            Err(RecvTimeoutError::Disconnected) => {
                let lost = io::Error::other("a thread watching the command ended early");
                return Err(Stopped::Failed(lost));
            }
        }
    }
    Ok((stdout.unwrap_or_default(), stderr.unwrap_or_default()))
}

/// A command and everything it starts, ended together.
struct Tree {
    child: Child,
    /// The thread that sees the command exit: it is done before the command is reaped.
    watcher: Option<JoinHandle<()>>,
    /// Set as the command is reaped: from then on its id may be another process's.
    reaped: bool,
    /// Holds everything the command starts.
    group: platform::Group,
}

impl Tree {
    fn start(command: Command) -> io::Result<Self> {
        let (child, group) = platform::Group::start(command)?;
        Ok(Self {
            child,
            watcher: None,
            reaped: false,
            group,
        })
    }

    /// Something that returns once the command has exited, leaving it unreaped.
    fn exited(&self) -> io::Result<impl FnOnce() + Send + 'static> {
        platform::exited(&self.child)
    }

    /// Kill every process of the tree. Once the command is reaped, that was done already.
    fn end(&mut self) {
        if !self.reaped {
            self.group.end(&mut self.child);
        }
    }

    /// End the tree, reap the command, and give its status.
    fn finish(&mut self) -> io::Result<ExitStatus> {
        self.end();
        if let Some(watcher) = self.watcher.take() {
            // It returns as the command, killed above, exits.
            let _ = watcher.join();
        }
        self.reaped = true;
        self.child.wait()
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.finish();
        }
    }
}

/// `cmd`'s arguments for `script`, passed as they are: with `/S`, cmd strips the first and the
/// last quote after `/C` and runs what is between, the script's own quotes kept. `/D` skips the
/// registry's AutoRun commands, which could print before the script's answer.
#[cfg(any(windows, test))]
fn cmd_arguments(script: &str) -> String {
    format!("/D /S /C \"{script}\"")
}

/// The tests' bounds: an identity token's, with time to spare on a loaded machine.
#[cfg(test)]
const LIMITS: Limits = Limits {
    stdout: 64 << 10,
    stderr: 4 << 10,
    time: Duration::from_secs(10),
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_childs_code_is_ours_and_a_signal_is_128_plus_its_number() {
        assert_eq!(code_of(Some(0), None), 0);
        assert_eq!(code_of(Some(3), None), 3);
        assert_eq!(code_of(Some(255), None), 255);
        assert_eq!(code_of(None, Some(9)), 137);
        assert_eq!(code_of(None, None), 1);
    }

    #[test]
    fn a_code_beyond_ours_is_a_failure_never_success() {
        // 256 would be 0 if cut to a byte; Windows reports 0xC0000005 as a negative i32.
        assert_eq!(code_of(Some(256), None), 1);
        assert_eq!(code_of(Some(0xC000_0005_u32 as i32), None), 1);
        assert_eq!(code_of(Some(-1), None), 1);
    }

    #[test]
    fn cmd_gets_the_identity_command_as_it_was_written() {
        assert_eq!(
            cmd_arguments("buildkite-agent oidc request-token --audience octo-sts.dev"),
            "/D /S /C \"buildkite-agent oidc request-token --audience octo-sts.dev\""
        );
        assert_eq!(
            cmd_arguments(r#"curl -sH "A: b" "http://metadata/x?a=1&b=2""#),
            r#"/D /S /C "curl -sH "A: b" "http://metadata/x?a=1&b=2"""#
        );
    }
}
