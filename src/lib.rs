//! token-keeper: mint GitHub App installation tokens and keep them fresh for git in long jobs.
//!
//! Floors, arrows pointing down only:
//! - `cli` tells which role a process plays and dispatches to it;
//! - `ci` is any other CI's side: `setup` and `revoke` where no runner runs the steps;
//! - `tools` are the commands later steps and git run (`token`, `exec`, and `credential`, which
//!   speaks git's helper protocol); they use `action` for the runner's environment and masks;
//! - `action` is the runner's side: inputs, the environment, file commands, the layout, the
//!   shim's git configuration, the step summary, and the main and post steps;
//! - `keeper` is the job's token store: its settings (what both front doors, the action's inputs
//!   and setup's flags, are turned into), where tokens come from and minting, the state on disk,
//!   locks, the refresh policy, and finding a store;
//! - `github` speaks GitHub's API and knows its rules (names, hosts), nothing of Actions or of
//!   our state;
//! - leaves used by all: `messages` (our prefix, and text from elsewhere made safe to show),
//!   `secret` (secrets held, never shown), `private` (files only the runner's user reads),
//!   `process` (the processes we start, bounded with their whole tree, given the job's signals,
//!   their ends as our exit code, and the platform's shell), `clock`, `duration`.

pub mod action;
mod ci;
pub mod cli;
mod clock;
mod duration;
mod github;
mod keeper;
mod messages;
mod private;
mod process;
mod secret;
mod tools;

/// For tests of long jobs: a store's cached token, or its ledger, made older, through its own
/// lock and types.
pub use keeper::{backdate_cached_token, backdate_ledger};
/// For tests on Windows: the DACL our folders get, and a folder's, read back.
#[cfg(windows)]
pub use private::acl::{Dacl, Entry, dacl_of};
