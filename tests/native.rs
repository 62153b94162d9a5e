//! The native entry: `node` runs the release's binary in place, checked against its pinned sum.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::fake_github::{FakeGitHub, app_inputs};
use crate::support::native_entry::{self, binary_name};
use crate::support::runner::{Job, LaterStep, StepRun, View};
use crate::support::scene::{Scene, assert_git_ok};

#[tokio::test]
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
    let bin = s.job.temp.join("token-keeper/bin");
    assert_eq!(main.path, [bin.to_string_lossy()], "a host path");

    let step = LaterStep::after(&s.job, &main);
    assert_git_ok(&s.push_late(&step, Duration::from_millis(3500)));
    assert!(s.github.mints() >= 2, "the push re-minted");
    let fresh = step.command("token-keeper").arg("token").output().unwrap();
    assert!(fresh.status.success(), "{fresh:?}");

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

#[tokio::test]
async fn the_binarys_exit_code_and_its_one_error_line_come_through() {
    let github = FakeGitHub::start().await;
    let job = Job::new(&github.url());
    let run = job.main(&app_inputs(&[("private-key", "")]), View::Native);
    assert!(run.the_error().contains("private-key"), "{}", run.log());
    assert_eq!(github.mints(), 0);
}

/// The main step of the native entry in `entry`, run by node in `job`.
fn main_from(job: &Job, entry: &Path) -> StepRun {
    let script = entry.join("main.js");
    job.run_step(&app_inputs(&[]), &BTreeMap::new(), |env| {
        let mut node = Command::new("node");
        node.arg(&script)
            .env_clear()
            .envs(&env)
            .current_dir(&job.workspace);
        node
    })
}

#[tokio::test]
async fn a_binary_that_is_not_the_pinned_one_never_runs() {
    let github = FakeGitHub::start().await;
    let job = Job::new(&github.url());
    let dir = tempfile::tempdir().unwrap();
    let entry = native_entry::pack(dir.path());
    let bin = entry.join("bin");
    let mut bytes = fs::read(bin.join(binary_name())).unwrap();
    bytes.extend_from_slice(b"\0");
    fs::write(bin.join(binary_name()), bytes).unwrap();

    let run = main_from(&job, &entry);
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
    let sums = bin.join("SHA256SUMS");
    fs::write(
        &sums,
        format!("{}  token-keeper-linux-other\n", "0".repeat(64)),
    )
    .unwrap();
    let unpinned = main_from(&job, &entry);
    assert!(
        unpinned
            .the_error()
            .contains(&format!("bin/SHA256SUMS pins no {}", binary_name())),
        "{}",
        unpinned.log()
    );
    fs::remove_file(&sums).unwrap();
    let unreleased = main_from(&job, &entry);
    assert!(
        unreleased.the_error().contains("has no binaries"),
        "{}",
        unreleased.log()
    );

    assert!(github.world().seen.is_empty(), "nothing asked GitHub");
    assert!(!job.temp.join("token-keeper").exists(), "nothing written");
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
    assert!(out.status.success(), "{out:?}");
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
