//! Where a job's token stores are, and finding one from a later step.
//!
//! A job keeps them in one folder, `token-keeper/`: a folder per step, beside `bin/` with the
//! copy of our binary that later steps run. The job's folder is in `RUNNER_TEMP`, or, on
//! runners older than v2.331, in `RUNNER_TEMP/_github_home`, the action container's `HOME`.
//! In other CIs, `setup` keeps a job's stores in `token-keeper-<job>/` in the CI's temporary
//! folder (`ci_root`), `<job>` the CI's own name for the job.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use super::state::State;
use super::{Caller, Keeper};
use crate::messages::quoted_list;

/// The job's folder of stores.
pub(crate) const JOB_DIR: &str = "token-keeper";
/// The variable `setup` exports with its store's folder, where later commands look first.
pub(crate) const STATE_VARIABLE: &str = "TOKEN_KEEPER_STATE";
/// The folder of the job's copy of our binary, in the job's folder.
pub(crate) const BIN: &str = "bin";
/// Old runners' action containers keep their `HOME` here, in `RUNNER_TEMP`.
pub(crate) const OLD_RUNNER_HOME: &str = "_github_home";

/// The platforms whose programs are named apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Platform {
    Unix,
    Windows,
}

impl Platform {
    /// The one this binary runs on.
    pub(crate) const HOST: Self = if cfg!(windows) {
        Self::Windows
    } else {
        Self::Unix
    };

    /// The file name of the job's copy of our binary: Windows finds a program by its `.exe`.
    pub(crate) fn binary(self) -> &'static str {
        match self {
            Self::Unix => "token-keeper",
            Self::Windows => "token-keeper.exe",
        }
    }
}

/// The variables other CIs name a job by, each unique among the jobs a machine runs.
const CI_JOB_IDS: [&str; 6] = [
    "CI_JOB_ID",              // GitLab
    "BUILDKITE_JOB_ID",       // Buildkite
    "CIRCLE_WORKFLOW_JOB_ID", // CircleCI
    "SYSTEM_JOBID",           // Azure Pipelines
    "BUILD_TAG",              // Jenkins: `jenkins-<job>-<build>`
    "BUILD_ID",               // Google Cloud Build
];

/// The temporary folders Azure Pipelines and Jenkins give a job; elsewhere, the system's.
const CI_TEMPS: [&str; 2] = ["AGENT_TEMPDIRECTORY", "WORKSPACE_TMP"];

/// Where `setup` keeps this job's stores outside Actions, from the process's variables (`get`):
/// `RUNNER_TEMP/token-keeper` in an Actions job's steps, as the action does; elsewhere
/// `token-keeper-<job>` in the CI's temporary folder, `<job>` the CI's job id (`local` when it
/// names none), so that two jobs on one machine keep apart.
pub(crate) fn ci_root(get: impl Fn(&str) -> Option<String>) -> PathBuf {
    let given = |name: &str| get(name).filter(|v| !v.is_empty());
    if let Some(temp) = given("RUNNER_TEMP") {
        return Path::new(&temp).join(JOB_DIR);
    }
    let temp = CI_TEMPS
        .iter()
        .find_map(|name| given(name))
        .map_or_else(std::env::temp_dir, PathBuf::from);
    let job = CI_JOB_IDS
        .iter()
        .find_map(|name| given(name))
        .unwrap_or_else(|| "local".to_owned());
    let job: String = job
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    temp.join(format!("{JOB_DIR}-{job}"))
}

/// Where a later step finds the job's folders: beside the `bin/` that holds the running binary
/// (the copy the main step installed), then under `RUNNER_TEMP`, as new and as older runners
/// keep it.
pub(crate) fn job_roots(exe: Option<&Path>, runner_temp: Option<&Path>) -> Vec<PathBuf> {
    let mut roots = Vec::new();
    if let Some(root) = exe
        .and_then(Path::parent)
        .filter(|bin| bin.ends_with(BIN))
        .and_then(Path::parent)
        .filter(|root| root.ends_with(JOB_DIR))
    {
        roots.push(root.to_owned());
    }
    if let Some(temp) = runner_temp {
        for root in [temp.join(JOB_DIR), temp.join(OLD_RUNNER_HOME).join(JOB_DIR)] {
            if !roots.contains(&root) {
                roots.push(root);
            }
        }
    }
    roots
}

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
            owner
                .map(|o| format!(" for `{}`", crate::messages::short(o)))
                .unwrap_or_default(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_jobs_copy_of_the_binary_is_an_exe_on_windows() {
        assert_eq!(Platform::Unix.binary(), "token-keeper");
        assert_eq!(Platform::Windows.binary(), "token-keeper.exe");
    }

    #[test]
    fn later_steps_look_beside_the_installed_binary_then_under_runner_temp() {
        let temp = Path::new("/w/_temp");
        let installed = Path::new("/w/_temp/token-keeper/bin/token-keeper");
        assert_eq!(
            job_roots(Some(installed), Some(temp)),
            [
                PathBuf::from("/w/_temp/token-keeper"),
                PathBuf::from("/w/_temp/_github_home/token-keeper"),
            ]
        );
        let elsewhere = Path::new("/usr/local/bin/token-keeper");
        assert_eq!(job_roots(Some(elsewhere), None), Vec::<PathBuf>::new());
        let old = Path::new("/h/token-keeper/bin/token-keeper");
        assert_eq!(
            job_roots(Some(old), None),
            [PathBuf::from("/h/token-keeper")]
        );
    }

    #[test]
    fn other_cis_keep_a_jobs_stores_apart_in_their_temporary_folder() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert_eq!(
            ci_root(vars(&[("RUNNER_TEMP", "/w/_temp"), ("CI_JOB_ID", "7")])),
            PathBuf::from("/w/_temp/token-keeper")
        );
        assert_eq!(
            ci_root(vars(&[("CI_JOB_ID", "4242")])),
            std::env::temp_dir().join("token-keeper-4242")
        );
        assert_eq!(
            ci_root(vars(&[
                ("WORKSPACE_TMP", "/j/ws@tmp"),
                ("BUILD_TAG", "jenkins-a/b-3")
            ])),
            PathBuf::from("/j/ws@tmp/token-keeper-jenkins-a_b-3")
        );
        assert_eq!(
            ci_root(vars(&[])),
            std::env::temp_dir().join("token-keeper-local")
        );
    }
}
