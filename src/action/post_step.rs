//! The post step: revoke every token the job minted, then delete the step's state.
//!
//! It runs even when the main step failed, and never fails the job: a token that expired or was
//! revoked already is done, quietly; any other failure is a warning with its status. It never
//! mints.

use std::path::Path;

use anyhow::Result;

use super::inputs::{self, Env};
use super::main_step::{http_options, runtime};
use super::workflow;
use crate::github::apps::{self, Revoked};
use crate::github::client::unix_now;
use crate::github::{GitHub, Secret};
use crate::keeper::state::{LedgerEntry, StateDir};

pub fn run(env: &Env) -> Result<()> {
    let Some(dir) = env.get("STATE_dir").filter(|d| !d.is_empty()) else {
        println!("token-keeper: nothing to clean up (the main step stopped before it minted)");
        return Ok(());
    };
    let dir = match StateDir::open(Path::new(dir)) {
        Ok(dir) => dir,
        Err(_) => {
            println!("token-keeper: nothing to clean up (`{dir}` is gone)");
            return Ok(());
        }
    };
    let live: Vec<LedgerEntry> = match dir.ledger() {
        Ok(entries) => entries
            .into_iter()
            .filter(|e| e.is_live(unix_now()))
            .collect(),
        Err(err) => {
            warn(&format!("cannot read the list of tokens to revoke: {err}"));
            Vec::new()
        }
    };
    let skip = matches!(inputs::input(env, "skip-token-revoke"), Some(v) if v.eq_ignore_ascii_case("true"));
    if skip {
        println!(
            "token-keeper: not revoking {} token(s): `skip-token-revoke` is true",
            live.len()
        );
    } else if !live.is_empty() {
        revoke_all(env, &live);
    }
    if let Err(err) = dir.remove() {
        warn(&err.to_string());
    }
    Ok(())
}

fn revoke_all(env: &Env, live: &[LedgerEntry]) {
    let client = inputs::api_url(env)
        .map_err(anyhow::Error::from)
        .and_then(|url| {
            let options = http_options(
                env,
                inputs::input(env, "ca-certificates").map(str::to_owned),
            )?;
            Ok(GitHub::new(url, options, 0)?)
        })
        .and_then(|gh| Ok((gh, runtime()?)));
    let (gh, runtime) = match client {
        Ok(pair) => pair,
        Err(err) => {
            warn(&format!("cannot revoke tokens: {err:#}"));
            return;
        }
    };
    runtime.block_on(async {
        for entry in live {
            revoke_one(&gh, &entry.token).await;
        }
    });
}

async fn revoke_one(gh: &GitHub, token: &Secret) {
    match apps::revoke(gh, token).await {
        Ok(Revoked::Now) => println!("token-keeper: revoked {}", token.fingerprint()),
        Ok(Revoked::AlreadyGone) => {
            tracing::debug!("{} had expired or was revoked already", token.fingerprint());
        }
        Err(err) => warn(&format!("could not revoke {}: {err}", token.fingerprint())),
    }
}

fn warn(message: &str) {
    let _ = workflow::print(&[workflow::warning(message)]);
}
