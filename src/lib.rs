//! token-keeper: mint GitHub App installation tokens in Actions and keep them fresh for git.
//!
//! Five floors, arrows pointing down only:
//! - `cli` tells which role a process plays and dispatches: the main and post steps
//!   (`action`), or a command a later step or git runs (`tools`);
//! - `action` is the runner's side (inputs, file commands, layout, the shim, main and post
//!   steps); `tools` the commands (`token`, `exec`, `credential`), with `credential` speaking
//!   git's protocol;
//! - `keeper` stores tokens for every process of a job and decides when to re-mint;
//! - `github` speaks to GitHub's API and knows nothing of Actions, git or the state;
//! - leaves used by all: `messages` (our prefix, and text from elsewhere made safe to show),
//!   `secret` (secrets held, never shown), `private` (files only the runner's user reads),
//!   `clock`, `duration`.

pub mod action;
pub mod cli;
mod clock;
mod credential;
mod duration;
mod github;
mod keeper;
mod messages;
mod private;
mod secret;
mod tools;
