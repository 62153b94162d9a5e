//! Runs the real binary as the Actions runner runs the action: in its container, or through the
//! native entry's `node` scripts on the host.
//!
//! A job gets the runner's folders (`_work/_temp`, the file commands, the workspace, the home),
//! every input `action.yml` declares (its default, or empty, when the test gives none), and the
//! five file-command files, fresh for each step. The post step gets the same inputs plus the
//! main step's `STATE_*`. Where the tests run as root, `Container` reproduces the container's view
//! in a private mount namespace: the folders bind-mounted at `/github/...` and the environment
//! translated as the runner translates it.

use std::collections::BTreeMap;
#[cfg(target_os = "linux")]
use std::ffi::CString;
use std::fs;
#[cfg(unix)]
use std::os::unix::fs::{PermissionsExt, symlink};
#[cfg(unix)]
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

use crate::engine::Image;
use crate::git_server::git_command;
use crate::measure::{self, Measured};
use crate::native_entry;

/// The binary under test, beside the running test or example: cargo sets
/// `CARGO_BIN_EXE_token-keeper` for the root package's tests alone, not for the kit they use, and
/// puts tests in `target/[<triple>/]<profile>/deps/`, examples in `.../<profile>/examples/`, and
/// the binary in `.../<profile>/`.
pub fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let binary = profile.join(format!("token-keeper{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.exists(),
        "build the binary first: cargo build (--release)"
    );
    binary
}

/// Declared inputs and their defaults, from `action.yml`.
pub fn declared_inputs() -> BTreeMap<String, String> {
    let text = fs::read_to_string(native_entry::root().join("action.yml")).expect("action.yml");
    let action: serde_json::Value = serde_saphyr::from_str(&text).expect("action.yml is YAML");
    action["inputs"]
        .as_object()
        .expect("inputs")
        .iter()
        .map(|(name, spec)| {
            let default = match &spec["default"] {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => String::new(),
                other => other.to_string(),
            };
            (name.clone(), default)
        })
        .collect()
}

/// How the action's container sees the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// The runner's own paths (no container).
    Host,
    /// A private mount namespace with `/github/runner_temp` mounted (runner v2.331+).
    Container,
    /// The same without `/github/runner_temp` (older runners).
    OldContainer,
    /// The native entry (`native/`, packed with the binary under test), run by the real `node`
    /// as the runner runs a node action: the host's paths, the workspace as working directory.
    Native,
    /// The built image under a real engine, run as the runner runs it; `runner_temp` is false
    /// for runners older than v2.331.
    Engine {
        image: &'static Image,
        runner_temp: bool,
    },
}

impl View {
    /// Whether the step sees `/github/runner_temp`, when it runs in a container at all.
    fn has_runner_temp(self) -> bool {
        matches!(
            self,
            View::Container
                | View::Engine {
                    runner_temp: true,
                    ..
                }
        )
    }
}

/// One job's folders.
pub struct Job {
    dir: TempDir,
    pub work: PathBuf,
    pub temp: PathBuf,
    pub workspace: PathBuf,
    pub runner_workspace: PathBuf,
    pub home: PathBuf,
    bin: PathBuf,
    pub api_url: String,
    pub extra_env: BTreeMap<String, String>,
    /// Variables the runner would set that a test takes away.
    pub unset_env: Vec<String>,
    steps: std::cell::Cell<usize>,
    action: std::cell::RefCell<String>,
    /// What steps so far wrote to `GITHUB_ENV`: the runner gives it to every later step.
    exported: std::cell::RefCell<BTreeMap<String, String>>,
    /// The packed native entry, once a step runs it.
    native: std::cell::OnceCell<PathBuf>,
}

/// The `GITHUB_ACTION` of a step without an id.
const DEFAULT_ACTION: &str = "__org_token-keeper";

/// What a step left behind.
#[derive(Debug)]
pub struct StepRun {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub outputs: BTreeMap<String, String>,
    pub env: BTreeMap<String, String>,
    pub state: BTreeMap<String, String>,
    pub path: Vec<String>,
    pub summary: String,
    /// Process start to exit.
    pub elapsed: std::time::Duration,
    /// The step's own peak memory, KiB (see `measure`).
    pub max_rss_kib: Result<u64, &'static str>,
}

impl StepRun {
    pub fn succeeded(&self) -> bool {
        self.status.success()
    }

    /// Everything the step printed, in one string.
    pub fn log(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// The one `::error` line of a step that failed with exit code 1.
    #[track_caller]
    pub fn the_error(&self) -> &str {
        assert_eq!(self.status.code(), Some(1), "{}", self.log());
        let errors: Vec<&str> = self
            .stdout
            .lines()
            .filter(|l| l.starts_with("::error"))
            .collect();
        assert_eq!(errors.len(), 1, "{}", self.log());
        assert!(
            errors[0].starts_with("::error title=token-keeper::"),
            "{}",
            errors[0]
        );
        errors[0]
    }

    #[track_caller]
    pub fn assert_ok(&self) {
        assert!(
            self.succeeded(),
            "step failed: {}",
            crate::shown_text(self.status, &self.stdout, &self.stderr)
        );
    }
}

impl Job {
    pub fn new(api_url: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("tk-job")
            .tempdir()
            .expect("tempdir");
        let work = dir.path().join("work");
        let temp = work.join("_temp");
        let runner_workspace = work.join("repo");
        let workspace = runner_workspace.join("repo");
        let home = temp.join("_github_home");
        let bin = dir.path().join("bin");
        for d in [
            &temp,
            &workspace,
            &home,
            &bin,
            &temp.join("_runner_file_commands"),
            &temp.join("_github_workflow"),
        ] {
            fs::create_dir_all(d).expect("job folders");
        }
        // The runner's folders are open to the runner's user; ours must not depend on that.
        // The image's two names for the binary, for `View::Host`.
        #[cfg(unix)]
        {
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
            for name in ["token-keeper-main", "token-keeper-post"] {
                symlink(binary(), bin.join(name)).expect("symlink");
            }
        }
        Self {
            dir,
            work,
            temp,
            workspace,
            runner_workspace,
            home,
            bin,
            api_url: api_url.to_owned(),
            extra_env: BTreeMap::new(),
            unset_env: Vec::new(),
            steps: std::cell::Cell::new(0),
            action: std::cell::RefCell::new(DEFAULT_ACTION.to_owned()),
            exported: std::cell::RefCell::new(BTreeMap::new()),
            native: std::cell::OnceCell::new(),
        }
    }

    /// The native entry's folder, packed with the binary under test for this job.
    pub fn native_entry(&self) -> &Path {
        self.native.get_or_init(|| {
            let dir = self.dir.path().join("action");
            fs::create_dir(&dir).expect("the action's folder");
            native_entry::pack(&dir)
        })
    }

    /// A path as the runner host sees it, for one the container printed.
    pub fn host_path(&self, path: &str) -> PathBuf {
        let mounts = [
            ("/github/runner_temp", &self.temp),
            ("/github/home", &self.home),
            ("/github/workspace", &self.workspace),
        ];
        for (container, host) in mounts {
            if let Some(rest) = path.strip_prefix(container) {
                return host.join(rest.trim_start_matches('/'));
            }
        }
        PathBuf::from(path)
    }

    /// Hand the job's folders to `uid` (the runner's user when tests run as root).
    pub fn chown_all(&self, uid: u32) {
        let status = Command::new("chown")
            .arg("-R")
            .arg(format!("{uid}:{uid}"))
            .arg(&self.work)
            .status()
            .expect("chown");
        assert!(status.success());
    }

    /// The main step of a step whose `GITHUB_ACTION` is `action` (unique within a job).
    pub fn main_as(&self, action: &str, inputs: &[(&str, &str)], view: View) -> StepRun {
        self.action.replace(action.to_owned());
        let run = self.main(inputs, view);
        self.action.replace(DEFAULT_ACTION.to_owned());
        run
    }

    pub fn post_as(
        &self,
        action: &str,
        inputs: &[(&str, &str)],
        state: &BTreeMap<String, String>,
        view: View,
    ) -> StepRun {
        self.action.replace(action.to_owned());
        let run = self.post(inputs, state, view);
        self.action.replace(DEFAULT_ACTION.to_owned());
        run
    }

    pub fn main(&self, inputs: &[(&str, &str)], view: View) -> StepRun {
        self.step("token-keeper-main", inputs, &BTreeMap::new(), view)
    }

    pub fn post(
        &self,
        inputs: &[(&str, &str)],
        state: &BTreeMap<String, String>,
        view: View,
    ) -> StepRun {
        self.step("token-keeper-post", inputs, state, view)
    }

    fn step(
        &self,
        entry: &str,
        inputs: &[(&str, &str)],
        state: &BTreeMap<String, String>,
        view: View,
    ) -> StepRun {
        self.run_step(inputs, state, |env| match view {
            View::Host => {
                let mut command = Command::new(self.bin.join(entry));
                command.env_clear().envs(&env).current_dir(&self.workspace);
                command
            }
            View::Native => {
                let script = match entry {
                    "token-keeper-main" => "main.js",
                    _ => "post.js",
                };
                let mut command = Command::new("node");
                command
                    .arg(self.native_entry().join(script))
                    .env_clear()
                    .envs(&env)
                    .current_dir(&self.workspace);
                command
            }
            #[cfg(target_os = "linux")]
            View::Container | View::OldContainer => self.in_container(entry, env, view),
            View::Engine { image, .. } => self.in_engine(image, entry, env, view),
            #[cfg(not(target_os = "linux"))]
            View::Container | View::OldContainer => unreachable!("mount namespaces are Linux's"),
        })
    }

    /// A step of this job: `launch` gets the step's whole environment (inputs, `STATE_*`, the
    /// file commands, what earlier steps exported) and says how to start it.
    pub fn run_step(
        &self,
        inputs: &[(&str, &str)],
        state: &BTreeMap<String, String>,
        launch: impl FnOnce(BTreeMap<String, String>) -> Command,
    ) -> StepRun {
        self.steps.set(self.steps.get() + 1);
        let commands = self.temp.join("_runner_file_commands");
        let files: Vec<(&str, PathBuf)> = [
            "GITHUB_OUTPUT",
            "GITHUB_ENV",
            "GITHUB_PATH",
            "GITHUB_STATE",
            "GITHUB_STEP_SUMMARY",
        ]
        .iter()
        .map(|var| {
            (
                *var,
                commands.join(format!("{}_{}", var.to_lowercase(), self.steps.get())),
            )
        })
        .collect();
        for (_, file) in &files {
            fs::write(file, "").expect("file command");
        }
        let mut env = self.base_env();
        env.extend(self.exported.borrow().clone());
        let given: BTreeMap<&str, &str> = inputs.iter().copied().collect();
        for (name, default) in declared_inputs() {
            let value = match given.get(name.as_str()) {
                Some(v) => (*v).to_owned(),
                None => default.replace("${{ github.api_url }}", &self.api_url),
            };
            env.insert(format!("INPUT_{}", name.to_uppercase()), value);
        }
        for (name, value) in &given {
            env.entry(format!("INPUT_{}", name.to_uppercase()))
                .or_insert_with(|| (*value).to_owned());
        }
        for (name, value) in state {
            env.insert(format!("STATE_{name}"), value.clone());
        }
        for (var, file) in &files {
            env.insert((*var).to_owned(), file.to_string_lossy().into_owned());
        }
        env.extend(self.extra_env.clone());
        for var in &self.unset_env {
            env.remove(var);
        }
        let measured = measure::run(&mut launch(env), b"").expect("run the step");
        let read = |var: &str| {
            let file = &files.iter().find(|(v, _)| *v == var).expect("file").1;
            fs::read_to_string(file).unwrap_or_default()
        };
        let run = step_run(measured, &read);
        self.exported.borrow_mut().extend(run.env.clone());
        run
    }

    /// The environment the runner gives every step.
    fn base_env(&self) -> BTreeMap<String, String> {
        let s = |p: &Path| p.to_string_lossy().into_owned();
        BTreeMap::from([
            ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
            ("HOME".into(), s(&self.home)),
            ("CI".into(), "true".into()),
            ("GITHUB_ACTIONS".into(), "true".into()),
            ("GITHUB_ACTION".into(), self.action.borrow().clone()),
            ("GITHUB_REPOSITORY".into(), "Octo-Org/app".into()),
            ("GITHUB_REPOSITORY_OWNER".into(), "Octo-Org".into()),
            ("GITHUB_API_URL".into(), self.api_url.clone()),
            ("GITHUB_SERVER_URL".into(), "https://github.com".into()),
            ("GITHUB_WORKSPACE".into(), s(&self.workspace)),
            ("RUNNER_WORKSPACE".into(), s(&self.runner_workspace)),
            ("RUNNER_TEMP".into(), s(&self.temp)),
            ("TOKEN_KEEPER_RETRY_BASE".into(), "20ms".into()),
        ])
    }

    /// The runner's mounts (host path, container path) for this view, most specific first, and
    /// `env` translated through them as the runner translates values.
    fn container_env(
        &self,
        env: &mut BTreeMap<String, String>,
        view: View,
    ) -> Vec<(String, &'static str)> {
        let s = |p: &Path| p.to_string_lossy().into_owned();
        let mut mounts: Vec<(String, &'static str)> = vec![
            (
                s(&self.temp.join("_runner_file_commands")),
                "/github/file_commands",
            ),
            (s(&self.temp.join("_github_workflow")), "/github/workflow"),
            (s(&self.home), "/github/home"),
            (s(&self.workspace), "/github/workspace"),
        ];
        if view.has_runner_temp() {
            mounts.push((s(&self.temp), "/github/runner_temp"));
        }
        for value in env.values_mut() {
            for (host, container) in &mounts {
                if value == host {
                    *value = (*container).to_owned();
                } else if let Some(rest) = value.strip_prefix(&format!("{host}/")) {
                    *value = format!("{container}/{rest}");
                }
            }
        }
        mounts
    }

    /// Run `entry` as `docker run` would, in a mount namespace: `/github/...` mounts and
    /// translated paths.
    #[cfg(target_os = "linux")]
    fn in_container(&self, entry: &str, mut env: BTreeMap<String, String>, view: View) -> Command {
        let mounts = self.container_env(&mut env, view);
        let mut namespace = Namespace::default();
        namespace.tmpfs("/github");
        for (host, container) in &mounts {
            namespace.bind(host, container);
        }
        if view == View::OldContainer {
            // RUNNER_TEMP stays a host path that the container does not have.
            namespace.tmpfs(&self.work.to_string_lossy());
        }
        fs::create_dir_all("/github").expect("/github mount point");
        let mut command = Command::new(self.bin.join(entry));
        command.env_clear().envs(&env);
        namespace.enter_in(&mut command, "/github/workspace");
        command
    }

    /// The built image, as actions/runner's `DockerRun` starts it: `--rm`, the workspace as the
    /// working directory, values passed as `-e NAME` (never in argv, but for `HOME`), the
    /// runner's mounts, and the step's entrypoint. Two differences, both for a loopback test:
    /// host networking, so the container reaches the fake GitHub, and no docker socket mount,
    /// which we never use.
    fn in_engine(
        &self,
        image: &Image,
        entry: &str,
        mut env: BTreeMap<String, String>,
        view: View,
    ) -> Command {
        // The host's PATH and HOME belong to the engine, not to the container: rootless podman
        // finds its storage through HOME. The container's HOME, a path, goes in argv instead.
        env.remove("PATH");
        let mounts = self.container_env(&mut env, view);
        let home = env.remove("HOME");
        let mut command = image.command();
        command.args([
            "run",
            "--rm",
            "--workdir",
            "/github/workspace",
            "--network",
            "host",
        ]);
        if let Some(home) = home {
            command.arg("-e").arg(format!("HOME={home}"));
        }
        for name in env.keys() {
            command.arg("-e").arg(name);
        }
        for (host, container) in &mounts {
            command.arg("-v").arg(format!("{host}:{container}"));
        }
        command
            .arg("--entrypoint")
            .arg(format!("/usr/local/bin/{entry}"))
            .arg(&image.name);
        // `-e NAME` takes the value from the engine's own environment.
        command.envs(&env);
        command
    }
}

/// Mounts made in the child between fork and exec: no shell, which would drop
/// the hyphenated `INPUT_*` names from the environment.
#[cfg(target_os = "linux")]
#[derive(Default)]
pub struct Namespace {
    steps: Vec<(CString, Option<CString>)>,
}

#[cfg(target_os = "linux")]
impl Namespace {
    pub fn tmpfs(&mut self, at: &str) {
        self.steps.push((cstr(at), None));
    }

    /// Mount `host` (a folder or a file) over `at`.
    pub fn bind(&mut self, host: &str, at: &str) {
        self.steps.push((cstr(at), Some(cstr(host))));
    }

    pub fn enter_in(self, command: &mut Command, workdir: &str) {
        let workdir = cstr(workdir);
        let tmpfs = cstr("tmpfs");
        let check = |rc: libc::c_int| {
            if rc == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        };
        // SAFETY: only async-signal-safe system calls on memory prepared before the fork.
        unsafe {
            command.pre_exec(move || {
                check(libc::unshare(libc::CLONE_NEWNS))?;
                check(libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ))?;
                for (at, source) in &self.steps {
                    libc::mkdir(at.as_ptr(), 0o755);
                    match source {
                        None => check(libc::mount(
                            tmpfs.as_ptr(),
                            at.as_ptr(),
                            tmpfs.as_ptr(),
                            0,
                            std::ptr::null(),
                        ))?,
                        Some(host) => check(libc::mount(
                            host.as_ptr(),
                            at.as_ptr(),
                            std::ptr::null(),
                            libc::MS_BIND,
                            std::ptr::null(),
                        ))?,
                    }
                }
                check(libc::chdir(workdir.as_ptr()))
            });
        }
    }
}

#[cfg(target_os = "linux")]
fn cstr(text: &str) -> CString {
    CString::new(text).expect("no NUL in test paths")
}

fn step_run(measured: Measured, read: &dyn Fn(&str) -> String) -> StepRun {
    let output = measured.output;
    StepRun {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        elapsed: measured.elapsed,
        max_rss_kib: measured.max_rss_kib,
        outputs: parse_file_command(&read("GITHUB_OUTPUT")),
        env: parse_file_command(&read("GITHUB_ENV")),
        state: parse_file_command(&read("GITHUB_STATE")),
        path: read("GITHUB_PATH").lines().map(str::to_owned).collect(),
        summary: read("GITHUB_STEP_SUMMARY"),
    }
}

/// `name=value` and `name<<DELIM ... DELIM` entries, as the runner reads them.
pub fn parse_file_command(text: &str) -> BTreeMap<String, String> {
    let mut entries = BTreeMap::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some((name, delimiter)) = line.split_once("<<") {
            let value: Vec<&str> = lines.by_ref().take_while(|l| *l != delimiter).collect();
            entries.insert(name.to_owned(), value.join("\n"));
        } else if let Some((name, value)) = line.split_once('=') {
            entries.insert(name.to_owned(), value.to_owned());
        }
    }
    entries
}

/// A later step on the runner host: the job's env plus what the main step exported.
pub struct LaterStep {
    pub env: BTreeMap<String, String>,
    pub dir: tempfile::TempDir,
}

impl LaterStep {
    pub fn after(job: &Job, main: &StepRun) -> Self {
        let mut env: BTreeMap<String, String> = job.exported.borrow().clone();
        env.insert(
            "RUNNER_TEMP".into(),
            job.temp.to_string_lossy().into_owned(),
        );
        let inherited = std::env::var_os("PATH").unwrap_or_default();
        let dirs = main
            .path
            .iter()
            .map(PathBuf::from)
            .chain(std::env::split_paths(&inherited));
        let path = std::env::join_paths(dirs).expect("a PATH");
        env.insert("PATH".into(), path.to_string_lossy().into_owned());
        let dir = tempfile::Builder::new()
            .prefix("tk-step")
            .tempdir()
            .expect("step dir");
        Self { env, dir }
    }

    pub fn git(&self, args: &[&str]) -> Output {
        self.git_in(self.dir.path(), args)
    }

    /// git with `args` in this step, which must succeed.
    #[track_caller]
    pub fn assert_git(&self, args: &[&str]) {
        crate::assert_success("git", &self.git(args));
    }

    pub fn git_in(&self, dir: &Path, args: &[&str]) -> Output {
        git_command(dir)
            .envs(&self.env)
            .args(args)
            .output()
            .expect("git")
    }

    /// A package manager (or any tool that runs git) in this step, with `home` as its home and
    /// git's own configuration files out of the way, as `git_command` has them.
    pub fn tool(&self, program: &str, home: &Path) -> Command {
        let mut command = self.command(program);
        command
            .env("HOME", home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0");
        command
    }

    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command
            .current_dir(self.dir.path())
            .env_clear()
            .envs(&self.env);
        command
    }
}

/// Make the cached token look `secs` older, as if the job had run that long.
pub fn age_cached_token(job: &Job, main: &StepRun, secs: i64) {
    token_keeper::backdate_cached_token(&job.host_path(&main.state["dir"]), secs, false)
        .expect("a state to age");
}

/// Make the cached token an hour old and expired a second ago by GitHub's clock (ours plus the
/// offset recorded at its mint), as an hour later; GitHub's fake still takes it.
pub fn expire_cached_token(job: &Job, main: &StepRun) {
    token_keeper::backdate_cached_token(&job.host_path(&main.state["dir"]), 3600, true)
        .expect("a state to expire");
}

/// Run `command` as `uid` (and its group): the runner's user, when the tests run as root.
#[cfg(unix)]
pub fn as_user(command: &mut Command, uid: u32) {
    // As root, std also drops the supplementary groups.
    command.uid(uid).gid(uid);
}

/// Fail at once, saying what to install, when `program args` does not run here.
#[track_caller]
pub fn require(program: &str, args: &[&str], needed: &str) {
    let ran = Command::new(program).args(args).output();
    assert!(
        ran.is_ok_and(|o| o.status.success()),
        "this test needs {needed}; scripts/test installs what the tests need"
    );
}

/// Whether the tests run as root (CI does), so namespaces and other users can be used.
#[cfg(unix)]
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
