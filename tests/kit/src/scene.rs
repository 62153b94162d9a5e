//! Whole jobs to test in: the fake GitHub, a git server that accepts only its live tokens, and
//! an emulated job; for keyless jobs, the runner's identity service and an exchange service too.

use std::fs;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use crate::fake_github::{FakeGitHub, app_inputs};
use crate::git_server::GitServer;
use crate::runner::{Job, LaterStep, StepRun};
use crate::sts::{Issuer, Sts};
use crate::walk;

/// A job whose API is the fake and whose git server accepts only the fake's live tokens, with
/// the repositories `Octo-Org/app`, `Octo-Org/lib` and `Other-Org/tools`.
pub struct Scene {
    pub github: FakeGitHub,
    pub git: GitServer,
    pub git_url: String,
    pub job: Job,
}

impl Scene {
    /// A scene whose tokens live `token_lifetime`.
    pub async fn start(token_lifetime: Duration) -> Self {
        let github = FakeGitHub::start().await;
        github.world().token_lifetime = token_lifetime;
        let git = GitServer::start(github.handle());
        for (owner, repo) in [
            ("Octo-Org", "app"),
            ("Octo-Org", "lib"),
            ("Other-Org", "tools"),
        ] {
            git.create_repo(owner, repo);
        }
        let job = Job::new(&github.url());
        let git_url = git.url();
        Self {
            github,
            git,
            git_url,
            job,
        }
    }

    /// The App's inputs, its tokens meant for this scene's git server, and `extra`.
    pub fn inputs<'a>(&'a self, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut inputs = app_inputs(&[("git-server-url", self.git_url.as_str())]);
        inputs.extend_from_slice(extra);
        inputs
    }

    pub fn repo_url(&self, owner: &str, repo: &str) -> String {
        format!("{}/{owner}/{repo}.git", self.git_url)
    }

    /// In `step`: clone `Octo-Org/app`, wait `wait` (past the first token's expiry), then commit
    /// and push. Every git command but the push must succeed; the push's output comes back.
    pub fn push_late(&self, step: &LaterStep, wait: Duration) -> Output {
        step.assert_git(&["clone", "--quiet", &self.repo_url("Octo-Org", "app"), "app"]);
        std::thread::sleep(wait);
        let repo = step.dir.path().join("app");
        fs::write(
            repo.join("late.txt"),
            "pushed after the first token expired\n",
        )
        .unwrap();
        crate::assert_success("git", &step.git_in(&repo, &["add", "late.txt"]));
        crate::assert_success(
            "git",
            &step.git_in(&repo, &["commit", "--quiet", "-m", "late"]),
        );
        step.git_in(&repo, &["push", "--quiet", "origin", "main"])
    }
}

/// A job with `id-token: write`, an exchange service, and a git server for the fake's tokens,
/// with the repositories `Octo-Org/app` and `Other-Org/tools`.
pub struct KeylessScene {
    pub github: FakeGitHub,
    pub git_url: String,
    pub issuer: Issuer,
    pub sts: Sts,
    pub job: Job,
    _git: GitServer,
}

impl KeylessScene {
    pub async fn start() -> Self {
        let github = FakeGitHub::start().await;
        let git = GitServer::start(github.handle());
        for (owner, repo) in [("Octo-Org", "app"), ("Other-Org", "tools")] {
            git.create_repo(owner, repo);
        }
        let issuer = Issuer::start().await;
        let sts = Sts::start(&github).await;
        let mut job = Job::new(&github.url());
        job.extra_env.extend(issuer.env());
        Self {
            git_url: git.url(),
            github,
            issuer,
            sts,
            job,
            _git: git,
        }
    }

    /// Keyless inputs for the exchange service at `sts`, and `extra`.
    pub fn inputs<'a>(
        &'a self,
        sts: &'a str,
        extra: &[(&'a str, &'a str)],
    ) -> Vec<(&'a str, &'a str)> {
        let mut inputs = vec![
            ("sts-identity", "release"),
            ("sts-domain", sts),
            ("git-server-url", self.git_url.as_str()),
        ];
        inputs.extend_from_slice(extra);
        inputs
    }

    pub fn repo_url(&self, owner: &str, repo: &str) -> String {
        format!("{}/{owner}/{repo}.git", self.git_url)
    }

    /// A later step, which the runner gives the identity variables too.
    pub fn later(&self, main: &StepRun) -> LaterStep {
        let mut step = LaterStep::after(&self.job, main);
        step.env.extend(self.issuer.env());
        step
    }
}

/// Nothing in the job's state is, or names, a private key.
pub fn assert_no_key_material(dir: &Path) {
    if !dir.exists() {
        return;
    }
    for path in walk(dir) {
        assert!(!path.ends_with("key.pem"), "{}", path.display());
        if path.is_file() && !path.ends_with("bin/token-keeper") {
            let text = String::from_utf8_lossy(&fs::read(&path).unwrap()).into_owned();
            assert!(!text.contains("PRIVATE KEY"), "{}", path.display());
        }
    }
}
