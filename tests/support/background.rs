//! A process that a command under test started in the background, found by the pid it wrote to
//! a file: whether it still runs, and, should the test fail while it does, its process group
//! killed, and so whatever else the command started. The unit tests of `process` use it too.

use std::path::PathBuf;
use std::time::{Duration, Instant};

pub struct Background {
    /// Where the command writes the pid (`echo $! > FILE`).
    pub file: PathBuf,
}

impl Background {
    pub fn pid(&self) -> libc::pid_t {
        let written = std::fs::read_to_string(&self.file).expect("the command wrote its pid");
        written.trim().parse().expect("a pid")
    }

    /// Whether it still runs, a few seconds given for a kill to land.
    pub fn still_runs(&self) -> bool {
        let started = Instant::now();
        while running(self.pid()) {
            if started.elapsed() > Duration::from_secs(5) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let written = std::fs::read_to_string(&self.file).unwrap_or_default();
        let Ok(pid) = written.trim().parse() else {
            return;
        };
        if std::thread::panicking() && running(pid) {
            // SAFETY: no memory preconditions. The pid runs what the test started, so its group
            // is the command's, unless it is ours.
            unsafe {
                let group = libc::getpgid(pid);
                if group > 0 && group != libc::getpgrp() {
                    libc::killpg(group, libc::SIGKILL);
                }
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

/// Whether `pid` runs: a zombie that nobody reaped yet has ended too.
fn running(pid: libc::pid_t) -> bool {
    #[cfg(target_os = "linux")]
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        let state = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next());
        return !matches!(state, Some('Z' | 'X'));
    }
    // SAFETY: signal 0 only asks whether the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}
