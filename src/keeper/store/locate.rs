//! Where a job's token stores are, and finding one from a later step.
//!
//! A job keeps them in one folder, `token-keeper/`: a folder per step, beside `bin/` with the
//! copy of our binary that later steps run. The job's folder is in `RUNNER_TEMP`, or, on
//! runners older than v2.331, in `RUNNER_TEMP/_github_home`, the action container's `HOME`.
//! In other CIs, `setup` keeps a job's stores in `token-keeper-<user>/<job>/` in the CI's
//! temporary folder (`ci_root`), `<user>` this user's id and `<job>` the CI's own name for the
//! job, and lists there every store it made for the job, wherever it is (`stores`), so that
//! `revoke` finds them all.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};

use super::State;
use crate::env::Env;
use crate::keeper::{Caller, Keeper, Unfound};
use crate::messages::quoted_list;
use crate::private::{self, FileError, Owner, at, open_private};

/// The job's folder of stores.
pub(crate) const JOB_DIR: &str = "token-keeper";
/// The variable `setup` exports with its store's folder, where later commands look first.
pub(crate) const STATE_VARIABLE: &str = "TOKEN_KEEPER_STATE";
/// The list, in a job's folder, of every store `setup` made for the job: a path a line.
pub(crate) const STORES: &str = "stores";
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

/// Where `setup` keeps this job's stores, from the process's variables:
/// `RUNNER_TEMP/token-keeper` in an Actions job's steps, as the action does; elsewhere
/// `<job>` in this user's folder (`user_root`), `<job>` the CI's job id (`local` when it names
/// none), so that two jobs on one machine keep apart.
pub(crate) fn ci_root(env: &Env) -> PathBuf {
    if let Some(temp) = env.given("RUNNER_TEMP") {
        return Path::new(temp).join(JOB_DIR);
    }
    let job = CI_JOB_IDS
        .iter()
        .find_map(|name| env.given(name))
        .unwrap_or("local");
    user_root(env).join(file_name_of(job))
}

/// This user's folder of every job's stores outside Actions: `token-keeper-<user>` in the CI's
/// temporary folder, per user, as others may share that folder (`/tmp`).
pub(crate) fn user_root(env: &Env) -> PathBuf {
    let temp = CI_TEMPS
        .iter()
        .find_map(|name| env.given(name))
        .map_or_else(std::env::temp_dir, PathBuf::from);
    temp.join(format!(
        "{JOB_DIR}-{}",
        file_name_of(&private::user_tag(env))
    ))
}

/// `name` as a file name: what could be a separator or a dot folder, written out.
fn file_name_of(name: &str) -> String {
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.starts_with('.') {
        format!("_{name}")
    } else {
        name
    }
}

/// Add `store` to the job folder `job`'s list, before anything is minted into it.
pub(crate) fn list_store(job: &Path, store: &Path, owner: Owner) -> Result<(), FileError> {
    let list = job.join(STORES);
    let mut line = store.to_string_lossy().into_owned();
    if line.contains(['\n', '\r']) {
        return Err(at("list", store)(io::Error::other(
            "its path holds a line break: name another folder",
        )));
    }
    line.push('\n');
    let mut file = open_private(&list, OpenOptions::new().append(true), owner)?;
    file.write_all(line.as_bytes())
        .map_err(at("append to", &list))?;
    file.sync_all().map_err(at("sync", &list))
}

/// The stores the job folder `job` lists, in the order setup made them; nothing when it lists
/// none. The list must be a plain file of this user's: never read through a link.
pub(crate) fn listed_stores(job: &Path) -> Result<Vec<PathBuf>, FileError> {
    let list = job.join(STORES);
    let meta = match fs::symlink_metadata(&list) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(at("read", &list)(e)),
    };
    if !meta.is_file() {
        return Err(at("read", &list)(io::Error::other(
            "it is a link or a folder, not the list setup writes",
        )));
    }
    private::check_mine(&list, &meta)?;
    let text = fs::read_to_string(&list).map_err(at("read", &list))?;
    let mut stores: Vec<PathBuf> = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let store = PathBuf::from(line);
        if !stores.contains(&store) {
            stores.push(store);
        }
    }
    Ok(stores)
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

/// No store of the job's is where they are looked for: the fact, for the caller to advise on.
#[derive(Debug)]
pub(crate) struct NoStore {
    owner: Option<String>,
    roots: Vec<String>,
}

impl std::fmt::Display for NoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let owner = self
            .owner
            .as_ref()
            .map(|o| format!(" for `{o}`"))
            .unwrap_or_default();
        write!(
            f,
            "no token-keeper state{owner} in {}",
            quoted_list(&self.roots)
        )
    }
}

impl std::error::Error for NoStore {}

/// The store `explicit` names, or the one in `roots` (job folders, each holding a folder per
/// step); `owner` picks among several. Its state comes along, read once.
pub(crate) fn find(
    roots: &[PathBuf],
    explicit: Option<&Path>,
    owner: Option<&str>,
    caller: &Caller,
) -> Result<(Keeper, State), Unfound> {
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
        0 => Err(NoStore {
            owner: owner.map(crate::messages::short),
            roots: roots.iter().map(|r| r.display().to_string()).collect(),
        }
        .into()),
        _ => {
            let owners: Vec<&str> = found
                .iter()
                .map(|(_, s)| s.config.account.as_str())
                .collect();
            Err(anyhow!(
                "this job has several token-keeper states ({}): pick one with `--owner`",
                quoted_list(&owners)
            )
            .into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_folder_lists_its_stores_once_each_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let me = Owner::me();
        assert!(listed_stores(tmp.path()).unwrap().is_empty());
        for store in ["/a/setup-1", "/b/elsewhere", "/a/setup-1"] {
            list_store(tmp.path(), Path::new(store), me).unwrap();
        }
        assert_eq!(
            listed_stores(tmp.path()).unwrap(),
            [PathBuf::from("/a/setup-1"), PathBuf::from("/b/elsewhere")]
        );
        assert!(list_store(tmp.path(), Path::new("/a\nb"), me).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn a_list_planted_as_a_link_is_not_read() {
        let tmp = tempfile::tempdir().unwrap();
        let elsewhere = tmp.path().join("elsewhere");
        fs::write(&elsewhere, "/home/someone/project\n").unwrap();
        let job = tmp.path().join("job");
        fs::create_dir(&job).unwrap();
        std::os::unix::fs::symlink(&elsewhere, job.join(STORES)).unwrap();
        assert!(listed_stores(&job).is_err());
    }

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
        let vars = |pairs: &[(&str, &str)]| Env::from_pairs(pairs.iter().copied());
        assert_eq!(
            ci_root(&vars(&[("RUNNER_TEMP", "/w/_temp"), ("CI_JOB_ID", "7")])),
            PathBuf::from("/w/_temp/token-keeper")
        );
        let user = format!("token-keeper-{}", private::user_tag(&Env::default()));
        let mine = std::env::temp_dir().join(&user);
        assert_eq!(ci_root(&vars(&[("CI_JOB_ID", "4242")])), mine.join("4242"));
        assert_eq!(
            ci_root(&vars(&[
                ("WORKSPACE_TMP", "/j/ws@tmp"),
                ("BUILD_TAG", "jenkins-a/b-3")
            ])),
            Path::new("/j/ws@tmp").join(&user).join("jenkins-a_b-3")
        );
        assert_eq!(ci_root(&vars(&[])), mine.join("local"));
        assert_eq!(ci_root(&vars(&[("CI_JOB_ID", "..")])), mine.join("_.."));
    }
}
