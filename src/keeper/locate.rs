//! Finding a job's token stores from a later step: next to our own binary, or under `RUNNER_TEMP`.

use std::path::{Path, PathBuf};

use super::state::State;
use super::{Keeper, KeeperError};

/// The store of the job, or the one `explicit` names; `owner` picks among several. Its state
/// comes along, read once.
pub fn find(explicit: Option<&Path>, owner: Option<&str>) -> Result<(Keeper, State), KeeperError> {
    if let Some(dir) = explicit {
        let keeper = Keeper::open(dir)?;
        let state = keeper.state()?;
        return Ok((keeper, state));
    }
    let roots = roots();
    let mut found: Vec<(Keeper, State)> = Vec::new();
    for root in &roots {
        let Ok(entries) = std::fs::read_dir(root) else {
            continue;
        };
        for entry in entries.flatten() {
            if let Ok(keeper) = Keeper::open(&entry.path())
                && let Ok(state) = keeper.state()
            {
                found.push((keeper, state));
            }
        }
    }
    if let Some(owner) = owner {
        found.retain(|(_, state)| state.config.account.eq_ignore_ascii_case(owner));
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(KeeperError::NotFound(format!(
            "no token-keeper state{} in {}: run the token-keeper step (with `git-credentials: true`) earlier in this job",
            owner.map(|o| format!(" for `{o}`")).unwrap_or_default(),
            roots
                .iter()
                .map(|r| format!("`{}`", r.display()))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
        _ => {
            let owners: Vec<String> = found
                .iter()
                .map(|(_, s)| format!("`{}`", s.config.account))
                .collect();
            Err(KeeperError::NotFound(format!(
                "this job has several token-keeper states ({}): pick one with `--owner`",
                owners.join(", ")
            )))
        }
    }
}

/// Where a job's stores live: beside `bin/` that holds us, then under `RUNNER_TEMP`.
fn roots() -> Vec<PathBuf> {
    let mut roots = Vec::new();
    if let Ok(exe) = std::env::current_exe()
        && let Some(bin) = exe.parent().filter(|p| p.ends_with("bin"))
        && let Some(root) = bin.parent().filter(|p| p.ends_with("token-keeper"))
    {
        roots.push(root.to_owned());
    }
    if let Some(temp) = std::env::var_os("RUNNER_TEMP").map(PathBuf::from) {
        for root in [
            temp.join("token-keeper"),
            temp.join("_github_home").join("token-keeper"),
        ] {
            if !roots.contains(&root) {
                roots.push(root);
            }
        }
    }
    roots
}
