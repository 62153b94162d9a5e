//! `setup`, the tools and `revoke` run as any CI runs them, with no shell and no git: git's
//! helper protocol spoken on standard input, as on every platform, Windows under wine among them.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use tempfile::TempDir;

use testkit::assert_success;
use testkit::fake_github::{APP_ID, APP_KEY, FakeGitHub};
use testkit::logs::text;
use testkit::measure;
use testkit::runner::binary;

/// Tokens that live long enough for a loaded machine, or wine, to start a few processes while
/// one is fresh, and short enough to outlive in a test. One is refreshed when less than half
/// of this is left.
const LIFETIME: Duration = Duration::from_secs(8);

/// A job of a CI that is not Actions: its own home, temporary and work folders, and the
/// machine's environment without what Actions or an outer token-keeper would give.
struct Anywhere {
    dir: TempDir,
    job_id: String,
}

impl Anywhere {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("tk-any")
            .tempdir()
            .expect("job dir");
        for folder in ["home", "tmp", "work"] {
            fs::create_dir_all(dir.path().join(folder)).expect("job folders");
        }
        fs::write(dir.path().join("app-key.pem"), APP_KEY).expect("key file");
        let job_id = dir
            .path()
            .file_name()
            .expect("a name")
            .to_string_lossy()
            .into_owned();
        Self { dir, job_id }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `program` as the job's script would start it.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if [
                "GITHUB_",
                "RUNNER_",
                "ACTIONS_",
                "TOKEN_KEEPER_",
                "CI_",
                "GIT_",
            ]
            .iter()
            .any(|prefix| name.starts_with(prefix))
            {
                command.env_remove(&*name);
            }
        }
        let (home, tmp) = (self.path("home"), self.path("tmp"));
        command
            .current_dir(self.path("work"))
            .env("HOME", &home)
            .env("USERPROFILE", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("TMPDIR", &tmp)
            .env("TMP", &tmp)
            .env("TEMP", &tmp)
            .env("CI_JOB_ID", &self.job_id)
            .env("TOKEN_KEEPER_RETRY_BASE", "20ms");
        command
    }

    /// `token-keeper` with `args`; its output, read through files.
    fn run(&self, args: &[&str], stdin: &str) -> Output {
        let mut command = self.command(binary());
        command.args(args);
        measure::run(&mut command, stdin.as_bytes())
            .expect("token-keeper")
            .output
    }

    /// `token-keeper setup` for the App on `github`, printing JSON: the store's path.
    fn setup(&self, github: &FakeGitHub) -> PathBuf {
        let key = self.path("app-key.pem");
        let out = self.run(
            &[
                "setup",
                "--app-id",
                APP_ID,
                "--private-key-file",
                &key.to_string_lossy(),
                "--api-url",
                &github.url(),
                "--git-server-url",
                "https://github.com",
                "--owner",
                "Octo-Org",
                "--format",
                "json",
            ],
            "",
        );
        assert_success("setup", &out);
        let printed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        PathBuf::from(
            printed["variables"]["TOKEN_KEEPER_STATE"]
                .as_str()
                .expect("the store's path"),
        )
    }

    /// What git's helper answers for the App's repository: the password.
    fn git_asks(&self, state: &Path) -> String {
        let out = self.run(
            &["credential", "--state", &state.to_string_lossy(), "get"],
            "protocol=https\nhost=github.com\npath=Octo-Org/app.git\n\n",
        );
        assert_success("credential get", &out);
        let answer = String::from_utf8_lossy(&out.stdout).into_owned();
        let password = answer.lines().find_map(|l| l.strip_prefix("password="));
        password.expect("a password").to_owned()
    }

    /// `node` running `script` with `args` under `token-keeper exec`, `flags` first.
    fn exec_node(&self, state: &Path, flags: &[&str], script: &str, args: &[&str]) -> Output {
        let file = self.path("child.js");
        fs::write(&file, script).expect("the child's script");
        let state = state.to_string_lossy();
        let file = file.to_string_lossy();
        let mut all = vec!["exec", "--state", &state];
        all.extend(flags);
        all.extend(["--", "node", &file]);
        all.extend(args);
        self.run(&all, "")
    }
}

#[track_caller]
fn assert_live(github: &FakeGitHub, token: &str) {
    let world = github.world();
    assert!(
        world.live_tokens().iter().any(|t| t.token == token),
        "a live token of the fake's"
    );
}

/// Wait until every token minted so far has expired in the fake's clock.
fn outlive_every_token(github: &FakeGitHub) {
    let last = github.world().issued.iter().map(|t| t.expires_at).max();
    while github.world().now() <= last.unwrap_or(0) {
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test]
async fn a_job_anywhere_gets_fresh_tokens_past_the_first_ones_expiry_then_revokes_them() {
    let github = FakeGitHub::start().await;
    github.world().token_lifetime = LIFETIME;
    let job = Anywhere::new();
    let state = job.setup(&github);
    #[cfg(windows)]
    assert_eq!(
        token_keeper::dacl_of(&state).unwrap(),
        token_keeper::Dacl::ours().unwrap(),
        "the store admits this user alone"
    );
    let first = github.tokens()[0].clone();
    assert_live(&github, &job.git_asks(&state));

    outlive_every_token(&github);
    let fresh = job.git_asks(&state);
    assert_ne!(fresh, first, "the first token expired");
    assert_live(&github, &fresh);
    let token = job.run(&["token", "--state", &state.to_string_lossy()], "");
    assert_success("token", &token);
    assert_live(&github, String::from_utf8_lossy(&token.stdout).trim());

    // `exec`: the child's variables hold a live token.
    let seen = job.path("seen");
    let exec = job.exec_node(
        &state,
        &[],
        "require('node:fs').writeFileSync(process.argv[2], process.env.GH_TOKEN + ' ' + process.env.GITHUB_TOKEN);",
        &[&seen.to_string_lossy()],
    );
    assert_success("exec", &exec);
    let seen_text = fs::read_to_string(&seen).expect("what the child saw");
    let (gh, github_token) = seen_text.split_once(' ').expect("two tokens");
    assert_eq!(gh, github_token);
    assert_live(&github, gh);

    // `exec --keep-fresh`: the child's `gh` configuration holds a live token past the expiry of
    // the one it started with, and no variable holds one.
    let read = job.path("read");
    let exec = job.exec_node(
        &state,
        &["--keep-fresh"],
        &format!(
            r#"
            const fs = require('node:fs');
            const path = require('node:path');
            const hosts = () => fs.readFileSync(path.join(process.env.GH_CONFIG_DIR, 'hosts.yml'), 'utf8');
            const first = hosts();
            setTimeout(() => fs.writeFileSync(process.argv[2], JSON.stringify({{
                first, later: hosts(), variable: process.env.GH_TOKEN || process.env.GITHUB_TOKEN || null,
            }})), {wait});
            "#,
            wait = LIFETIME.as_millis() + 1000
        ),
        &[&read.to_string_lossy()],
    );
    assert_success("exec --keep-fresh", &exec);
    let read: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&read).expect("what the child read")).unwrap();
    assert_eq!(read["variable"], serde_json::Value::Null);
    let in_hosts = |which: &str| {
        let text = read[which].as_str().expect("hosts.yml").to_owned();
        let token = text.split("oauth_token: \"").nth(1).expect("a token");
        token.split('"').next().expect("a token").to_owned()
    };
    assert_ne!(in_hosts("first"), in_hosts("later"), "it was replaced");
    assert_live(&github, &in_hosts("later"));

    let revoke = job.run(&["revoke", "--state", &state.to_string_lossy()], "");
    assert_success("revoke", &revoke);
    assert!(github.world().live_tokens().is_empty(), "{}", text(&revoke));
    assert!(!state.exists(), "the store is gone");
    for token in github.tokens() {
        for out in [&revoke, &exec] {
            assert!(!text(out).contains(&token), "no token is shown");
        }
    }
}

/// The identity command, and what it started, are ended at its time limit: on Windows by the
/// Job Object it runs in.
#[cfg(windows)]
#[tokio::test]
async fn an_identity_command_past_its_limit_is_ended_with_all_it_started() {
    let github = FakeGitHub::start().await;
    let job = Anywhere::new();
    let pid = job.path("pid");
    // The command never prints, and its child, not waited for, holds no pipe of ours.
    let tree = job.path("tree.js");
    fs::write(
        &tree,
        format!(
            r#"
            const child = require('node:child_process').spawn(process.execPath,
                ['-e', 'setInterval(() => {{}}, 1000)'], {{ detached: true, stdio: 'ignore' }});
            require('node:fs').writeFileSync({pid}, String(child.pid));
            setInterval(() => {{}}, 1000);
            "#,
            pid = serde_json::to_string(&pid.to_string_lossy()).unwrap()
        ),
    )
    .unwrap();
    let command = format!("node \"{}\"", tree.display());
    let out = job.run(
        &[
            "setup",
            "--sts-identity",
            "release",
            "--sts-scope",
            "Octo-Org/app",
            "--sts-domain",
            &github.url(),
            "--api-url",
            &github.url(),
            "--git-server-url",
            "https://github.com",
            "--identity-command",
            &command,
        ],
        "",
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("gave no token within"),
        "{}",
        text(&out)
    );
    let pid = fs::read_to_string(&pid).expect("the child's pid");
    // node's `kill` with signal 0 only asks whether the process is there.
    let mut probe = job.command("node");
    probe
        .args(["-e", &format!("process.kill({pid}, 0)")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let alive = probe.status().expect("node").success();
    if alive {
        // What the test started ends with it, also when it fails.
        let _ = job
            .command("node")
            .args(["-e", &format!("process.kill({pid})")])
            .status();
    }
    assert!(!alive, "the identity command's child outlived it");
    assert!(github.world().seen.is_empty(), "nothing asked GitHub");
}
