//! token-keeper: mint GitHub App installation tokens in Actions and keep them fresh for git.
//!
//! `github` speaks to GitHub's API and knows nothing else; `keeper` stores tokens for every
//! process of a job and decides when to re-mint; `credential` answers git; `action` is the
//! runner's side (inputs, file commands, main and post steps); `cli` tells which role a process
//! plays. Arrows point one way: `action` uses `keeper` and `github`, `credential` uses `keeper`,
//! `keeper` uses `github`, and `github` uses nothing of ours.

pub mod action;
pub mod cli;
mod clock;
mod credential;
mod duration;
mod github;
mod keeper;
mod private;
mod tools;
