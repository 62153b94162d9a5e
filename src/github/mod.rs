//! The GitHub App API: keys, JWTs, the HTTP client and the calls we make.
//!
//! Nothing here knows about Actions, git or the on-disk state (it uses only the crate's leaves,
//! the clock and durations); it takes values in and hands values back, so every other part of
//! the crate can be tested against it with a fake server.

pub(crate) mod apps;
pub(crate) mod client;
pub(crate) mod exchange;
pub(crate) mod hosts;
pub(crate) mod jwt;
pub(crate) mod key;
pub(crate) mod names;

pub(crate) use apps::{Installation, MintedToken, Target, TokenRequest};
pub(crate) use client::GitHub;
pub(crate) use key::{KeyError, PrivateKey};
