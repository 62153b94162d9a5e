//! Benchmarks: the figures the README quotes, printed. Processes are measured from spawn to exit,
//! peak memory with `wait4`, against the fake GitHub on loopback.
//!
//! Run it with `cargo build --release && cargo run --release --example bench`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use support::fake_github::{APP_ID, APP_KEY, FakeGitHub};
use support::git_server::git_command;
use support::measure::{self, Measured};
use support::runner::{Job, LaterStep, View, age_cached_token, binary};

const MAIN_RUNS: usize = 40;
const FILL_RUNS: usize = 1000;
const REMINT_RUNS: usize = 40;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let github = FakeGitHub::start().await;
    // The git server is never contacted: `git credential fill` only asks the helpers.
    let server = "http://127.0.0.1:9";
    let inputs = [
        ("app-id", APP_ID),
        ("private-key", APP_KEY),
        ("git-server-url", server),
    ];
    let build = if cfg!(debug_assertions) {
        "debug (use --release for real figures)"
    } else {
        "release"
    };
    println!(
        "token-keeper benchmarks ({build} build, {} cores)\n",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    // The main step, whole process, shim included.
    let mut runs = Vec::new();
    let mut main = None;
    let main_job = Job::new(&github.url());
    for _ in 0..MAIN_RUNS {
        let run = main_job.main(&inputs, View::Host);
        run.assert_ok();
        runs.push((run.elapsed, run.max_rss_kib));
        main = Some(run);
    }
    drop(main);
    // The rest measures a job with one token-keeper step, as a real job has.
    let job = Job::new(&github.url());
    let main = job.main(&inputs, View::Host);
    main.assert_ok();
    report(
        "main step (mint, mask, export, install shim)",
        &runs,
        "<= 25 ms, <= 10 MiB",
    );

    // `git credential fill` with our helper and a fresh cache, against git's own store helper.
    let step = LaterStep::after(&job, &main);
    let store_file = step.dir.path().join("store");
    std::fs::write(
        &store_file,
        format!(
            "http://x-access-token:{}@127.0.0.1:9\n",
            main.outputs["token"]
        ),
    )
    .expect("store file");
    let store_env = BTreeMap::from([
        ("GIT_CONFIG_COUNT".to_owned(), "1".to_owned()),
        (
            "GIT_CONFIG_KEY_0".to_owned(),
            "credential.helper".to_owned(),
        ),
        (
            "GIT_CONFIG_VALUE_0".to_owned(),
            format!("store --file={}", store_file.display()),
        ),
    ]);
    let request = format!("url={server}/Octo-Org/app.git\n\n");
    let fill = |env: &BTreeMap<String, String>| {
        let mut command = git_command(step.dir.path());
        command.envs(env).args(["credential", "fill"]);
        let measured = measure::run(&mut command, request.as_bytes()).expect("git credential fill");
        assert!(
            measured.output.status.success(),
            "{}",
            String::from_utf8_lossy(&measured.output.stderr)
        );
        assert!(String::from_utf8_lossy(&measured.output.stdout).contains("password=ghs_"));
        measured
    };
    let (mut ours, mut store) = (Vec::new(), Vec::new());
    for _ in 0..FILL_RUNS {
        let m = fill(&step.env);
        ours.push((m.elapsed, m.max_rss_kib));
        let m = fill(&store_env);
        store.push((m.elapsed, m.max_rss_kib));
    }
    report("git credential fill, token-keeper helper", &ours, "");
    report("git credential fill, git's credential-store", &store, "");
    println!(
        "  ratio of medians: {:.2}x (target <= 1.3x)\n",
        median(&ours).as_secs_f64() / median(&store).as_secs_f64()
    );

    // The helper process alone, for its own peak memory.
    let state = format!("{}", std::path::Path::new(&main.state["dir"]).display());
    let mut helper = Vec::new();
    for _ in 0..50 {
        let mut command = Command::new(binary());
        command
            .env_clear()
            .args(["credential", "--state", &state, "get"]);
        let m = measure::run(&mut command, b"protocol=http\nhost=127.0.0.1:9\n\n").expect("helper");
        assert!(String::from_utf8_lossy(&m.output.stdout).contains("password="));
        helper.push((m.elapsed, m.max_rss_kib));
    }
    report(
        "token-keeper credential get (fresh cache)",
        &helper,
        "<= 10 MiB",
    );

    // A re-mint: the cache is 50 minutes old, `token-keeper token` mints a new one.
    let mut remints = Vec::new();
    let before = github.mints();
    for _ in 0..REMINT_RUNS {
        age_cached_token(&job, &main, 50 * 60);
        let mut command = step.command(binary().to_str().expect("path"));
        command.args(["token", "--state", &state]);
        let m: Measured = measure::run(&mut command, b"").expect("token");
        assert!(
            m.output.status.success(),
            "{}",
            String::from_utf8_lossy(&m.output.stderr)
        );
        remints.push((m.elapsed, m.max_rss_kib));
    }
    assert_eq!(github.mints() - before, REMINT_RUNS, "each run re-minted");
    report(
        "re-mint (token-keeper token, stale cache)",
        &remints,
        "<= 15 ms",
    );

    let size = std::fs::metadata(binary()).map(|m| m.len()).unwrap_or(0);
    println!(
        "binary: {} ({:.1} MiB)",
        binary().display(),
        size as f64 / 1024.0 / 1024.0
    );
    image_size();
}

fn median(runs: &[(Duration, i64)]) -> Duration {
    let mut times: Vec<Duration> = runs.iter().map(|r| r.0).collect();
    times.sort();
    times[times.len() / 2]
}

fn report(what: &str, runs: &[(Duration, i64)], target: &str) {
    let mut times: Vec<Duration> = runs.iter().map(|r| r.0).collect();
    times.sort();
    let p90 = times[times.len() * 9 / 10];
    let rss = runs.iter().map(|r| r.1).max().unwrap_or(0);
    let target = if target.is_empty() {
        String::new()
    } else {
        format!("  (target {target})")
    };
    println!(
        "{what}\n  {} runs: median {:.2} ms, p90 {:.2} ms, peak RSS {:.1} MiB{target}",
        runs.len(),
        median(runs).as_secs_f64() * 1000.0,
        p90.as_secs_f64() * 1000.0,
        rss as f64 / 1024.0
    );
}

/// The action's image, built from the Dockerfile, when a container engine answers here.
fn image_size() {
    let engine = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output();
    if !engine.is_ok_and(|o| o.status.success()) {
        println!("image: no container engine here (docker build . then docker image ls)");
        return;
    }
    let built = Command::new("docker")
        .args(["build", "--quiet", "--tag", "token-keeper:bench", "."])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status();
    if !built.is_ok_and(|s| s.success()) {
        println!("image: the build failed");
        return;
    }
    let size = Command::new("docker")
        .args([
            "image",
            "inspect",
            "--format",
            "{{.Size}}",
            "token-keeper:bench",
        ])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<u64>()
                .unwrap_or(0)
        })
        .unwrap_or(0);
    println!(
        "image: token-keeper:bench ({:.1} MiB)",
        size as f64 / 1024.0 / 1024.0
    );
}
