//! Single flight across processes: an exclusive lock on the state directory's `lock` file.
//!
//! The lock is on a file that is never replaced (a rename would leave waiters locking a dead
//! inode). Waiting is bounded: git is waiting for us. The guard is the only way to replace the
//! state file or append to the ledger, so no such write happens outside the lock.

use std::fs::{File, OpenOptions, TryLockError};
use std::time::{Duration, Instant};

use super::{Ledger, LedgerEntry, State, StateDir};
use crate::private::{FileError, at, open_private};

pub(super) const LOCK: &str = "lock";

#[derive(Debug, thiserror::Error)]
pub(crate) enum LockError {
    #[error(
        "another process has held the lock on `{0}` for over {1}s: it may be stuck re-minting; try again"
    )]
    Timeout(String, u64),
    #[error(transparent)]
    State(#[from] FileError),
    #[error("cannot lock `{path}`: {cause}")]
    Io { path: String, cause: std::io::Error },
}

/// Held while re-minting; released on drop.
pub(crate) struct Guard<'a> {
    dir: &'a StateDir,
    _file: File,
}

impl<'a> Guard<'a> {
    /// Take the lock, waiting at most `bound`; `on_wait` is called once if we have to wait.
    pub(crate) fn acquire(
        dir: &'a StateDir,
        bound: Duration,
        on_wait: impl FnOnce(),
    ) -> Result<Self, LockError> {
        let path = dir.path().join(LOCK);
        let io = |cause| LockError::Io {
            path: path.display().to_string(),
            cause,
        };
        let file = open_private(
            &path,
            OpenOptions::new().read(true).write(true).truncate(false),
            dir.owner(),
        )?;
        let started = Instant::now();
        let mut on_wait = Some(on_wait);
        let mut pause = Duration::from_millis(2);
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Self { dir, _file: file }),
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(e)) => return Err(io(e)),
            }
            if started.elapsed() >= bound {
                return Err(LockError::Timeout(
                    path.display().to_string(),
                    bound.as_secs(),
                ));
            }
            if let Some(notify) = on_wait.take() {
                notify();
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// Replace the state file whole; not once the store's end has begun, which took the cached
    /// token out.
    pub(crate) fn write_state(&self, state: &State) -> Result<(), FileError> {
        let file = self.dir.path().join(super::STATE);
        if self.retiring() {
            return Err(at("write", &file)(std::io::Error::other(super::ENDING)));
        }
        let mut bytes = serde_json::to_vec_pretty(state)
            .map_err(|e| at("write", &file)(std::io::Error::other(e)))?;
        bytes.push(b'\n');
        self.dir.write_atomic(super::STATE, &bytes)
    }

    /// Add a minted token to the ledger.
    pub(crate) fn record(&self, entry: &LedgerEntry) -> Result<(), FileError> {
        self.dir.record(entry)
    }

    /// Replace the ledger whole: only its still-live tokens are left to end.
    pub(crate) fn write_ledger(&self, ledger: &Ledger) -> Result<(), FileError> {
        self.dir.write_ledger(ledger)
    }

    /// Whether the store's end has begun.
    pub(crate) fn retiring(&self) -> bool {
        self.dir.is_retiring()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier};

    use super::*;

    #[test]
    fn a_second_holder_waits_then_times_out() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::example(tmp.path());
        let _held = Guard::acquire(&dir, Duration::from_secs(1), || {}).unwrap();
        let mut waited = false;
        let err = Guard::acquire(&dir, Duration::from_millis(100), || waited = true)
            .err()
            .unwrap();
        assert!(waited);
        assert!(matches!(err, LockError::Timeout(..)), "{err}");
    }

    #[test]
    fn the_lock_serialises_threads() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Arc::new(StateDir::example(tmp.path()));
        let inside = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let start = Arc::new(Barrier::new(4));
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let (dir, inside, start) = (dir.clone(), inside.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    let _guard = Guard::acquire(&dir, Duration::from_secs(5), || {}).unwrap();
                    let now = inside.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(10));
                    inside.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                    now
                })
            })
            .collect();
        for worker in workers {
            assert_eq!(worker.join().unwrap(), 0, "nobody else was inside");
        }
    }
}
