//! The GitHub App API: keys, JWTs, the HTTP client and the calls we make.
//!
//! Nothing here knows about Actions, git or the on-disk state; it takes values in and hands
//! values back, so every other part of the crate can be tested against it with a fake server.

pub mod apps;
pub mod client;
pub mod jwt;
pub mod key;
pub mod secret;

pub use apps::{Installation, MintedToken, Target, TokenRequest};
pub use client::GitHub;
pub use key::{KeyError, PrivateKey};
pub use secret::Secret;
