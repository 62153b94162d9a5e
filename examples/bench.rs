//! Benchmarks: the figures the README quotes, printed. Processes are measured from spawn to exit,
//! peak memory as the process's own `VmHWM` (see `measure`), against the fake GitHub on loopback.
//!
//! Run it with `cargo build --release && cargo run --release --example bench`. The image figures
//! need a container engine (see `tests/kit/src/engine.rs`), the native entry's need node; the
//! comparison with the official action needs `TOKEN_KEEPER_OFFICIAL_ACTION`, a checkout of
//! actions/create-github-app-token. The proxy's figures (`bench/proxy.rs`) drive `exec --proxy`
//! with clients of the benchmark's own. The signers' (`bench/signers.rs`) need moto's server, the
//! AWS CLI, SoftHSM and `pkcs11-tool` on PATH (with `PATH=$PWD/target/tools/aws/bin:$PATH` where
//! `scripts/test` put the AWS ones in a venv).

// It reads the proxy's peak memory from `/proc`.
#[cfg(target_os = "linux")]
#[path = "bench/proxy.rs"]
mod proxy;
// Its signers' servers (moto, SoftHSM) are the tests', which run on Unix.
#[cfg(unix)]
#[path = "bench/signers.rs"]
mod signers;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use testkit::assert_success;
use testkit::engine::{self, Image};
use testkit::fake_github::{APP_ID, APP_KEY, CLIENT_ID, FakeGitHub};
use testkit::git_server::git_command;
use testkit::measure::{self, Measured};
use testkit::runner::{Job, LaterStep, StepRun, View, age_cached_token, binary};

const MAIN_RUNS: usize = 40;
const FILL_RUNS: usize = 1000;
const REMINT_RUNS: usize = 40;
const ENGINE_RUNS: usize = 15;
/// A round trip to api.github.com, added to every answer of the fake for the whole-action figures.
const API_LATENCY: Duration = Duration::from_millis(50);

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
        runs.push((run.elapsed, run.max_rss_kib.expect("peak memory")));
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
        assert_success("git credential fill", &measured.output);
        assert!(String::from_utf8_lossy(&measured.output.stdout).contains("password=ghs_"));
        measured
    };
    // Times only: the peak would be git's; the helper's own is measured below.
    let (mut ours, mut store) = (Vec::new(), Vec::new());
    for _ in 0..FILL_RUNS {
        ours.push((fill(&step.env).elapsed, 0));
        store.push((fill(&store_env).elapsed, 0));
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
        helper.push((m.elapsed, m.max_rss_kib.expect("peak memory")));
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
        assert_success("token", &m.output);
        remints.push((m.elapsed, m.max_rss_kib.expect("peak memory")));
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
    #[cfg(unix)]
    signers::figures().await;
    #[cfg(target_os = "linux")]
    proxy::figures().await;
    let image = image_figures(&github);
    whole_action_figures(&github, image);
}

fn median(runs: &[(Duration, u64)]) -> Duration {
    let mut times: Vec<Duration> = runs.iter().map(|r| r.0).collect();
    times.sort();
    times[times.len() / 2]
}

/// Times, and peaks in KiB where they are the measured process's own (0: none).
fn report(what: &str, runs: &[(Duration, u64)], target: &str) {
    let mut times: Vec<Duration> = runs.iter().map(|r| r.0).collect();
    times.sort();
    let p90 = times[times.len() * 9 / 10];
    let rss = match runs.iter().map(|r| r.1).max().unwrap_or(0) {
        0 => String::new(),
        kib => format!(", peak RSS {:.1} MiB", kib as f64 / 1024.0),
    };
    let target = if target.is_empty() {
        String::new()
    } else {
        format!("  (target {target})")
    };
    println!(
        "{what}\n  {} runs: median {:.2} ms, p90 {:.2} ms{rss}{target}",
        runs.len(),
        median(runs).as_secs_f64() * 1000.0,
        p90.as_secs_f64() * 1000.0,
    );
}

/// The action's image under this machine's engine: its size, and one container run of main and
/// of post. The image comes back for the whole-action figures.
fn image_figures(github: &FakeGitHub) -> Option<&'static Image> {
    let image = match engine::built() {
        Ok(image) => image,
        Err(why) => {
            println!("image: not measured: {why}");
            return None;
        }
    };
    let size = image.size();
    println!(
        "image {} under {}: {size} bytes ({:.2} MiB; target <= 4 MB)\n",
        image.name,
        image.engine,
        size as f64 / 1024.0 / 1024.0
    );
    // The runner puts action containers on the job's bridge network; the step figures below use
    // the host's, to reach the fake GitHub on loopback.
    for network in ["host", "bridge"] {
        let mut idle = Vec::new();
        for _ in 0..ENGINE_RUNS {
            let mut command = image.command();
            command.args(["run", "--rm", "--network", network, "--entrypoint"]);
            command.args(["/usr/local/bin/token-keeper", &image.name, "--version"]);
            let m = measure::run(&mut command, b"").expect("engine run");
            assert_success("engine run", &m.output);
            idle.push((m.elapsed, 0));
        }
        report(
            &format!("engine start alone (`token-keeper --version`), {network} network"),
            &idle,
            "",
        );
    }
    // Times only: the peak would be the engine client's, not the step's.
    let (mut mains, mut posts) = (Vec::new(), Vec::new());
    for _ in 0..ENGINE_RUNS {
        let (main, post) = ours(
            github,
            View::Engine {
                image,
                runner_temp: true,
            },
        );
        mains.push((main.elapsed, 0));
        posts.push((post.elapsed, 0));
    }
    report("main step, one container run", &mains, "");
    report("post step, one container run", &posts, "");
    Some(image)
}

/// The whole action's cost to a job, main + post with every API answer 50 ms late, runtime start
/// included: the container entry (when there is an engine) and the native one, against the
/// official action's `node dist/main.cjs` + `node dist/post.cjs` (when there is a checkout).
fn whole_action_figures(github: &FakeGitHub, image: Option<&'static Image>) {
    github.world().latency = API_LATENCY;
    let official = std::env::var_os("TOKEN_KEEPER_OFFICIAL_ACTION").map(PathBuf::from);
    println!(
        "\nthe whole action's cost to a job (main + post), every API answer {} ms late",
        API_LATENCY.as_millis()
    );
    let mut views = vec![("token-keeper, native entry under node", View::Native)];
    if let Some(image) = image {
        let view = View::Engine {
            image,
            runner_temp: true,
        };
        views.push(("token-keeper in containers", view));
    }
    let mut jobs: Vec<Vec<(Duration, u64)>> = vec![Vec::new(); views.len()];
    let mut trips = vec![0; views.len()];
    let (mut their_jobs, mut their_trips) = (Vec::new(), 0);
    for _ in 0..ENGINE_RUNS {
        for (i, (_, view)) in views.iter().enumerate() {
            let before = github.world().seen.len();
            let (main, post) = ours(github, *view);
            trips[i] = github.world().seen.len() - before;
            jobs[i].push((main.elapsed + post.elapsed, 0));
        }
        if let Some(dir) = &official {
            let before = github.world().seen.len();
            let (main, post) = theirs(github, dir);
            their_trips = github.world().seen.len() - before;
            their_jobs.push((main.elapsed + post.elapsed, 0));
        }
    }
    github.world().latency = Duration::ZERO;
    for (i, (what, _)) in views.iter().enumerate() {
        report(
            &format!("{what}, {} API round trips", trips[i]),
            &jobs[i],
            "",
        );
    }
    if their_jobs.is_empty() {
        println!(
            "actions/create-github-app-token: not measured (set TOKEN_KEEPER_OFFICIAL_ACTION to a checkout of it)"
        );
        return;
    }
    report(
        &format!("actions/create-github-app-token under node, {their_trips} API round trips"),
        &their_jobs,
        "",
    );
    let theirs = median(&their_jobs).as_secs_f64();
    for (i, (what, view)) in views.iter().enumerate() {
        let target = match view {
            View::Native => " (target <= 0.8x)",
            _ => "",
        };
        println!(
            "  ratio of medians, {what}: {:.2}x{target}",
            median(&jobs[i]).as_secs_f64() / theirs
        );
    }
}

/// One job with token-keeper: main and post, as `view` runs them.
fn ours(github: &FakeGitHub, view: View) -> (StepRun, StepRun) {
    let inputs = [
        ("client-id", CLIENT_ID),
        ("private-key", APP_KEY),
        ("git-server-url", "http://127.0.0.1:9"),
    ];
    let job = Job::new(&github.url());
    let main = job.main(&inputs, view);
    main.assert_ok();
    let post = job.post(&inputs, &main.state, view);
    post.assert_ok();
    (main, post)
}

/// One job with the official action's bundled scripts under node, given the same inputs.
fn theirs(github: &FakeGitHub, dir: &Path) -> (StepRun, StepRun) {
    let inputs = [("client-id", CLIENT_ID), ("private-key", APP_KEY)];
    let job = Job::new(&github.url());
    let node = |script: &'static str| {
        let path = dir.join(script);
        move |env: BTreeMap<String, String>| {
            let mut command = Command::new("node");
            command.arg(&path).env_clear().envs(env);
            command
        }
    };
    let main = job.run_step(&inputs, &BTreeMap::new(), node("dist/main.cjs"));
    main.assert_ok();
    assert!(main.outputs["token"].starts_with("ghs_"), "{}", main.log());
    let post = job.run_step(&inputs, &main.state, node("dist/post.cjs"));
    post.assert_ok();
    (main, post)
}
