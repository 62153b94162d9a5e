//! The post step: revoke every token the job minted, then delete the step's state.
//!
//! It runs even when the main step failed, and never fails the job: a token that has expired by
//! the ledger is left alone; one that GitHub would not revoke is a warning with its status. All
//! revocations run at once, within one deadline. It never mints.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Result;

use super::inputs;
use crate::env::Env;
use crate::github::client::{HttpEnv, Server};
use crate::keeper::Unended;
use crate::keeper::job::{self, End};
use crate::keeper::settings::Setting;
use crate::keeper::store::StateDir;
use crate::keeper::store::layout::{self, Layout, Place};
use crate::keeper::store::locate::BIN;
use crate::report::Reporter;

/// The whole step ends within about this: the job is waiting. Every revocation runs at once.
const POST_DEADLINE: Duration = Duration::from_secs(10);
/// How long a re-mint in progress may hold up the step; after that it revokes regardless.
const POST_LOCK_WAIT: Duration = Duration::from_secs(3);

pub(crate) fn run(env: &Env, place: Place, reporter: &dyn Reporter) -> Result<()> {
    let deadline = Instant::now() + POST_DEADLINE;
    let Some(dir) = state_dir(env, place, reporter) else {
        return Ok(());
    };
    let warn = |err: &dyn std::fmt::Display| {
        reporter.warn(&format!("cannot clean up the job's tokens: {err}"));
    };
    let dir = match StateDir::open_store(&dir) {
        Ok(Some(dir)) => dir,
        Ok(None) => {
            reporter.say(&format!(
                "nothing to clean up (`{}` is gone)",
                dir.display()
            ));
            return Ok(());
        }
        Err(err) => {
            warn(&err);
            return Ok(());
        }
    };
    let root = dir.path().parent().map(Path::to_owned);
    // The main step refused a bad value; here it can only fall back to revoking.
    let skip = inputs::boolean(env, Setting::SkipTokenRevoke).unwrap_or(false);
    // The main step refused a bad bound: here the defaults serve, as the tokens must go.
    let http_env = HttpEnv::from_env(env).unwrap_or_default();
    let end = End {
        lock_wait: POST_LOCK_WAIT,
        deadline,
        unended: Unended::Dropped,
        http_env: &http_env,
        skip: skip.then_some("`skip-token-revoke` is true"),
        api_otherwise: api_of_inputs(env),
    };
    if let Err(err) = job::end(dir, &end, reporter) {
        warn(&format!("{err:#}"));
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

/// Where the inputs say tokens come from.
fn api_of_inputs(env: &Env) -> Option<Server> {
    Some(Server {
        url: inputs::api_url(env).ok()?,
        ca_certificates: inputs::input(env, Setting::CaCertificates.names().input)
            .map(str::to_owned),
    })
}

/// The step's state directory: the one the main step saved, or, where the runner passes no
/// state to post steps (nektos/act does not), the one the layout and the step's id name.
fn state_dir(env: &Env, place: Place, reporter: &dyn Reporter) -> Option<PathBuf> {
    let saved = format!("STATE_{}", layout::SAVED_DIR);
    if let Some(dir) = env.given(&saved) {
        return Some(PathBuf::from(dir));
    }
    let Ok(layout) = Layout::detect(env, place) else {
        reporter.say("nothing to clean up (the main step stopped before it minted)");
        return None;
    };
    let dir = layout.root.join(layout::step_name(env));
    if dir.is_dir() {
        reporter.say(&format!(
            "the runner gave this post step no `{saved}`: cleaning up the step's state found at `{}`",
            dir.display()
        ));
        Some(dir)
    } else {
        reporter.say(&format!(
            "nothing to clean up (no `{saved}`, and no state at `{}`: the main step stopped before it minted)",
            dir.display()
        ));
        None
    }
}
