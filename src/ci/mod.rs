//! Any CI's side: `setup` mints and keeps a job's token where no Actions runner runs the main
//! and post steps (GitLab, Jenkins, Buildkite, CircleCI, Azure Pipelines, a plain shell), and
//! `revoke` ends it. Between them, `token`, `exec` and git's helper work as in Actions.
//!
//! Nothing here prints a workflow command or writes a file command: setup prints what the shell
//! needs, and only fingerprints of tokens.

pub(crate) mod gitconfig;
pub(crate) mod revoke;
pub(crate) mod setup;
pub(crate) mod shell;

use std::path::{Path, PathBuf};

use crate::keeper::locate;

/// This job's folder of stores, as the process's variables place it.
fn ci_root() -> PathBuf {
    locate::ci_root(|name| std::env::var(name).ok())
}

/// The job's folder of stores goes when the last store has: only when empty, as the job's other
/// stores may live there.
fn remove_if_empty(root: Option<&Path>) {
    if let Some(root) = root.filter(|root| *root == ci_root()) {
        let _ = std::fs::remove_dir(root);
    }
}
