//! The processes we start, bounded: what they may print, how long they may run, and their whole
//! tree ended once we are done with them.
//!
//! `run` starts a command with stdin closed and reads its stdout and stderr within `Limits`.
//! Past the stdout bound the command is ended: what it prints there is its answer, and an answer
//! that long is wrong already, so reading on would only spend the time limit. Past the stderr
//! bound the rest is read and dropped: a command may say much there and still answer. At the
//! time limit, past the stdout bound, and also as soon as the command itself has exited, every
//! process it started is ended: what we start, we end.
//!
//! On Unix the command leads a process group of its own, which `killpg` ends. The group's id
//! stays reserved while its leader is unreaped, so the leader's exit is only seen (`waitid` with
//! `WNOWAIT`), the group is killed, and the leader is reaped last: a group id used again by
//! someone else is never signalled. A process that leaves the group (`setsid`, or a shell's job
//! control, `set -m`) escapes, and so does the whole group if we are killed ourselves.
//!
//! On Windows the command is created suspended, put in a Job Object that kills what it holds
//! when its last handle closes, and resumed: whatever it starts is in the job from its first
//! instruction, and `TerminateJobObject` ends them all. Only a process started on its behalf by
//! another (a service, WMI) is outside the job; the job allows no breakaway.
//!
//! A pipe that an escaped process still holds keeps its reading thread waiting: `run` returns at
//! the time limit all the same, and that thread ends when the pipe closes.

use std::io::{self, Read};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

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
    /// Holds the command and all it starts; closing it kills them.
    #[cfg(windows)]
    job: std::os::windows::io::OwnedHandle,
}

impl Tree {
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

#[cfg(unix)]
impl Tree {
    /// Start `command` as the leader of a process group of its own.
    fn start(mut command: Command) -> io::Result<Self> {
        use std::os::unix::process::CommandExt;
        command.process_group(0);
        Ok(Self {
            child: command.spawn()?,
            watcher: None,
            reaped: false,
        })
    }

    /// Something that returns once the command has exited, leaving it unreaped.
    fn exited(&self) -> io::Result<impl FnOnce() + Send + 'static> {
        let pid = libc::id_t::from(self.child.id());
        Ok(move || {
            loop {
                // SAFETY: `info` is a valid place to write; WNOWAIT leaves the child unreaped.
                let seen = unsafe {
                    let mut info: libc::siginfo_t = std::mem::zeroed();
                    libc::waitid(libc::P_PID, pid, &mut info, libc::WEXITED | libc::WNOWAIT)
                };
                if seen == 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                    return;
                }
            }
        })
    }

    /// Kill the command's process group, and the command itself should it have left it.
    fn end(&mut self) {
        if self.reaped {
            return;
        }
        if let Ok(group) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: killpg has no memory preconditions. The group's id is its unreaped
            // leader's pid, so it is still this group's.
            unsafe { libc::killpg(group, libc::SIGKILL) };
        }
        let _ = self.child.kill();
    }
}

#[cfg(windows)]
impl Tree {
    /// Start `command` suspended, put it in a job of its own, then let it run.
    fn start(mut command: Command) -> io::Result<Self> {
        use std::os::windows::io::AsRawHandle;
        use std::os::windows::process::CommandExt;
        use windows_sys::Win32::System::JobObjects::AssignProcessToJobObject;
        use windows_sys::Win32::System::Threading::CREATE_SUSPENDED;

        let job = windows::job()?;
        command.creation_flags(CREATE_SUSPENDED);
        let mut child = command.spawn()?;
        // SAFETY: both handles are ours and open.
        let put = unsafe { AssignProcessToJobObject(job.as_raw_handle(), child.as_raw_handle()) };
        let started = if put == 0 {
            Err(io::Error::last_os_error())
        } else {
            windows::resume(child.id())
        };
        if let Err(cause) = started {
            // Suspended, it has started nothing.
            let _ = child.kill();
            return Err(cause);
        }
        Ok(Self {
            child,
            watcher: None,
            reaped: false,
            job,
        })
    }

    /// Something that returns once the command has exited.
    fn exited(&self) -> io::Result<impl FnOnce() + Send + 'static> {
        use std::os::windows::io::{AsHandle, AsRawHandle};
        use windows_sys::Win32::System::Threading::{INFINITE, WaitForSingleObject};

        let process = self.child.as_handle().try_clone_to_owned()?;
        Ok(move || {
            // SAFETY: the handle is ours, open until this returns.
            unsafe { WaitForSingleObject(process.as_raw_handle(), INFINITE) };
        })
    }

    /// Kill every process in the job.
    fn end(&mut self) {
        use std::os::windows::io::AsRawHandle;
        use windows_sys::Win32::System::JobObjects::TerminateJobObject;

        // SAFETY: the job's handle is ours and open.
        unsafe { TerminateJobObject(self.job.as_raw_handle(), 1) };
    }
}

/// The Job Object, and resuming a process created suspended.
#[cfg(windows)]
mod windows {
    use std::io;
    use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};

    use windows_sys::Win32::Foundation::INVALID_HANDLE_VALUE;
    use windows_sys::Win32::System::Diagnostics::ToolHelp::{
        CreateToolhelp32Snapshot, TH32CS_SNAPTHREAD, THREADENTRY32, Thread32First, Thread32Next,
    };
    use windows_sys::Win32::System::JobObjects::{
        CreateJobObjectW, JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE, JOBOBJECT_EXTENDED_LIMIT_INFORMATION,
        JobObjectExtendedLimitInformation, SetInformationJobObject,
    };
    use windows_sys::Win32::System::Threading::{OpenThread, ResumeThread, THREAD_SUSPEND_RESUME};

    /// A new job, unnamed, that kills what it holds when its last handle closes: ours, when we
    /// are done or ended ourselves.
    pub(super) fn job() -> io::Result<OwnedHandle> {
        // SAFETY: no attributes and no name: a new job that only we hold.
        let job = owned(unsafe { CreateJobObjectW(std::ptr::null(), std::ptr::null()) })?;
        let mut limits = JOBOBJECT_EXTENDED_LIMIT_INFORMATION::default();
        limits.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
        // SAFETY: the structure this information class takes, and its size.
        let set = unsafe {
            SetInformationJobObject(
                job.as_raw_handle(),
                JobObjectExtendedLimitInformation,
                (&raw const limits).cast(),
                size_of_val(&limits) as u32,
            )
        };
        if set == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(job)
    }

    /// Resume the threads of `pid`, created suspended: it has one. std keeps no handle to it, so
    /// it is found among the system's threads.
    pub(super) fn resume(pid: u32) -> io::Result<()> {
        // SAFETY: a snapshot of every thread; the process id is ignored for threads.
        let snapshot = unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPTHREAD, 0) };
        if snapshot == INVALID_HANDLE_VALUE {
            return Err(io::Error::last_os_error());
        }
        let snapshot = owned(snapshot)?;
        let mut entry = THREADENTRY32 {
            dwSize: size_of::<THREADENTRY32>() as u32,
            ..THREADENTRY32::default()
        };
        let mut resumed = false;
        // SAFETY: the snapshot is open, and `entry` says its own size.
        let mut more = unsafe { Thread32First(snapshot.as_raw_handle(), &mut entry) } != 0;
        while more {
            if entry.th32OwnerProcessID == pid {
                // SAFETY: no memory preconditions; a null handle is an error.
                let thread = unsafe { OpenThread(THREAD_SUSPEND_RESUME, 0, entry.th32ThreadID) };
                let thread = owned(thread)?;
                // SAFETY: the thread's handle is ours and open.
                resumed |= unsafe { ResumeThread(thread.as_raw_handle()) } != u32::MAX;
            }
            // SAFETY: as for the first.
            more = unsafe { Thread32Next(snapshot.as_raw_handle(), &mut entry) } != 0;
        }
        if resumed {
            Ok(())
        } else {
            Err(io::Error::other(
                "the command's thread was not found to resume",
            ))
        }
    }

    /// `handle`, just returned to us, closed when dropped; null is the last error.
    fn owned(handle: windows_sys::Win32::Foundation::HANDLE) -> io::Result<OwnedHandle> {
        if handle.is_null() {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a handle that is ours alone, closed only by its owner.
        Ok(unsafe { OwnedHandle::from_raw_handle(handle) })
    }
}

/// The tests' bounds: an identity token's, with time to spare on a loaded machine.
#[cfg(test)]
const LIMITS: Limits = Limits {
    stdout: 64 << 10,
    stderr: 4 << 10,
    time: Duration::from_secs(10),
};

/// Shared with the integration tests, which wait for what a command left running too.
#[cfg(all(test, unix))]
#[path = "../tests/support/background.rs"]
mod background;

#[cfg(all(test, unix))]
mod tests {
    use super::background::Background;
    use super::*;

    fn sh(script: &str) -> Command {
        let mut sh = Command::new("sh");
        sh.arg("-c").arg(script);
        sh
    }

    #[test]
    fn what_a_command_prints_and_its_status_are_read_with_stdin_closed() {
        let ran = run(sh("cat; printf token; printf said >&2; exit 3"), &LIMITS).unwrap();
        assert_eq!(ran.status.code(), Some(3));
        assert_eq!(ran.stdout, b"token");
        assert_eq!(ran.stderr, b"said");
    }

    #[test]
    fn a_command_that_cannot_start_is_said_to_have_failed() {
        let missing = Command::new("/nonexistent/identity-command");
        let stopped = run(missing, &LIMITS).unwrap_err();
        assert!(matches!(stopped, Stopped::Failed(_)), "{stopped:?}");
    }

    #[test]
    fn a_command_printing_past_the_stdout_bound_is_ended_there() {
        // `yes` never ends by itself: only the bound stops it before the time limit.
        let stopped = run(sh("yes"), &LIMITS).unwrap_err();
        assert!(matches!(stopped, Stopped::TooLong), "{stopped:?}");
        let exact = run(sh("head -c 65536 /dev/zero"), &LIMITS).unwrap();
        assert_eq!(exact.stdout.len(), 64 << 10);
    }

    #[test]
    fn stderr_past_its_bound_is_read_and_dropped() {
        // Closed, the pipe would end `head` (EPIPE); unread, it would hold it to the time limit.
        let ran = run(sh("head -c 1000000 /dev/zero >&2 && echo done"), &LIMITS).unwrap();
        assert!(ran.status.success());
        assert_eq!(ran.stdout, b"done\n");
        assert_eq!(ran.stderr.len(), 4 << 10);
    }

    #[test]
    fn at_the_time_limit_what_the_command_started_is_ended_too() {
        let dir = tempfile::tempdir().unwrap();
        let left = Background {
            file: dir.path().join("pid"),
        };
        let script = format!(
            "sleep 300 & echo $! > '{}'; exec sleep 300",
            left.file.display()
        );
        let limits = Limits {
            time: Duration::from_secs(1),
            ..LIMITS
        };
        let stopped = run(sh(&script), &limits).unwrap_err();
        assert!(matches!(stopped, Stopped::Late), "{stopped:?}");
        assert!(
            !left.still_runs(),
            "the background sleep outlived the limit"
        );
    }

    #[test]
    fn what_a_command_leaves_behind_is_ended_when_it_exits() {
        let dir = tempfile::tempdir().unwrap();
        let left = Background {
            file: dir.path().join("pid"),
        };
        let pid = left.file.display();
        // One child holds no pipe of ours, the other holds stdout: both are ended, and the
        // second no longer holds back the answer.
        for script in [
            format!("sleep 300 >/dev/null 2>&1 & echo $! > '{pid}'; echo token"),
            format!("sleep 300 & echo $! > '{pid}'; echo token"),
        ] {
            let ran = run(sh(&script), &LIMITS).unwrap();
            assert_eq!(ran.stdout, b"token\n", "{script}");
            assert!(
                !left.still_runs(),
                "{script}: the background sleep outlived it"
            );
        }
    }
}

#[cfg(all(test, windows))]
mod windows_tests {
    use std::os::windows::process::CommandExt;

    use super::*;

    fn cmd(script: &str) -> Command {
        let mut cmd = Command::new("cmd.exe");
        cmd.raw_arg(format!("/D /S /C \"{script}\""));
        cmd
    }

    #[test]
    fn what_a_command_prints_and_its_status_are_read() {
        let ran = run(cmd("echo token& echo said 1>&2& exit 3"), &LIMITS).unwrap();
        assert_eq!(ran.status.code(), Some(3));
        assert_eq!(ran.stdout, b"token\r\n");
        assert_eq!(ran.stderr, b"said \r\n");
    }

    #[test]
    fn a_command_printing_past_the_stdout_bound_is_ended_there() {
        // A loop without end: only the job's end stops it before the time limit.
        let forever = cmd("for /L %i in (1,0,2) do @echo yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy");
        let stopped = run(forever, &LIMITS).unwrap_err();
        assert!(matches!(stopped, Stopped::TooLong), "{stopped:?}");
    }

    #[test]
    fn what_a_command_leaves_behind_is_ended_when_it_exits() {
        // The background `cmd` holds stdout for 30 s, unless the job ends it with the command.
        let script = r#"start /b cmd /c "ping -n 30 127.0.0.1 >nul" & echo token"#;
        let ran = run(cmd(script), &LIMITS).unwrap();
        assert_eq!(ran.stdout, b"token\r\n");
    }
}
