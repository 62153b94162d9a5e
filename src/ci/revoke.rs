//! `token-keeper revoke`: end what `setup` started. Every live token of the store is revoked,
//! the git configuration setup wrote is taken out, and the store goes.
//!
//! The store is the one `--state` names, or else every store of this job: the one
//! `TOKEN_KEEPER_STATE` names and every one the job's folder lists, wherever setup made it, so
//! that a shell that has nothing but the CI's own variables (GitLab's `after_script`) finds them.
//! Only folders that bear a store's mark are ended, all at once, within one bound. A token that
//! could not be revoked keeps its store's ledger, and revoke fails, so that running it again
//! finishes the work; run where nothing is left, it says so and succeeds.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::tidy;
use crate::env::Env;
use crate::git;
use crate::github::client::HttpEnv;
use crate::keeper::Unended;
use crate::keeper::job::{self, End};
use crate::keeper::store::StateDir;
use crate::keeper::store::locate;
use crate::messages;
use crate::report::Reporter;

/// Every store ends within about this: the lock wait and the revocations of all of them.
const REVOKE_BOUND: Duration = Duration::from_secs(13);
/// How long a re-mint in progress may hold up a store's end; it revokes what it makes itself.
const LOCK_WAIT: Duration = Duration::from_secs(3);

pub(crate) fn run(explicit: Option<&Path>, env: &Env, reporter: &dyn Reporter) -> Result<ExitCode> {
    let deadline = Instant::now() + REVOKE_BOUND;
    let job = locate::ci_root(env);
    let stores = match explicit {
        Some(dir) => vec![dir.to_owned()],
        None => this_jobs_stores(&job, env)?,
    };
    // A store that fails must not keep the next one's tokens alive, nor wait for it.
    let outcomes: Vec<Result<bool>> = std::thread::scope(|scope| {
        let ends: Vec<_> = stores
            .iter()
            .map(|store| scope.spawn(move || end(store, env, deadline, reporter)))
            .collect();
        ends.into_iter()
            .map(|end| {
                end.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("the revocation stopped")))
            })
            .collect()
    });
    let (mut ended, mut failed) = (0, Vec::new());
    // What an earlier end could not take out of the global git config, or a killed job left.
    match git::global::remove_stale(env) {
        Ok(removed) => ended += removed,
        Err(err) => {
            reporter.warn(&format!("{err:#}"));
            failed.push("the global git config".to_owned());
        }
    }
    for (store, outcome) in stores.iter().zip(outcomes) {
        match outcome {
            Ok(true) => ended += 1,
            Ok(false) => {}
            Err(err) => {
                let store = messages::short(&store.to_string_lossy());
                reporter.warn(&format!("cannot end the store `{store}`: {err:#}"));
                failed.push(store);
            }
        }
    }
    tidy(&job, env);
    if !failed.is_empty() {
        bail!(
            "could not end {}: see why above",
            messages::quoted_list(&failed)
        );
    }
    if ended == 0 {
        let looked = explicit.map_or_else(|| job.clone(), Path::to_owned);
        reporter.say(&format!(
            "nothing to revoke: no token-keeper state in `{}`",
            messages::short(&looked.to_string_lossy())
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// The stores of this job: the one `TOKEN_KEEPER_STATE` names, then those its folder lists.
fn this_jobs_stores(job: &Path, env: &Env) -> Result<Vec<PathBuf>> {
    let exported = env.given(locate::STATE_VARIABLE).map(PathBuf::from);
    let mut stores: Vec<PathBuf> = exported.into_iter().collect();
    for store in locate::listed_stores(job)? {
        if !stores.contains(&store) {
            stores.push(store);
        }
    }
    Ok(stores)
}

/// End the store at `path` by `deadline`: whether there was one. Its entry in the global git
/// config goes too, the store there or not.
fn end(path: &Path, env: &Env, deadline: Instant, reporter: &dyn Reporter) -> Result<bool> {
    let http_env = HttpEnv::from_env(env)?;
    let retired = match StateDir::open_store(path)? {
        Some(dir) => {
            let left = deadline.saturating_duration_since(Instant::now());
            let end = End {
                lock_wait: LOCK_WAIT.min(left),
                deadline,
                unended: Unended::Kept,
                http_env: &http_env,
                skip: None,
                api_otherwise: None,
            };
            Some(job::end(dir, &end, reporter))
        }
        None => None,
    };
    // After the revocation, so that a git that fails cannot keep the tokens live; also when
    // some are left, as the store serves nothing any more.
    let unset = git::global::remove(path, env);
    if let (Some(Err(_)), Err(err)) = (&retired, &unset) {
        reporter.warn(&format!("{err:#}"));
    }
    let ended = retired.is_some();
    if let Some(retired) = retired {
        retired?;
    }
    Ok(unset? || ended)
}
