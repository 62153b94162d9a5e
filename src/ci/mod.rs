//! Any CI's side: `setup` mints and keeps a job's token where no Actions runner runs the main
//! and post steps (GitLab, Jenkins, Buildkite, CircleCI, Azure Pipelines, a plain shell), and
//! `revoke` ends it. Between them, `token`, `exec` and git's helper work as in Actions.
//!
//! Both begin and end a job's keeper through `keeper::job`, as the action's steps do. Nothing
//! here prints a workflow command or writes a file command: setup prints what the shell needs,
//! and only fingerprints of tokens.

pub(crate) mod exports;
pub(crate) mod flags;
pub(crate) mod revoke;
pub(crate) mod setup;

use std::path::Path;

use crate::env::Env;
use crate::keeper::store::locate;

/// Once no store the job's folder `job` lists is left: the list goes, then the folder, and this
/// user's folder of jobs, each only when empty (the action's own stores and the job's other
/// files may live there).
fn tidy(job: &Path, env: &Env) {
    let Ok(stores) = locate::listed_stores(job) else {
        return;
    };
    if stores.iter().any(|store| store.exists()) {
        return;
    }
    let _ = std::fs::remove_file(job.join(locate::STORES));
    let _ = std::fs::remove_dir(job);
    let user = locate::user_root(env);
    if job.parent() == Some(user.as_path()) {
        let _ = std::fs::remove_dir(user);
    }
}
