//! Run a process and measure it: wall time from spawn to exit, and its own peak memory.
//!
//! The peak is the exec'd program's `VmHWM`, read from `/proc` while it stops at its exit under
//! ptrace. `wait4`'s `ru_maxrss` cannot give it: at exec, Linux folds the old address space's peak
//! into it, and a child's old address space is this test process's, whatever its size. Tracing
//! costs a run about 0.15 ms: a fork where std would use posix_spawn, and two stops. Elsewhere
//! (macOS, Windows) only the time is measured.

use std::io::{Read, Seek, Write};
#[cfg(target_os = "linux")]
use std::os::unix::process::{CommandExt, ExitStatusExt};
#[cfg(target_os = "linux")]
use std::process::ExitStatus;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A finished process and what it cost.
#[derive(Debug)]
pub struct Measured {
    pub output: Output,
    pub elapsed: Duration,
    /// The program's own peak resident memory, KiB, or why it could not be read.
    pub max_rss_kib: Result<u64, &'static str>,
}

#[cfg(target_os = "linux")]
const REFUSED: &str = "this system refuses ptrace (kernel.yama.ptrace_scope 3, or 2 for a user; \
                       or a seccomp filter), so the child's own peak memory cannot be read";
#[cfg(target_os = "linux")]
const UNSEEN: &str = "the child never stopped at its exit (killed, or ended by another thread), \
                      so its peak memory was not read";

/// Run `command` with `stdin`; all three streams go through files, so no pipe can fill up while
/// the child is stopped, and node under wine, which cannot write to a pipe (`EBADF`), writes.
/// On Linux `command` asks to be traced from then on: spawn it only through here.
pub fn run(command: &mut Command, stdin: &[u8]) -> std::io::Result<Measured> {
    let mut input = tempfile::tempfile()?;
    input.write_all(stdin)?;
    input.rewind()?;
    let mut out = tempfile::tempfile()?;
    let mut err = tempfile::tempfile()?;
    // SAFETY: ptrace is async-signal-safe and touches only the child. Where it is refused the
    // child runs untraced, and `follow` says its peak is unknown.
    #[cfg(target_os = "linux")]
    unsafe {
        command.pre_exec(|| {
            let none = std::ptr::null_mut::<libc::c_void>();
            libc::ptrace(libc::PTRACE_TRACEME, 0, none, none);
            Ok(())
        });
    }
    let started = Instant::now();
    let child = command
        .stdin(input)
        .stdout(out.try_clone()?)
        .stderr(err.try_clone()?)
        .spawn()?;
    #[cfg(target_os = "linux")]
    let (status, max_rss_kib) = {
        let (status, peak) = follow(child.id() as libc::pid_t)?;
        (ExitStatus::from_raw(status), peak)
    };
    #[cfg(not(target_os = "linux"))]
    let (status, max_rss_kib) = (
        { child }.wait()?,
        Err("a process's own peak memory is read on Linux only"),
    );
    let elapsed = started.elapsed();
    let read = |file: &mut std::fs::File| -> std::io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        file.rewind()?;
        file.read_to_end(&mut bytes)?;
        Ok(bytes)
    };
    Ok(Measured {
        output: Output {
            status,
            stdout: read(&mut out)?,
            stderr: read(&mut err)?,
        },
        elapsed,
        max_rss_kib,
    })
}

/// Take the traced child `pid` through its stops to its end: its wait status, and its `VmHWM`
/// as it stopped at its exit. Only the child itself is traced, not its threads or children.
#[cfg(target_os = "linux")]
fn follow(pid: libc::pid_t) -> std::io::Result<(libc::c_int, Result<u64, &'static str>)> {
    let at_exit = libc::SIGTRAP | (libc::PTRACE_EVENT_EXIT << 8);
    let mut execed = false;
    let mut peak = None;
    loop {
        let mut status = 0;
        // SAFETY: `pid` is our child, not yet reaped; `status` is a valid place to write.
        if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
            let error = std::io::Error::last_os_error();
            if error.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error);
        }
        if !libc::WIFSTOPPED(status) {
            let unread = if execed { UNSEEN } else { REFUSED };
            return Ok((status, peak.unwrap_or(Err(unread))));
        }
        let inject = match status >> 8 {
            // The stop that follows exec: from now on, stop at the exit too.
            libc::SIGTRAP if !execed => {
                execed = true;
                let options = libc::PTRACE_O_TRACEEXIT | libc::PTRACE_O_EXITKILL;
                request(libc::PTRACE_SETOPTIONS, pid, options)?;
                0
            }
            event if event == at_exit => {
                peak =
                    Some(vm_hwm(pid).ok_or("no VmHWM in /proc/<pid>/status at the child's exit"));
                0
            }
            // A signal on its way to the child: it gets it, as it would untraced.
            _ => libc::WSTOPSIG(status),
        };
        request(libc::PTRACE_CONT, pid, inject)?;
    }
}

/// A ptrace request to the stopped tracee `pid`. One that was killed meanwhile is not an error:
/// the next wait reaps it.
#[cfg(target_os = "linux")]
fn request(op: libc::c_uint, pid: libc::pid_t, data: libc::c_int) -> std::io::Result<()> {
    let none = std::ptr::null_mut::<libc::c_void>();
    // SAFETY: these requests read no memory of ours; `data` goes by value, as a long.
    if unsafe { libc::ptrace(op, pid, none, libc::c_long::from(data)) } == 0 {
        return Ok(());
    }
    let error = std::io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::ESRCH) => Ok(()),
        _ => Err(error),
    }
}

/// The peak resident memory of `pid`'s address space, KiB, from `/proc/<pid>/status`.
#[cfg(target_os = "linux")]
pub fn vm_hwm(pid: libc::pid_t) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    line.trim().strip_suffix("kB")?.trim().parse().ok()
}
