//! The GitHub App API: keys, signers, JWTs, the HTTP client, the calls we make, and GitHub's rules for
//! names and hosts.
//!
//! Nothing here knows about Actions or our state on disk (it uses only the crate's leaves);
//! it takes values in and hands values back, and its errors say what a server did, not which
//! input to change, so every other part of the crate can be tested against it with a fake
//! server.

pub(crate) mod apps;
pub(crate) mod client;
pub(crate) mod exchange;
pub(crate) mod hosts;
pub(crate) mod jwt;
pub(crate) mod key;
pub(crate) mod names;
pub(crate) mod permissions;
pub(crate) mod signer;

pub(crate) use apps::{Installation, MintedToken, Target, TokenRequest};
pub(crate) use client::GitHub;
pub(crate) use key::PrivateKey;
pub(crate) use signer::Signer;
