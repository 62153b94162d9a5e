//! The post step: revoke every token the job minted, then delete the step's state.
//!
//! It runs even when the main step failed, and never fails the job: a token that has expired by
//! the ledger is left alone; one that GitHub would not revoke is a warning with its status. All
//! revocations run at once, within one deadline. It never mints.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Result;

use super::env::Env;
use super::inputs;
use super::layout::{self, Layout, Place};
use super::workflow;
use crate::github::GitHub;
use crate::github::client::{self, Knobs, Runtime};
use crate::keeper::locate::BIN;
use crate::keeper::settings::Setting;
use crate::keeper::state::{Api, Ledger, StateDir};
use crate::keeper::{self, Keeper, Unended};
use crate::messages;

/// The whole step ends within about this: the job is waiting. Every revocation runs at once.
const POST_DEADLINE: Duration = Duration::from_secs(10);
/// How long a re-mint in progress may hold up the step; after that it revokes regardless.
const POST_LOCK_WAIT: Duration = Duration::from_secs(3);

pub(crate) fn run(env: &Env, place: Place) -> Result<()> {
    let started = Instant::now();
    let Some(dir) = state_dir(env, place) else {
        return Ok(());
    };
    let dir = match StateDir::open_store(&dir) {
        Ok(Some(dir)) => dir,
        Ok(None) => {
            say(&format!(
                "nothing to clean up (`{}` is gone)",
                dir.display()
            ));
            return Ok(());
        }
        Err(err) => {
            warn(&format!("cannot clean up the job's tokens: {err}"));
            return Ok(());
        }
    };
    let root = dir.path().parent().map(Path::to_owned);
    // The main step refused a bad value; here it can only fall back to revoking.
    let skip = inputs::boolean(env, Setting::SkipTokenRevoke).unwrap_or(false);
    let retired = Keeper::retire(dir, POST_LOCK_WAIT, Unended::Dropped, |live| {
        if skip {
            say(&format!(
                "not revoking {} token(s): `skip-token-revoke` is true",
                live.entries.len()
            ));
            // Left to live, as asked: nothing more is ours to do for them.
            return vec![true; live.entries.len()];
        }
        revoke_all(env, live, POST_DEADLINE.saturating_sub(started.elapsed()))
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
    let others = entries.flatten().any(|e| e.file_name() != BIN);
    if !others {
        let _ = std::fs::remove_dir_all(root.join(BIN));
        let _ = std::fs::remove_dir(root);
    }
}

/// Revoke every live token at once, all within one deadline, where the ledger says they came
/// from (else where the inputs do); warn for each that did not go. Which went.
fn revoke_all(env: &Env, live: &Ledger, deadline: Duration) -> Vec<bool> {
    let none = || vec![false; live.entries.len()];
    let (gh, runtime) = match client(env, live.api.as_ref(), deadline) {
        Ok(pair) => pair,
        Err(err) => {
            warn(&format!("cannot revoke tokens: {err:#}"));
            return none();
        }
    };
    keeper::revoke_and_tell(gh, &runtime, &live.entries, inputs::fix_for, say, warn)
}

fn client(env: &Env, api: Option<&Api>, deadline: Duration) -> Result<(GitHub, Runtime)> {
    let knobs = Knobs::from_env(|name| env.get(name).cloned())?;
    if let Some(api) = api {
        return keeper::connect(api, 0, deadline, &knobs);
    }
    let url = inputs::api_url(env)?;
    let ca = inputs::input(env, "ca-certificates").map(str::to_owned);
    Ok(client::connect(url, deadline, ca, 0, &knobs)?)
}

/// The step's state directory: the one the main step saved, or, where the runner passes no
/// state to post steps (nektos/act does not), the one the layout and the step's id name.
fn state_dir(env: &Env, place: Place) -> Option<PathBuf> {
    let saved = format!("STATE_{}", layout::SAVED_DIR);
    if let Some(dir) = env.get(&saved).filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    let Ok(layout) = Layout::detect(env, place) else {
        say("nothing to clean up (the main step stopped before it minted)");
        return None;
    };
    let dir = layout.root.join(layout::step_name(env));
    if dir.is_dir() {
        say(&format!(
            "the runner gave this post step no `{saved}`: cleaning up the step's state found at `{}`",
            dir.display()
        ));
        Some(dir)
    } else {
        say(&format!(
            "nothing to clean up (no `{saved}`, and no state at `{}`: the main step stopped before it minted)",
            dir.display()
        ));
        None
    }
}

fn say(message: &str) {
    let _ = workflow::print(&[messages::line(message)]);
}

fn warn(message: &str) {
    let _ = workflow::print(&[workflow::warning(message)]);
}
