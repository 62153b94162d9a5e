//! Where the main step puts the job's state, seen from our container, from the runner host and
//! from a later step's shell; the names inside the job's folder are the store's own
//! (`store::locate`), which later steps look for.
//!
//! Runner v2.331+ mounts the host's `_temp` at `/github/runner_temp` and sets `RUNNER_TEMP` to it.
//! Older runners pass `RUNNER_TEMP` untranslated (a host path that does not exist in the
//! container); there we use `/github/home` (`HOME`), which is the host's `_temp/_github_home`.
//! The host's `_temp` is `dirname($RUNNER_WORKSPACE)/_temp`, as `RUNNER_WORKSPACE` is not
//! translated. Later steps find it all through `$RUNNER_TEMP`, expanded in their own shell.
//! Run in place on the host (the native entry), the step's paths are the host's own.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::env::Env;
use crate::keeper::store::locate::{BIN, JOB_DIR, OLD_RUNNER_HOME, Platform};
use crate::private::Owner;

/// What the main step saves for its post step: the state directory (`STATE_dir` there).
pub(crate) const SAVED_DIR: &str = "dir";

/// Where the action's steps run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// In the action's container, which sees the runner's folders at `/github/...`.
    Container,
    /// On the runner host (or in the job's container), as later steps do.
    Host,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    /// The job's folder as we see it.
    pub(crate) root: PathBuf,
    /// The same folder for a later step's shell, starting with `$RUNNER_TEMP`.
    pub(crate) shell_root: String,
    /// The same folder on the runner host, when it can be told.
    pub(crate) host_root: Option<PathBuf>,
    /// Who later steps run as: the owner of the workspace, seen from a container; on the host,
    /// the user the step runs as.
    pub(crate) owner: Owner,
}

impl Layout {
    pub(crate) fn detect(env: &Env, place: Place) -> Result<Self> {
        let workspace = env
            .get("GITHUB_WORKSPACE")
            .filter(|w| !w.is_empty())
            .context("`GITHUB_WORKSPACE` is not set: token-keeper must run as a step of a GitHub Actions job")?;
        let owner = match place {
            Place::Host => Owner::me(),
            Place::Container => Owner::of(Path::new(workspace))
                .with_context(|| format!("cannot read the owner of the workspace `{workspace}`"))?,
        };
        let host_temp = env
            .get("RUNNER_WORKSPACE")
            .filter(|w| !w.is_empty())
            .and_then(|w| Path::new(w).parent())
            .map(|work| work.join("_temp"));
        let runner_temp = env
            .get("RUNNER_TEMP")
            .map(PathBuf::from)
            .filter(|p| p.is_dir());
        if let Some(temp) = runner_temp {
            let root = temp.join(JOB_DIR);
            let host_root = match place {
                Place::Host => Some(root.clone()),
                Place::Container => host_temp.map(|t| t.join(JOB_DIR)),
            };
            return Ok(Self {
                root,
                shell_root: format!("$RUNNER_TEMP/{JOB_DIR}"),
                host_root,
                owner,
            });
        }
        if place == Place::Host {
            bail!("`RUNNER_TEMP` is not a folder here: cannot store the job's state");
        }
        let Some(home) = env.get("HOME").map(PathBuf::from).filter(|p| p.is_dir()) else {
            bail!(
                "neither `RUNNER_TEMP` nor `HOME` is a folder here: cannot store the job's state"
            );
        };
        Ok(Self {
            root: home.join(JOB_DIR),
            shell_root: format!("$RUNNER_TEMP/{OLD_RUNNER_HOME}/{JOB_DIR}"),
            host_root: host_temp.map(|t| t.join(OLD_RUNNER_HOME).join(JOB_DIR)),
            owner,
        })
    }
}

impl Layout {
    /// Where the job's copy of our binary goes, as we see it.
    pub(crate) fn binary(&self) -> PathBuf {
        self.root.join(BIN).join(Platform::HOST.binary())
    }

    /// The folder of that copy on the runner host, for later steps' `PATH`.
    pub(crate) fn host_bin(&self) -> Option<PathBuf> {
        self.host_root.as_ref().map(|root| root.join(BIN))
    }

    /// The binary and a step's state as a later step's shell on `platform` finds them.
    pub(crate) fn shell_paths(&self, step: &str, platform: Platform) -> (String, String) {
        let root = &self.shell_root;
        let binary = platform.binary();
        (format!("{root}/{BIN}/{binary}"), format!("{root}/{step}"))
    }
}

/// A folder name for this step from `GITHUB_ACTION`, which is unique within a job, kept unique:
/// letters, digits, `-`, `_` and `.` stay as they are (the `step-` prefix keeps `.` and `..`
/// harmless), and every other byte becomes `%XX`, `%` included. Distinct steps never share a
/// folder (`release.token`, a step inside a composite action, and `release_token` once did).
pub(crate) fn step_name(env: &Env) -> String {
    let raw = env.get("GITHUB_ACTION").unwrap_or("");
    if raw.is_empty() {
        return "step".into();
    }
    let mut name = String::from("step-");
    for byte in raw.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.') {
            name.push(char::from(byte));
        } else {
            name.push_str(&format!("%{byte:02X}"));
        }
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn runner_temp_mount_is_preferred() {
        let tmp = tempfile::tempdir().unwrap();
        let temp = tmp.path().join("_temp");
        std::fs::create_dir(&temp).unwrap();
        let layout = Layout::detect(
            &env(&[
                ("GITHUB_WORKSPACE", tmp.path().to_str().unwrap()),
                ("RUNNER_TEMP", temp.to_str().unwrap()),
                ("RUNNER_WORKSPACE", "/home/runner/work/repo"),
            ]),
            Place::Container,
        )
        .unwrap();
        assert_eq!(layout.root, temp.join("token-keeper"));
        assert_eq!(layout.shell_root, "$RUNNER_TEMP/token-keeper");
        assert_eq!(
            layout.host_root.unwrap(),
            Path::new("/home/runner/work/_temp/token-keeper")
        );
    }

    #[test]
    fn old_runners_fall_back_to_github_home() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = Layout::detect(
            &env(&[
                ("GITHUB_WORKSPACE", tmp.path().to_str().unwrap()),
                ("RUNNER_TEMP", "/home/runner/work/_temp/not-mounted-here"),
                ("RUNNER_WORKSPACE", "/home/runner/work/repo"),
                ("HOME", tmp.path().to_str().unwrap()),
            ]),
            Place::Container,
        )
        .unwrap();
        assert_eq!(layout.root, tmp.path().join("token-keeper"));
        assert_eq!(layout.shell_root, "$RUNNER_TEMP/_github_home/token-keeper");
        assert_eq!(
            layout.host_root.unwrap(),
            Path::new("/home/runner/work/_temp/_github_home/token-keeper")
        );
    }

    #[test]
    fn on_the_host_the_paths_are_the_hosts_own() {
        let tmp = tempfile::tempdir().unwrap();
        let vars = [
            ("GITHUB_WORKSPACE", tmp.path().to_str().unwrap()),
            ("RUNNER_TEMP", tmp.path().to_str().unwrap()),
            // act and self-hosted set-ups need not keep `_temp` beside the workspace.
            ("RUNNER_WORKSPACE", "/somewhere/else/repo"),
        ];
        let layout = Layout::detect(&env(&vars), Place::Host).unwrap();
        assert_eq!(layout.root, tmp.path().join("token-keeper"));
        assert_eq!(layout.host_root.as_ref(), Some(&layout.root));
        assert_eq!(layout.shell_root, "$RUNNER_TEMP/token-keeper");
        assert_eq!(layout.owner, Owner::me());

        let without_temp = Layout::detect(&env(&vars[..1]), Place::Host).unwrap_err();
        assert!(
            format!("{without_temp}").contains("`RUNNER_TEMP` is not a folder"),
            "{without_temp}"
        );
    }

    #[test]
    fn step_names_are_path_safe() {
        let name = |id: &str| step_name(&env(&[("GITHUB_ACTION", id)]));
        assert_eq!(name("__org_token-keeper"), "step-__org_token-keeper");
        assert_eq!(name("../x"), "step-..%2Fx");
        assert_eq!(name("a b/é"), "step-a%20b%2F%C3%A9");
        assert_eq!(step_name(&env(&[])), "step");
    }

    #[test]
    fn distinct_steps_get_distinct_folders() {
        let ids = [
            "release.token",
            "release_token",
            "release-token",
            "release%2Etoken",
            "release%2etoken",
            "release token",
            "release/token",
            "__release_token",
        ];
        let names: std::collections::BTreeSet<String> = ids
            .iter()
            .map(|id| step_name(&env(&[("GITHUB_ACTION", id)])))
            .collect();
        assert_eq!(names.len(), ids.len(), "{names:?}");
    }
}
