//! Finding a job's token store from a later step, among the job folders the caller names.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use super::state::State;
use super::{Caller, Keeper};
use crate::messages::quoted_list;

/// The store `explicit` names, or the one in `roots` (job folders, each holding a folder per
/// step); `owner` picks among several. Its state comes along, read once.
pub(crate) fn find(
    roots: &[PathBuf],
    explicit: Option<&Path>,
    owner: Option<&str>,
    caller: &Caller,
) -> Result<(Keeper, State)> {
    if let Some(dir) = explicit {
        let keeper = Keeper::open(dir, caller.clone())?;
        let state = keeper.state()?;
        return Ok((keeper, state));
    }
    let mut found: Vec<(Keeper, State)> = Vec::new();
    for root in roots {
        let Ok(entries) = std::fs::read_dir(root) else {
            continue;
        };
        for entry in entries.flatten() {
            if let Ok(keeper) = Keeper::open(&entry.path(), caller.clone())
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
        0 => bail!(
            "no token-keeper state{} in {}: run the token-keeper step (with `git-credentials: true`) earlier in this job",
            owner.map(|o| format!(" for `{o}`")).unwrap_or_default(),
            quoted_list(
                &roots
                    .iter()
                    .map(|r| r.display().to_string())
                    .collect::<Vec<_>>()
            )
        ),
        _ => {
            let owners: Vec<&str> = found
                .iter()
                .map(|(_, s)| s.config.account.as_str())
                .collect();
            bail!(
                "this job has several token-keeper states ({}): pick one with `--owner`",
                quoted_list(&owners)
            )
        }
    }
}
