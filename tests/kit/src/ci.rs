//! A job of another CI (GitLab, Jenkins, a plain shell): shells that run scripts with only what
//! such a CI gives them, no `GITHUB_*` and no `RUNNER_*`, with the binary on `PATH` and a home
//! and a temporary folder of their own.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output};

use tempfile::TempDir;

use crate::fake_github::{APP_ID, APP_KEY};
use crate::runner::binary;
use crate::scene::Scene;

/// Nothing of the job's stores is left in its temporary folder.
#[track_caller]
pub fn assert_nothing_left(job: &CiJob) {
    let left: Vec<_> = fs::read_dir(&job.tmp).unwrap().flatten().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

pub struct CiJob {
    dir: TempDir,
    pub home: PathBuf,
    /// The job's temporary folder (`TMPDIR`), where setup keeps its stores.
    pub tmp: PathBuf,
    /// What the CI gives every shell of the job.
    pub vars: BTreeMap<String, String>,
}

impl CiJob {
    /// A job whose CI gives its shells `vars` (`CI_JOB_ID`, say).
    pub fn new(vars: &[(&str, &str)]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("tk-ci")
            .tempdir()
            .expect("job dir");
        let (home, tmp) = (dir.path().join("home"), dir.path().join("tmp"));
        for folder in [&home, &tmp, &dir.path().join("work")] {
            fs::create_dir_all(folder).expect("job folders");
        }
        fs::write(dir.path().join("app-key.pem"), APP_KEY).expect("key file");
        Self {
            dir,
            home,
            tmp,
            vars: vars
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    /// The App's key, in a file as a CI's secret file would be.
    pub fn key_file(&self) -> String {
        self.dir.path().join("app-key.pem").display().to_string()
    }

    /// A path in the job's own folder, for a file a script leaves there; nothing is created.
    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// `token-keeper setup` for the App on `scene`'s fake, with `extra` flags.
    pub fn setup(&self, scene: &Scene, extra: &str) -> String {
        Self::setup_with(
            scene,
            &format!("--private-key-file '{}' {extra}", self.key_file()),
        )
    }

    /// Script lines that clone the App's repository, wait past a 3-second token's expiry, push,
    /// and take a token through `token` and `exec`: each after the first token expired.
    pub fn late_push(scene: &Scene) -> String {
        format!(
            r#"git clone -q "{}" app
cd app
sleep 4
echo late > late.txt
git add late.txt
git commit -qm late
git push -q origin HEAD:main
test -n "$(token-keeper token)"
token-keeper exec -- sh -c 'test -n "$GH_TOKEN"'"#,
            scene.repo_url("Octo-Org", "app")
        )
    }

    /// `token-keeper setup` for the App on `scene`'s fake with no key: `extra` says what signs.
    pub fn setup_with(scene: &Scene, extra: &str) -> String {
        format!(
            "token-keeper setup --app-id {APP_ID} --api-url '{}' --git-server-url '{}' {extra}",
            scene.github.url(),
            scene.git_url
        )
    }

    /// The stores setup made in the job's temporary folder, by their paths.
    pub fn stores(&self) -> Vec<PathBuf> {
        let mut stores = Vec::new();
        let folders = |path: &std::path::Path| -> Vec<PathBuf> {
            fs::read_dir(path)
                .map(|entries| entries.flatten().map(|e| e.path()).collect())
                .unwrap_or_default()
        };
        for user in folders(&self.tmp) {
            for job in folders(&user) {
                stores.extend(folders(&job).into_iter().filter(|p| p.is_dir()));
            }
        }
        stores.sort();
        stores
    }

    /// The files of git entries that setup keeps in the job's home, for the global config.
    pub fn included_files(&self) -> Vec<PathBuf> {
        let folder = self.home.join(".config/token-keeper");
        let Ok(entries) = fs::read_dir(folder) else {
            return Vec::new();
        };
        entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "gitconfig"))
            .collect()
    }

    /// Run `script` with bash in a new shell of this job, in its work folder, with `extra`.
    pub fn shell(&self, script: &str, extra: &[(&str, &str)]) -> Output {
        self.command("bash", extra)
            .arg("-c")
            .arg(format!("set -eu\n{script}"))
            .output()
            .expect("bash")
    }

    /// `program` as a shell of this job would start it: in its work folder, with what the CI
    /// gives and `extra`.
    pub fn command(&self, program: impl AsRef<OsStr>, extra: &[(&str, &str)]) -> Command {
        let bin = binary().parent().expect("the binary's folder").to_owned();
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut command = Command::new(program);
        command
            .current_dir(self.dir.path().join("work"))
            .env_clear()
            .env("PATH", path)
            .env("HOME", &self.home)
            .env("TMPDIR", &self.tmp)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_AUTHOR_NAME", "CI")
            .env("GIT_AUTHOR_EMAIL", "ci@example.invalid")
            .env("GIT_COMMITTER_NAME", "CI")
            .env("GIT_COMMITTER_EMAIL", "ci@example.invalid")
            .env("TOKEN_KEEPER_RETRY_BASE", "20ms")
            .envs(&self.vars)
            .envs(extra.iter().copied());
        command
    }
}
