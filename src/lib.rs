//! token-keeper: mint GitHub App installation tokens in Actions and keep them fresh for git.
//!
//! `github` speaks to GitHub's API and knows nothing else; `keeper` stores tokens for every
//! process of a job; `action` is the runner's side (inputs, file commands, main and post steps);
//! `cli` tells which of those roles a process plays.

pub mod action;
pub mod cli;
pub mod github;
pub mod keeper;
