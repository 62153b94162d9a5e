//! token-keeper: mint GitHub App installation tokens in Actions and keep them fresh for git.
//!
//! `github` speaks to GitHub's API and knows nothing else; `keeper` stores tokens for every
//! process of a job and decides when to re-mint; `credential` answers git; `action` is the
//! runner's side (inputs, file commands, main and post steps); `cli` tells which role a process
//! plays. Arrows point one way: `action` and `credential` use `keeper`, which uses `github`.

pub mod action;
pub mod cli;
pub mod credential;
pub mod duration;
pub mod github;
pub mod keeper;
