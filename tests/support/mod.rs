//! What the integration tests fake or emulate: GitHub's API and the Actions runner.
#![allow(dead_code)]

pub mod engine;
pub mod fake_github;
pub mod git_server;
pub mod logs;
pub mod measure;
pub mod proxy;
pub mod relay;
pub mod runner;
pub mod sts;
pub mod tls;
