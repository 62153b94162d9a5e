//! The post step: revoke every token the job minted, then delete the step's state.
//!
//! It runs even when the main step failed, and never fails the job: a token that expired or was
//! revoked already is done, quietly; any other failure is a warning with its status. It never
//! mints.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use super::inputs::{self, Env};
use super::workflow;
use crate::github::apps::{self, Revoked};
use crate::github::client::{runtime, unix_now};
use crate::github::{GitHub, Secret};
use crate::keeper::state::{LedgerEntry, StateDir};
use crate::keeper::{self, Keeper};

/// The job is over; revoking may take its time, within reason.
const POST_DEADLINE: Duration = Duration::from_secs(30);

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
    let root = dir.path().parent().map(Path::to_owned);
    // The main step refused a bad value; here it can only fall back to revoking.
    let skip = inputs::boolean(env, "skip-token-revoke", false).unwrap_or(false);
    let retired = Keeper::retire(dir, |ledger| {
        let live: Vec<LedgerEntry> = ledger
            .into_iter()
            .filter(|e| e.is_live(unix_now()))
            .collect();
        if skip {
            println!(
                "token-keeper: not revoking {} token(s): `skip-token-revoke` is true",
                live.len()
            );
        } else if !live.is_empty() {
            revoke_all(env, &live);
        }
    });
    if let Err(err) = retired {
        warn(&format!("cannot clean up the job's tokens: {err}"));
    }
    if let Some(root) = root {
        remove_shared_binary(&root);
    }
    Ok(())
}

/// The job's copy of the binary goes with the last step's state.
fn remove_shared_binary(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    let others = entries.flatten().any(|e| e.file_name() != "bin");
    if !others {
        let _ = std::fs::remove_dir_all(root.join("bin"));
        let _ = std::fs::remove_dir(root);
    }
}

fn revoke_all(env: &Env, live: &[LedgerEntry]) {
    let (gh, runtime) = match client(env) {
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

fn client(env: &Env) -> Result<(GitHub, tokio::runtime::Runtime)> {
    let url = inputs::api_url(env)?;
    let ca = inputs::input(env, "ca-certificates").map(str::to_owned);
    let options = keeper::http_options(&|name| env.get(name).cloned(), POST_DEADLINE, ca)
        .map_err(anyhow::Error::msg)?;
    Ok((GitHub::new(url, options, 0)?, runtime()?))
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
