//! Processes on Unix: a command's tree is its process group, the job's signals are passed on,
//! and a child may end by a signal.
//!
//! The command leads a process group of its own, which `killpg` ends. The group's id stays
//! reserved while its leader is unreaped, so the leader's exit is only seen (`waitid` with
//! `WNOWAIT`), the group is killed, and the leader is reaped last: a group id used again by
//! someone else is never signalled. A process that leaves the group (`setsid`, or a shell's job
//! control, `set -m`) escapes, and so does the whole group if we are killed ourselves.
//!
//! A cancelled job sends SIGINT, SIGTERM or SIGHUP. To pass them on to a child, they are blocked
//! in the thread that starts it and in every thread that one starts from then on, and a thread
//! of ours waits for them (`sigwait`) and sends each to the child, which starts with the mask we
//! had.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};

/// The command's process group, whose id is the command's pid.
pub(super) struct Group;

impl Group {
    /// Start `command` as the leader of a process group of its own.
    pub(super) fn start(mut command: Command) -> io::Result<(Child, Self)> {
        command.process_group(0);
        Ok((command.spawn()?, Group))
    }

    /// Kill the group of `leader`, unreaped, and `leader` itself should it have left it.
    pub(super) fn end(&self, leader: &mut Child) {
        if let Ok(group) = libc::pid_t::try_from(leader.id()) {
            // SAFETY: killpg has no memory preconditions. The group's id is its unreaped
            // leader's pid, so it is still this group's.
            unsafe { libc::killpg(group, libc::SIGKILL) };
        }
        let _ = leader.kill();
    }
}

/// Something that returns once `child` has exited, leaving it unreaped.
pub(super) fn exited(child: &Child) -> io::Result<impl FnOnce() + Send + 'static> {
    let pid = libc::id_t::from(child.id());
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

/// The signal that ended a child, if one did.
pub(super) fn signal(status: ExitStatus) -> Option<i32> {
    std::os::unix::process::ExitStatusExt::signal(&status)
}

/// `script` for `sh -c`, as a Unix CI runs a step's script.
pub(crate) fn shell(script: &str) -> Command {
    let mut shell = Command::new("sh");
    shell.arg("-c").arg(script);
    shell
}

/// A process group of its own, led by the child.
pub(super) fn apart(command: &mut Command) {
    std::os::unix::process::CommandExt::process_group(command, 0);
}

/// Start `child` with the signals passed on to it.
pub(super) fn spawn_forwarding(child: &mut Command) -> io::Result<Child> {
    let signals = Signals::block();
    signals.unblock_in(child);
    let running = child.spawn()?;
    signals.forward_to(running.id());
    Ok(running)
}

#[derive(Clone, Copy)]
struct Signals {
    set: libc::sigset_t,
    before: libc::sigset_t,
}

impl Signals {
    /// Block them in this thread, and in the threads it starts from now on.
    fn block() -> Self {
        // SAFETY: the sets are plain data initialised by sigemptyset before any other use, and
        // pthread_sigmask only changes this thread's mask.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            let mut before: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                libc::sigaddset(&mut set, signal);
            }
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut before);
            Self { set, before }
        }
    }

    /// The child starts with the mask we had: it takes signals as it would without us.
    fn unblock_in(self, child: &mut Command) {
        // SAFETY: pthread_sigmask is async-signal-safe and touches only the child's mask.
        unsafe {
            child.pre_exec(move || {
                libc::pthread_sigmask(libc::SIG_SETMASK, &self.before, std::ptr::null_mut());
                Ok(())
            });
        }
    }

    /// Pass each one on to `pid`, from a thread that waits for them for the rest of our life.
    fn forward_to(self, pid: u32) {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return;
        };
        std::thread::spawn(move || {
            loop {
                let mut signal = 0;
                // SAFETY: the set is initialised, `signal` is a valid place to write.
                if unsafe { libc::sigwait(&self.set, &mut signal) } == 0 {
                    // SAFETY: kill has no memory preconditions.
                    unsafe { libc::kill(pid, signal) };
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;
    use std::time::Duration;

    use testkit::background::Background;

    use super::shell as sh;
    use crate::process::{LIMITS, Limits, Stopped, run};

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
