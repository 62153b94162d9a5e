//! A job of another CI (GitLab, Jenkins, a plain shell): shells that run scripts with only what
//! such a CI gives them, no `GITHUB_*` and no `RUNNER_*`, with the binary on `PATH` and a home
//! and a temporary folder of their own.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output};

use tempfile::TempDir;

use super::fake_github::APP_KEY;
use super::runner::binary;

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

    /// Run `script` with bash in a new shell of this job, in its work folder, with `extra`.
    pub fn shell(&self, script: &str, extra: &[(&str, &str)]) -> Output {
        let bin = binary().parent().expect("the binary's folder").to_owned();
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Command::new("bash")
            .arg("-c")
            .arg(format!("set -eu\n{script}"))
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
            .envs(extra.iter().copied())
            .output()
            .expect("bash")
    }
}
