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
