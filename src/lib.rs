//! token-keeper: mint GitHub App installation tokens and keep them fresh for git in long jobs.
//!
//! Floors, arrows pointing down only:
//! - `cli` tells which role a process plays, reads the environment once (`env`), picks the
//!   reporter it speaks through (`report`) and dispatches;
//! - two front doors, which never call each other: `action` (the action's inputs, file commands,
//!   step summary, main and post steps) and `ci` (`setup`'s flags, `setup` and `revoke` where no
//!   runner runs the steps, what `setup` prints);
//! - `tools` are the commands later steps and git run (`token`, `exec`, and `credential`, which
//!   speaks git's helper protocol), whichever door began the job's keeper; `exec --proxy` and
//!   `proxy start` put a live token on every GitHub request of a child's or a job's clients;
//! - `git`, used by the doors and the tools: what git is told, the helper protocol, the binary
//!   later steps run for it and the user's global git config;
//! - `keeper` is the core: the job's token store, its settings (what both doors turn what their
//!   user gives into), a job's keeper begun and ended (`job`), where tokens come from and
//!   minting, the store on disk (its ledger, lock, layout and how it is found), the refresh
//!   policy;
//! - `github` speaks GitHub's API and knows its rules (names, hosts), nothing of Actions or of
//!   our state; `aws` speaks as much of AWS as signing the App's JWT in KMS needs, over
//!   `github`'s HTTP client;
//! - leaves used by all: `env` (the environment, read once), `report` (one reporter, Actions'
//!   or plain, for every message), `messages` (our prefix, and text from elsewhere made safe to show),
//!   `secret` (secrets held, never shown), `private` (files only the runner's user reads),
//!   `process` (the processes we start, bounded with their whole tree, given the job's signals,
//!   their ends as our exit code, and the platform's shell), `clock`, `duration`.

pub mod action;
mod ci;
pub mod cli;
mod clock;
mod duration;
mod env;
mod git;
mod github;
mod keeper;
mod messages;
mod private;
mod process;
mod report;
mod secret;
mod tools;

/// For tests against a KMS API (moto's): a message signed with a key there.
pub use github::signer::aws::sign_for_test as kms_sign_for_test;
/// For tests of long jobs: a store's cached token, or its ledger, made older, through its own
/// lock and types.
pub use keeper::{backdate_cached_token, backdate_ledger};
/// For tests on Windows: the DACL our folders get, and a folder's, read back.
#[cfg(windows)]
pub use private::acl::{Dacl, Entry, dacl_of};
