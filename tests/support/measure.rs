//! Run a process and measure it: wall time from spawn to exit, and its peak memory (`wait4`).

use std::io::{Read, Seek, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// A finished process and what it cost.
#[derive(Debug)]
pub struct Measured {
    pub output: Output,
    pub elapsed: Duration,
    /// Peak resident memory, KiB.
    pub max_rss_kib: i64,
}

/// Run `command` with `stdin`; stdout and stderr go through files, so no pipe can fill up.
pub fn run(command: &mut Command, stdin: &[u8]) -> std::io::Result<Measured> {
    let mut out = tempfile::tempfile()?;
    let mut err = tempfile::tempfile()?;
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(out.try_clone()?)
        .stderr(err.try_clone()?)
        .spawn()?;
    if let Some(mut input) = child.stdin.take() {
        // A child that does not read its input is fine.
        let _ = input.write_all(stdin);
    }
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our child, not yet reaped; both pointers are valid for the call.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let elapsed = started.elapsed();
    if reaped != pid {
        return Err(std::io::Error::last_os_error());
    }
    let read = |file: &mut std::fs::File| -> std::io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        file.rewind()?;
        file.read_to_end(&mut bytes)?;
        Ok(bytes)
    };
    Ok(Measured {
        output: Output {
            status: ExitStatus::from_raw(status),
            stdout: read(&mut out)?,
            stderr: read(&mut err)?,
        },
        elapsed,
        max_rss_kib: usage.ru_maxrss,
    })
}
