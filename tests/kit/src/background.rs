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

/// Whether any process of group `pgid` runs, zombies not counted.
#[cfg(target_os = "linux")]
pub fn group_runs(pgid: libc::pid_t) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    let pgid = pgid.to_string();
    entries.flatten().any(|entry| {
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        matches!(state_and_group(&stat), Some((state, group)) if group == pgid && !ended(state))
    })
}

/// Whether `pid` runs: a zombie that nobody reaped yet has ended too.
pub fn running(pid: libc::pid_t) -> bool {
    #[cfg(target_os = "linux")]
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        return !state_and_group(&stat).is_some_and(|(state, _)| ended(state));
    }
    // SAFETY: signal 0 only asks whether the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// A zombie's or a dead process's state.
#[cfg(target_os = "linux")]
fn ended(state: &str) -> bool {
    matches!(state, "Z" | "X")
}

/// A process's state and group from its `/proc/PID/stat`, whose fields follow its name, which
/// may hold spaces: state, parent, group.
#[cfg(target_os = "linux")]
fn state_and_group(stat: &str) -> Option<(&str, &str)> {
    let mut fields = stat.rsplit_once(") ")?.1.split(' ');
    let state = fields.next()?;
    fields.next()?;
    Some((state, fields.next()?))
}
