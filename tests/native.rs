//! The native entry: `node` runs the release's binary in place, checked against its pinned sum.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use testkit::assert_success;
use testkit::fake_github::{FakeGitHub, app_inputs};
use testkit::git_server::git_command;
use testkit::measure;
use testkit::native_entry::{self, binary_name};
use testkit::runner::{Job, LaterStep, StepRun, View};
use testkit::scene::Scene;

#[tokio::test]
#[cfg_attr(
    wine,
    ignore = "needs git, which has no Windows build here: Windows' runners run it"
)]
async fn the_native_entry_keeps_git_fresh_past_expiry_and_revokes_every_token() {
    let mut s = Scene::start(Duration::from_secs(3)).await;
    // In place, the step's own paths are the host's: none is derived from the workspace's.
    s.job
        .extra_env
        .insert("RUNNER_WORKSPACE".into(), "/nowhere/repo".into());
    let main = s.job.main(&s.inputs(&[]), View::Native);
    main.assert_ok();
    let token = &main.outputs["token"];
    assert!(
        main.stdout.starts_with("::add-mask::"),
        "masks come first: {}",
        main.stdout
    );
    assert!(main.stdout.contains(&format!("::add-mask::{token}\n")));
    let bin = s.job.temp.join("token-keeper").join("bin");
    assert_eq!(main.path, [bin.to_string_lossy()], "a host path");

    let step = LaterStep::after(&s.job, &main);
    assert_success("git", &s.push_late(&step, Duration::from_millis(3500)));
    assert!(s.github.mints() >= 2, "the push re-minted");
    let fresh = step.command("token-keeper").arg("token").output().unwrap();
    assert_success("token", &fresh);

    let post = s.job.post(&s.inputs(&[]), &main.state, View::Native);
    post.assert_ok();
    assert!(s.github.world().live_tokens().is_empty(), "{}", post.log());
    assert!(
        !s.job.temp.join("token-keeper").exists(),
        "the job's state is gone"
    );
    for token in s.github.tokens() {
        assert!(!post.log().contains(&token));
    }
}

/// Without git, as under wine: the main step masks and puts out a token, a later step's `token`
/// gives it, and the post step revokes it and removes the job's state.
#[tokio::test]
async fn the_native_entry_mints_a_token_that_later_steps_get_and_the_post_step_revokes() {
    let github = FakeGitHub::start().await;
    let job = Job::new(&github.url());
    let main = job.main(&app_inputs(&[]), View::Native);
    main.assert_ok();
    let token = &main.outputs["token"];
    assert!(main.stdout.starts_with("::add-mask::"), "{}", main.log());
    assert!(main.stdout.contains(&format!("::add-mask::{token}\n")));

    let step = LaterStep::after(&job, &main);
    let later = step.command("token-keeper").arg("token").output().unwrap();
    assert_success("token", &later);
    assert_eq!(String::from_utf8_lossy(&later.stdout).trim(), token);

    let post = job.post(&app_inputs(&[]), &main.state, View::Native);
    post.assert_ok();
    assert!(github.world().live_tokens().is_empty(), "{}", post.log());
    assert!(
        !job.temp.join("token-keeper").exists(),
        "the job's state is gone:\n{}",
        post.log()
    );
    assert!(!post.log().contains(token.as_str()), "{}", post.log());
}

#[tokio::test]
async fn the_binarys_exit_code_and_its_one_error_line_come_through() {
    let github = FakeGitHub::start().await;
    let job = Job::new(&github.url());
    let run = job.main(&app_inputs(&[("private-key", "")]), View::Native);
    assert!(run.the_error().contains("private-key"), "{}", run.log());
    assert_eq!(github.mints(), 0);
    assert_no_private_copy_left(&job);
}

/// Change the job's packed binary after its sum was pinned: one byte more.
fn change_the_binary(job: &Job) {
    let binary = job.native_entry().join("bin").join(binary_name());
    let mut bytes = fs::read(&binary).unwrap();
    bytes.push(0);
    fs::write(&binary, bytes).unwrap();
}

#[tokio::test]
async fn a_binary_that_is_not_the_pinned_one_never_runs() {
    let github = FakeGitHub::start().await;
    let job = Job::new(&github.url());
    change_the_binary(&job);

    let run = job.main(&app_inputs(&[]), View::Native);
    let error = run.the_error();
    assert!(
        error.contains("is not the binary this release pinned")
            && error.contains("nothing was run"),
        "{error}"
    );
    assert_eq!(run.stdout.lines().count(), 1, "{}", run.log());
    assert!(run.stderr.is_empty(), "{}", run.stderr);

    // A copy without the sums, or whose sums leave this machine's binary out, runs nothing
    // either.
    let sums = job.native_entry().join("bin/SHA256SUMS");
    fs::write(
        &sums,
        format!("{}  token-keeper-linux-other\n", "0".repeat(64)),
    )
    .unwrap();
    let unpinned = job.main(&app_inputs(&[]), View::Native);
    assert!(
        unpinned
            .the_error()
            .contains(&format!("bin/SHA256SUMS pins no {}", binary_name())),
        "{}",
        unpinned.log()
    );
    fs::remove_file(&sums).unwrap();
    let unreleased = job.main(&app_inputs(&[]), View::Native);
    assert!(
        unreleased.the_error().contains("has no binaries"),
        "{}",
        unreleased.log()
    );

    assert!(github.world().seen.is_empty(), "nothing asked GitHub");
    assert!(!job.temp.join("token-keeper").exists(), "nothing written");
}

/// The folders the runner keeps in its temp folder, and the job's own; nothing else is left.
fn assert_no_private_copy_left(job: &Job) {
    let runners = ["_github_home", "_github_workflow", "_runner_file_commands"];
    let left: Vec<String> = fs::read_dir(&job.temp)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !runners.contains(&name.as_str()) && name != "token-keeper")
        .collect();
    assert!(left.is_empty(), "left in RUNNER_TEMP: {left:?}");
}

/// The main step under node with `hook` loaded first (`node --require`), as the runner runs it.
fn main_with_hook(job: &Job, inputs: &[(&str, &str)], hook: &str) -> StepRun {
    let file = job.temp.parent().unwrap().join("hook.js");
    fs::write(&file, hook).unwrap();
    let main = job.native_entry().join("main.js");
    job.run_step(inputs, &BTreeMap::new(), |env| {
        let mut node = Command::new("node");
        node.arg("--require")
            .arg(&file)
            .arg(main)
            .env_clear()
            .envs(&env)
            .current_dir(&job.workspace);
        node
    })
}

/// A hook that writes what the entry spawns (the file and its mode) to `record`, then does
/// `then` (JavaScript, with `child` in scope) once it runs.
fn spawn_recorder(record: &Path, then: &str) -> String {
    let record = serde_json::to_string(&record.to_string_lossy()).unwrap();
    format!(
        r#"
        const fs = require('node:fs');
        const childProcess = require('node:child_process');
        for (const name of ['spawn', 'spawnSync']) {{
          const original = childProcess[name];
          childProcess[name] = function (file, ...rest) {{
            const mode = fs.statSync(file).mode & 0o777;
            fs.writeFileSync({record}, JSON.stringify({{ file, mode }}));
            const child = original.call(childProcess, file, ...rest);
            {then}
            return child;
          }};
        }}
        "#
    )
}

/// What the hook of `spawn_recorder` wrote: the file spawned, and its mode.
fn recorded(record: &Path) -> (PathBuf, u32) {
    let ran: serde_json::Value = serde_json::from_slice(&fs::read(record).unwrap()).unwrap();
    let file = PathBuf::from(ran["file"].as_str().unwrap());
    (file, ran["mode"].as_u64().unwrap() as u32)
}

/// A file changed between the check and the run does not run: the bytes read for the check are
/// the ones run, from a private copy, and the main step installs those for later steps.
#[tokio::test]
async fn the_bytes_that_run_are_the_ones_checked_not_the_file_changed_after() {
    let github = FakeGitHub::start().await;
    let job = Job::new(&github.url());
    let binary = job.native_entry().join("bin").join(binary_name());
    let checked = fs::read(&binary).unwrap();
    let record = job.temp.parent().unwrap().join("ran.json");
    // As soon as the entry has read the binary for its check, the file changes on disk: to
    // another binary that runs as well, so only its bytes tell which one ran.
    let swap = format!(
        r#"
        const path = require('node:path');
        const read = fs.readFileSync;
        fs.readFileSync = function (file, ...rest) {{
          const bytes = read.call(fs, file, ...rest);
          if (path.basename(String(file)) === {name}) {{
            fs.writeFileSync(file, Buffer.concat([bytes, Buffer.from('swapped')]));
          }}
          return bytes;
        }};
        "#,
        name = serde_json::to_string(&binary_name()).unwrap()
    );
    let hook = spawn_recorder(&record, "") + &swap;
    let main = main_with_hook(&job, &app_inputs(&[]), &hook);
    main.assert_ok();
    assert_eq!(
        fs::read(&binary).unwrap(),
        [&checked[..], b"swapped"].concat(),
        "the file changed after the check"
    );

    let installed = job
        .temp
        .join("token-keeper/bin")
        .join(format!("token-keeper{}", std::env::consts::EXE_SUFFIX));
    assert!(
        fs::read(&installed).unwrap() == checked,
        "later steps run the bytes that were checked"
    );
    let (ran, mode) = recorded(&record);
    assert_eq!(ran.file_name().unwrap(), binary_name().as_str());
    let folder = ran.parent().unwrap();
    assert_eq!(
        folder.parent().unwrap().canonicalize().unwrap(),
        job.temp.canonicalize().unwrap(),
        "a folder of its own in RUNNER_TEMP: {}",
        ran.display()
    );
    if cfg!(unix) {
        assert_eq!(mode, 0o700, "{}", ran.display());
    }
    assert!(
        !folder.exists(),
        "the copy is removed: {}",
        folder.display()
    );
    assert_no_private_copy_left(&job);
}

/// A cancelled job's signal reaches the binary, and the entry removes its copy once it has
/// ended.
#[cfg(unix)]
#[test]
fn a_cancelled_step_ends_the_binary_and_then_removes_its_copy() {
    // A GitHub that takes the connection and never answers: the binary waits.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let job = Job::new(&format!("http://{}", silent.local_addr().unwrap()));
    let record = job.temp.parent().unwrap().join("ran.json");
    // As the runner cancels a step: a signal to node, once the binary runs.
    let hook = spawn_recorder(
        &record,
        "setImmediate(() => process.kill(process.pid, 'SIGTERM'));",
    );
    let main = main_with_hook(&job, &app_inputs(&[]), &hook);
    assert_eq!(main.status.code(), Some(1), "{}", main.log());
    assert!(
        main.stderr.contains(&format!(
            "token-keeper: {} was ended by SIGTERM",
            binary_name()
        )),
        "{}",
        main.log()
    );
    assert!(!main.stdout.contains("::error"), "{}", main.log());
    let (ran, _) = recorded(&record);
    assert!(!ran.exists(), "{}", ran.display());
    assert_no_private_copy_left(&job);
}

/// When the main step ran nothing, its error is the only one: the post step, told so through
/// the step's state, says so and adds none.
#[tokio::test]
async fn the_post_step_of_a_main_step_that_ran_nothing_adds_no_error() {
    let github = FakeGitHub::start().await;
    let job = Job::new(&github.url());
    change_the_binary(&job);

    let main = job.main(&app_inputs(&[]), View::Native);
    assert!(
        main.the_error().contains("nothing was run"),
        "{}",
        main.log()
    );
    assert_eq!(
        main.state.get("ran-nothing").map(String::as_str),
        Some("true"),
        "the main step says so"
    );
    let post = job.post(&app_inputs(&[]), &main.state, View::Native);
    post.assert_ok();
    assert!(!post.stdout.contains("::"), "{}", post.log());
    assert_eq!(
        post.stderr,
        "token-keeper: nothing to clean up: the main step ran nothing\n"
    );
    assert!(github.world().seen.is_empty(), "nothing asked GitHub");
}

/// Where no private copy can be made, that is the one error, and nothing runs.
#[tokio::test]
async fn a_private_copy_that_cannot_be_made_is_one_error_and_runs_nothing() {
    let github = FakeGitHub::start().await;
    let mut job = Job::new(&github.url());
    let nowhere = job.temp.join("gone");
    job.extra_env
        .insert("RUNNER_TEMP".into(), nowhere.to_string_lossy().into_owned());
    let main = job.main(&app_inputs(&[]), View::Native);
    let error = main.the_error();
    assert!(
        error.contains(&format!("cannot run a private copy of {}", binary_name()))
            && error.contains("`RUNNER_TEMP`"),
        "{error}"
    );
    assert_eq!(
        main.state.get("ran-nothing").map(String::as_str),
        Some("true")
    );
    assert!(github.world().seen.is_empty(), "nothing asked GitHub");
}

/// A binary that passed the main step's check and fails the post step's is the post step's
/// error.
#[tokio::test]
async fn a_binary_changed_after_the_main_step_is_the_post_steps_error() {
    let github = FakeGitHub::start().await;
    let job = Job::new(&github.url());
    let main = job.main(&app_inputs(&[]), View::Native);
    main.assert_ok();
    change_the_binary(&job);

    let post = job.post(&app_inputs(&[]), &main.state, View::Native);
    let error = post.the_error();
    assert!(
        error.contains("is not the binary this release pinned"),
        "{error}"
    );
}

#[test]
fn the_entry_names_the_binary_for_each_platform_and_what_it_has_elsewhere() {
    let run_js = native_entry::root().join("native/run.js");
    let script = r#"
        const { binaryFor, pinnedSum } = require(process.argv[1]);
        const pick = (p, a) => { try { return binaryFor(p, a); } catch (e) { return 'error: ' + e.message; } };
        const sums = `${'a'.repeat(64)}  token-keeper-linux-x86_64\r\n${'b'.repeat(64)} *token-keeper-windows-x86_64.exe\n`;
        console.log(JSON.stringify({
            picks: [['linux', 'x64'], ['linux', 'arm64'], ['darwin', 'x64'], ['darwin', 'arm64'],
                    ['win32', 'x64'], ['win32', 'arm64'], ['freebsd', 'x64'], ['linux', 'ia32']]
                .map(([p, a]) => pick(p, a)),
            sums: [pinnedSum(sums, 'token-keeper-linux-x86_64'),
                   pinnedSum(sums, 'token-keeper-windows-x86_64.exe'),
                   pinnedSum(sums, 'token-keeper-linux'),
                   pinnedSum('not a sums file', 'token-keeper-linux-x86_64')],
        }));
    "#;
    let out = Command::new("node")
        .args(["-e", script])
        .arg(&run_js)
        .output()
        .expect("node");
    assert_success("node", &out);
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let picks: Vec<&str> = result["picks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(
        picks[..6],
        [
            "token-keeper-linux-x86_64",
            "token-keeper-linux-aarch64",
            "token-keeper-macos-x86_64",
            "token-keeper-macos-aarch64",
            "token-keeper-windows-x86_64.exe",
            "token-keeper-windows-aarch64.exe",
        ]
    );
    for other in &picks[6..] {
        assert!(
            other.starts_with("error: no token-keeper binary for ")
                && other.contains("uses: org/token-keeper@v1"),
            "{other}"
        );
    }
    assert_eq!(
        result["sums"],
        serde_json::json!(["a".repeat(64), "b".repeat(64), null, null])
    );
}

/// macOS and Windows runners configure the Keychain or Git Credential Manager in git's system
/// configuration. With the machine's own configuration, git runs ours alone for the token's
/// scope, to fill and to store: no token of ours reaches the machine's store. (On Linux, with
/// no such helper, this shows the same of git's own list.)
#[tokio::test]
#[cfg_attr(
    wine,
    ignore = "needs git, which has no Windows build here: Windows' runners run it"
)]
async fn with_the_machines_own_git_configuration_only_ours_runs_for_the_scope() {
    let s = Scene::start(Duration::from_secs(3600)).await;
    let main = s.job.main(&s.inputs(&[]), View::Native);
    main.assert_ok();
    let mut step = LaterStep::after(&s.job, &main);
    step.env.insert("GIT_CONFIG_NOSYSTEM".into(), "0".into());
    // Git Credential Manager would otherwise wait for someone at a screen.
    step.env.insert("GCM_INTERACTIVE".into(), "never".into());
    // git names every helper it runs on stderr: their command lines, not what they say.
    step.env.insert("GIT_TRACE".into(), "1".into());
    let theirs = step.git(&["config", "--system", "--get-all", "credential.helper"]);
    let theirs = String::from_utf8_lossy(&theirs.stdout).into_owned();
    let git = |operation: &str, input: &str| {
        let mut git = git_command(step.dir.path());
        git.envs(&step.env).args(["credential", operation]);
        let out = measure::run(&mut git, input.as_bytes())
            .expect("git credential")
            .output;
        assert_success("git", &out);
        let ran: Vec<String> = String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| l.contains("trace: run_command:"))
            .map(str::to_owned)
            .collect();
        assert!(
            !ran.is_empty() && ran.iter().all(|l| l.contains("token-keeper")),
            "git {operation} ran helpers other than ours (the machine's: {theirs:?}): {ran:#?}"
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let url = format!("url={}\n", s.repo_url("Octo-Org", "app"));
    let answer = git("fill", &format!("{url}\n"));
    let password = answer
        .lines()
        .find_map(|l| l.strip_prefix("password="))
        .unwrap_or_default();
    assert!(s.github.tokens().iter().any(|t| t == password), "{answer}");
    // As git approves what worked, for the same URL.
    let worked: String = answer
        .lines()
        .filter(|l| !l.starts_with("protocol=") && !l.starts_with("host="))
        .map(|l| format!("{l}\n"))
        .collect();
    git("approve", &format!("{url}{worked}\n"));
}
