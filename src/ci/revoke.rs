//! `token-keeper revoke`: end what `setup` started. Every live token of the store is revoked,
//! the git configuration setup wrote is taken out, and the store goes.
//!
//! The store is the one `--state` names, or else every store of this job: the one
//! `TOKEN_KEEPER_STATE` names and those setup made in the CI's temporary folder, so that a shell
//! that has nothing but the CI's own variables (GitLab's `after_script`) finds them. Only setup's:
//! in an Actions job that folder holds the action's stores too, which its post step ends.
//! Run twice, or where setup never ran, it says so and succeeds.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, bail};

use super::{ci_root, gitconfig, remove_if_empty, setup};
use crate::clock::unix_now;
use crate::github::client::Knobs;
use crate::keeper::state::{self, LedgerEntry, StateDir};
use crate::keeper::{self, Keeper, locate};
use crate::messages;

/// All revocations of a store end within this.
const REVOKE_DEADLINE: Duration = Duration::from_secs(10);
/// How long a re-mint in progress may hold up the revocation.
const LOCK_WAIT: Duration = Duration::from_secs(3);

pub(crate) fn run(explicit: Option<&Path>) -> Result<ExitCode> {
    let stores = match explicit {
        Some(dir) => vec![dir.to_owned()],
        None => {
            let exported = std::env::var_os(locate::STATE_VARIABLE)
                .filter(|s| !s.is_empty())
                .map(PathBuf::from);
            let mut stores: Vec<PathBuf> = exported.into_iter().collect();
            for store in this_jobs_stores() {
                if !stores.contains(&store) {
                    stores.push(store);
                }
            }
            stores
        }
    };
    let (mut ended, mut failed) = (0, Vec::new());
    // A store that fails must not keep the next one's tokens alive.
    for store in &stores {
        match end(store) {
            Ok(true) => ended += 1,
            Ok(false) => {}
            Err(err) => {
                let store = store.display().to_string();
                messages::warn(
                    std::io::stderr(),
                    &format!("cannot end the store `{store}`: {err:#}"),
                );
                failed.push(store);
            }
        }
    }
    if !failed.is_empty() {
        bail!(
            "could not end {}: see why above",
            messages::quoted_list(&failed)
        );
    }
    if ended == 0 {
        let looked = explicit.map_or_else(ci_root, Path::to_owned);
        messages::say(
            std::io::stderr(),
            &format!(
                "nothing to revoke: no token-keeper state in `{}`",
                looked.display()
            ),
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The stores setup made for this job.
fn this_jobs_stores() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(ci_root()) else {
        return Vec::new();
    };
    let mut stores: Vec<PathBuf> = entries
        .flatten()
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with(setup::STORE_PREFIX)
        })
        .map(|entry| entry.path())
        .filter(|path| path.join(state::LEDGER).exists() || path.join(state::STATE).exists())
        .collect();
    stores.sort();
    stores
}

/// End the store at `path`: whether there was one.
fn end(path: &Path) -> Result<bool> {
    let Ok(dir) = StateDir::open(path) else {
        return Ok(false);
    };
    // Read before the store goes: where its tokens are revoked, and whether git names it.
    let state = dir.state()?;
    let configured = gitconfig::installed(path);
    let mut failed = None;
    let retired = Keeper::retire(dir, LOCK_WAIT, |ledger| {
        let live: Vec<LedgerEntry> = ledger
            .into_iter()
            .filter(|e| e.is_live(unix_now()))
            .collect();
        if live.is_empty() {
            return;
        }
        let Some(state) = &state else {
            failed = Some(anyhow::anyhow!(
                "the store `{}` names no API to revoke its tokens at",
                path.display()
            ));
            return;
        };
        let connected = Knobs::from_env(|name| std::env::var(name).ok())
            .map_err(anyhow::Error::from)
            .and_then(|knobs| keeper::connect(state, REVOKE_DEADLINE, &knobs));
        let (gh, runtime) = match connected {
            Ok(pair) => pair,
            Err(err) => {
                failed = Some(err.context("cannot revoke tokens"));
                return;
            }
        };
        keeper::revoke_and_tell(
            gh,
            &runtime,
            &live,
            |_| None,
            |text| messages::say(std::io::stderr(), text),
            |text| messages::warn(std::io::stderr(), text),
        );
    });
    remove_if_empty(path.parent());
    // After the revocation, so that a git that fails cannot keep the tokens live.
    let unset = if configured {
        gitconfig::unset(path)
    } else {
        Ok(())
    };
    retired?;
    unset?;
    match failed {
        Some(err) => Err(err),
        None => Ok(true),
    }
}
