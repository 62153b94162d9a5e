//! Faults survived: server errors, rate limits, resets, hangs and clock skew on every call, GitHub
//! down for good, a helper killed mid re-mint, and a full disk.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use wiremock::ResponseTemplate;

use testkit::assert_success;
use testkit::fake_github::{FakeGitHub, app_inputs};
use testkit::relay::Relay;
use testkit::runner::{
    Job, LaterStep, Namespace, StepRun, View, age_cached_token, expire_cached_token,
};
use testkit::unix_now;

/// A job whose API calls go through a relay that can reset connections.
async fn job_with_relay() -> (FakeGitHub, Relay, Job) {
    let github = FakeGitHub::start().await;
    let relay = Relay::start(&github.url());
    let mut job = Job::new(&relay.url);
    job.extra_env
        .insert("TOKEN_KEEPER_READ_TIMEOUT".into(), "1s".into());
    (github, relay, job)
}

/// The transient faults GitHub (or the way to it) shows, each then healed.
enum Fault {
    Statuses,
    RateLimited,
    SecondaryRateLimited,
    Reset,
    Hang,
}

const FAULTS: [Fault; 5] = [
    Fault::Statuses,
    Fault::RateLimited,
    Fault::SecondaryRateLimited,
    Fault::Reset,
    Fault::Hang,
];

impl Fault {
    fn inject(&self, github: &FakeGitHub, relay: &Relay, method: &str, path: &str) {
        match self {
            Fault::Statuses => {
                for status in [500, 502, 503] {
                    github.fail_next(path, ResponseTemplate::new(status));
                }
            }
            Fault::RateLimited => github.fail_next(
                path,
                ResponseTemplate::new(429).insert_header("retry-after", "1"),
            ),
            Fault::SecondaryRateLimited => github.fail_next(
                path,
                ResponseTemplate::new(403)
                    .insert_header("retry-after", "1")
                    .set_body_json(
                        serde_json::json!({"message": "You have exceeded a secondary rate limit."}),
                    ),
            ),
            Fault::Reset => relay.reset(&format!("{method} {path}"), 1),
            Fault::Hang => github.fail_next(
                path,
                ResponseTemplate::new(200).set_delay(Duration::from_secs(30)),
            ),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Fault::Statuses => "500, 502, 503",
            Fault::RateLimited => "429 with Retry-After",
            Fault::SecondaryRateLimited => "secondary rate limit 403",
            Fault::Reset => "connection reset",
            Fault::Hang => "no answer",
        }
    }
}

#[tokio::test]
async fn the_main_step_survives_transient_faults_on_lookup_and_mint() {
    for (method, path) in [("GET", "/repos/"), ("POST", "/app/installations")] {
        for fault in &FAULTS {
            let (github, relay, job) = job_with_relay().await;
            fault.inject(&github, &relay, method, path);
            let run = job.main(&app_inputs(&[]), View::Host);
            assert!(
                run.succeeded(),
                "{method} {path}, {}: {}",
                fault.name(),
                run.log()
            );
            assert!(run.outputs["token"].starts_with("ghs_"));
            let tries = github.seen(method, path).len() + relay.resets_done();
            assert!(tries >= 2, "{method} {path}, {}: retried", fault.name());
        }
    }
}

#[tokio::test]
async fn the_post_step_survives_transient_faults_on_revoke() {
    for fault in &FAULTS {
        let (github, relay, job) = job_with_relay().await;
        let main = job.main(&app_inputs(&[]), View::Host);
        main.assert_ok();
        fault.inject(&github, &relay, "DELETE", "/installation/token");
        let post = job.post(&app_inputs(&[]), &main.state, View::Host);
        post.assert_ok();
        assert!(
            !post.log().contains("::warning"),
            "{}: {}",
            fault.name(),
            post.log()
        );
        assert!(
            github.world().live_tokens().is_empty(),
            "{}: revoked",
            fault.name()
        );
    }
}

#[tokio::test]
async fn a_remint_survives_transient_faults() {
    for fault in &FAULTS {
        let (github, relay, job) = job_with_relay().await;
        let main = job.main(&app_inputs(&[]), View::Host);
        main.assert_ok();
        let step = LaterStep::after(&job, &main);
        age_cached_token(&job, &main, 50 * 60);
        fault.inject(&github, &relay, "POST", "/app/installations");
        let out = token(
            &step,
            &[
                ("TOKEN_KEEPER_READ_TIMEOUT", "1s"),
                ("TOKEN_KEEPER_RETRY_BASE", "20ms"),
            ],
        );
        assert_success(fault.name(), &out);
        assert_eq!(github.mints(), 2, "{}", fault.name());
        assert_ne!(
            String::from_utf8_lossy(&out.stdout).trim(),
            main.outputs["token"],
            "{}: a new token",
            fault.name()
        );
        assert!(
            out.stderr.is_empty(),
            "{}: {}",
            fault.name(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn token(step: &LaterStep, env: &[(&str, &str)]) -> std::process::Output {
    let mut command = step.command("token-keeper");
    command.arg("token").envs(env.iter().copied());
    command.output().expect("token-keeper token")
}

#[tokio::test]
async fn a_token_request_without_an_answer_is_repeated_once_only() {
    let (github, _relay, job) = job_with_relay().await;
    let hang = || ResponseTemplate::new(200).set_delay(Duration::from_secs(30));
    github.fail_next("/app/installations", hang());
    github.fail_next("/app/installations", hang());
    let run = job.main(&app_inputs(&[]), View::Host);
    assert_eq!(run.status.code(), Some(1), "{}", run.log());
    assert_eq!(
        github.seen("POST", "/app/installations").len(),
        2,
        "one repeat, no more"
    );
}

#[tokio::test]
async fn skewed_clocks_are_learned_and_kept_for_remints() {
    for offset in [300_i64, -300] {
        let github = FakeGitHub::start().await;
        github.world().clock_offset = offset;
        let job = Job::new(&github.url());
        let main = job.main(&app_inputs(&[]), View::Host);
        main.assert_ok();
        let step = LaterStep::after(&job, &main);
        age_cached_token(&job, &main, 50 * 60);
        let before = github.world().seen.len();
        let out = token(&step, &[]);
        assert_success("token", &out);
        let seen: Vec<_> = github.world().seen[before..]
            .iter()
            .filter(|s| s.claims.is_some())
            .cloned()
            .collect();
        assert_eq!(
            seen.len(),
            1,
            "offset {offset}: the re-mint's JWT was right the first time: {seen:#?}"
        );
        let iat = seen[0].claims.as_ref().unwrap()["iat"].as_i64().unwrap();
        assert!(
            (iat - (unix_now() + offset - 60)).abs() <= 5,
            "offset {offset}: iat {iat}"
        );
    }
}

#[tokio::test]
async fn a_jwt_is_signed_once_per_request_and_again_only_when_the_clock_moved() {
    let github = FakeGitHub::start().await;
    let job = Job::new(&github.url());
    // A second apart: a JWT signed per try would carry another `iat`.
    let busy = || ResponseTemplate::new(503).insert_header("retry-after", "1");
    github.fail_next("/repos/", busy());
    github.fail_next("/repos/", busy());
    job.main(&app_inputs(&[]), View::Host).assert_ok();
    let sent: Vec<String> = github
        .seen("GET", "/repos/")
        .into_iter()
        .map(|s| s.bearer)
        .collect();
    assert_eq!(sent.len(), 3, "retried");
    assert!(
        sent.iter().all(|jwt| *jwt == sent[0]),
        "one JWT for all tries"
    );

    // GitHub's clock behind ours: the first JWT is from its future, and refused.
    let github = FakeGitHub::start().await;
    github.world().clock_offset = -300;
    let job = Job::new(&github.url());
    job.main(&app_inputs(&[]), View::Host).assert_ok();
    let seen = github.seen("GET", "/repos/");
    assert_eq!(seen.len(), 2, "{seen:#?}");
    assert_ne!(
        seen[0].bearer, seen[1].bearer,
        "signed again for GitHub's clock"
    );
    let iat = seen[1].claims.as_ref().unwrap()["iat"].as_i64().unwrap();
    assert!((iat - (unix_now() - 300 - 60)).abs() <= 5, "iat {iat}");
}

/// A job after its main step, with the cached token `age` seconds old.
async fn aged(age: i64) -> (FakeGitHub, Job, StepRun, LaterStep) {
    let github = FakeGitHub::start().await;
    let job = Job::new(&github.url());
    let main = job.main(&app_inputs(&[]), View::Host);
    main.assert_ok();
    let step = LaterStep::after(&job, &main);
    age_cached_token(&job, &main, age);
    (github, job, main, step)
}

/// A job whose GitHub is down for good after the main step.
async fn down_after_main(cached_valid: bool) -> (FakeGitHub, Job, StepRun, LaterStep) {
    let (github, job, main, step) = aged(if cached_valid { 50 * 60 } else { 3600 + 60 }).await;
    for _ in 0..100 {
        github.fail_next("/app/installations", ResponseTemplate::new(503));
    }
    (github, job, main, step)
}

#[tokio::test]
async fn with_github_down_the_shim_serves_the_valid_cached_token_and_says_so() {
    let (_github, _job, main, step) = down_after_main(true).await;
    let out = token(
        &step,
        &[
            ("TOKEN_KEEPER_DEADLINE", "1s"),
            ("TOKEN_KEEPER_RETRY_BASE", "50ms"),
        ],
    );
    assert_success("token", &out);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        main.outputs["token"]
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("token-keeper: warning: re-minting failed"),
        "{stderr}"
    );
    assert!(
        stderr.contains("serving the cached token, valid for"),
        "{stderr}"
    );
    assert!(!stderr.contains(&main.outputs["token"]));
}

#[tokio::test]
async fn with_github_down_and_nothing_valid_the_shim_fails_with_one_line() {
    let (_github, job, main, step) = down_after_main(false).await;
    // The cached token has expired, by GitHub's clock too.
    expire_cached_token(&job, &main);
    let out = token(
        &step,
        &[
            ("TOKEN_KEEPER_DEADLINE", "1s"),
            ("TOKEN_KEEPER_RETRY_BASE", "50ms"),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("token-keeper: no valid token is left: re-minting failed:"),
        "{stderr}"
    );
}

#[tokio::test]
async fn processes_queued_behind_a_failed_remint_do_not_retry_for_the_full_bound() {
    // GitHub hangs: the first process holds the lock for its whole 2 s bound.
    let (github, _job, main, step) = aged(50 * 60).await;
    for _ in 0..10 {
        github.fail_next(
            "/app/installations",
            ResponseTemplate::new(201).set_delay(Duration::from_secs(30)),
        );
    }
    let spawn = || {
        step.command("token-keeper")
            .arg("token")
            .env("TOKEN_KEEPER_DEADLINE", "2s")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let started = Instant::now();
    // The others queue behind it, a second later.
    let first = spawn();
    std::thread::sleep(Duration::from_secs(1));
    let queued: Vec<_> = (0..4).map(|_| spawn()).collect();
    let mut outputs = vec![first.wait_with_output().unwrap()];
    let attempts = github.seen("POST", "/app/installations").len();
    // And one that comes after the failure.
    let late = spawn();
    outputs.extend(
        queued
            .into_iter()
            .chain([late])
            .map(|c| c.wait_with_output().unwrap()),
    );
    for out in outputs {
        assert_success("token", &out);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            main.outputs["token"]
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains("serving the cached token"));
    }
    assert_eq!(
        github.seen("POST", "/app/installations").len(),
        attempts,
        "nobody tried again"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

fn state_files(job: &Job, main: &StepRun) -> (PathBuf, PathBuf) {
    let dir = job.host_path(&main.state["dir"]);
    (dir.join("state.json"), dir.join("ledger"))
}

#[tokio::test]
async fn a_helper_killed_mid_remint_leaves_a_usable_state() {
    let (github, job, main, step) = aged(50 * 60).await;
    let (state, _) = state_files(&job, &main);
    let before = fs::read(&state).unwrap();
    github.fail_next(
        "/app/installations",
        ResponseTemplate::new(201).set_delay(Duration::from_secs(30)),
    );
    let mut child = step
        .command("token-keeper")
        .arg("token")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until its request is out, then kill it mid re-mint, lock held.
    let deadline = Instant::now() + Duration::from_secs(10);
    while github.seen("POST", "/app/installations").len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(fs::read(&state).unwrap(), before, "the state is untouched");
    let out = token(&step, &[]);
    assert_success("token", &out);
    assert_ne!(
        String::from_utf8_lossy(&out.stdout).trim(),
        main.outputs["token"]
    );
}

#[tokio::test]
async fn a_full_disk_never_leaves_a_half_written_state() {
    let (github, job, main, step) = aged(50 * 60).await;
    let (state, ledger) = state_files(&job, &main);
    let before = fs::read(&state).unwrap();
    let ledger_len = fs::metadata(&ledger).unwrap().len();
    // Files may grow only a few bytes past the ledger's size: its append is cut off.
    let limit = ledger_len + 20;
    let mut command = step.command("token-keeper");
    command.arg("token");
    // SAFETY: setrlimit and signal are async-signal-safe and touch only the child.
    unsafe {
        command.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let rlimit = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &rlimit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = command.output().unwrap();
    // The new token could not be saved: the old one, still valid, is served, and said so.
    assert_success("token", &out);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        main.outputs["token"]
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot save the new token"));
    let unsaved = github.world().issued[1].clone();
    assert!(unsaved.revoked, "the unsaved token was revoked at once");
    assert_eq!(
        fs::read(&state).unwrap(),
        before,
        "the state is the old one, whole"
    );
    // With room again, the next call works and the ledger lists every token it holds.
    let out = token(&step, &[]);
    assert_success("token", &out);
    let fresh = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let ledger_text = fs::read_to_string(&ledger).unwrap();
    assert!(ledger_text.contains(&fresh));
    assert!(ledger_text.contains(&main.outputs["token"]));
    let _: serde_json::Value =
        serde_json::from_slice(&fs::read(&state).unwrap()).expect("whole JSON");
}

/// Answers whose waits overflow a clock: `Retry-After` past the end of time (the wait cannot be
/// honoured), and a rate-limit reset before its beginning (retried after a second).
fn endless_waits() -> [(ResponseTemplate, bool); 2] {
    [
        (
            ResponseTemplate::new(503).insert_header("retry-after", "18446744073709551615"),
            true,
        ),
        (
            ResponseTemplate::new(403)
                .insert_header("x-ratelimit-remaining", "0")
                .insert_header("x-ratelimit-reset", "-9223372036854775808"),
            false,
        ),
    ]
}

#[tokio::test]
async fn a_server_asking_for_an_endless_wait_crashes_no_role() {
    for (answer, endless) in endless_waits() {
        // The main step gives up at once with its one error line, or retries soon.
        let github = FakeGitHub::start().await;
        github.fail_next("/repos/", answer.clone());
        let job = Job::new(&github.url());
        let started = Instant::now();
        let run = job.main(&app_inputs(&[]), View::Host);
        if endless {
            assert!(run.the_error().contains("/installation"), "{}", run.log());
        } else {
            run.assert_ok();
        }
        assert!(started.elapsed() < Duration::from_secs(5));

        // The helper serves the cached token, still valid, and warns; or retries soon.
        let (github, job, main, step) = aged(50 * 60).await;
        github.fail_next("/app/installations", answer.clone());
        let out = token(&step, &[]);
        assert_success("token", &out);
        let served = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert_eq!(served == main.outputs["token"], endless, "{served}");

        // The post step warns for what it could not revoke, removes the state and exits 0.
        github.fail_next("/installation/token", answer);
        let post = job.post(&app_inputs(&[]), &main.state, View::Host);
        post.assert_ok();
        assert_eq!(post.stdout.contains("::warning"), endless, "{}", post.log());
        assert!(!job.temp.join("token-keeper").exists());
    }
}

/// A job after its main step and two re-mints: three live tokens in the ledger.
async fn three_tokens() -> (FakeGitHub, Job, StepRun) {
    let (github, job, main, step) = aged(50 * 60).await;
    for _ in 0..2 {
        age_cached_token(&job, &main, 50 * 60);
        assert_success("token", &token(&step, &[]));
    }
    assert_eq!(github.world().live_tokens().len(), 3);
    (github, job, main)
}

#[tokio::test]
async fn the_post_step_revokes_in_parallel_within_one_deadline() {
    let hang = || ResponseTemplate::new(204).set_delay(Duration::from_secs(30));
    let failing = || ResponseTemplate::new(500);
    for (name, answer) in [
        ("no answer", hang as fn() -> ResponseTemplate),
        ("500", failing),
    ] {
        let (github, mut job, main) = three_tokens().await;
        for _ in 0..100 {
            github.fail_next("/installation/token", answer());
        }
        job.extra_env
            .insert("TOKEN_KEEPER_DEADLINE".into(), "2s".into());
        let started = Instant::now();
        let post = job.post(&app_inputs(&[]), &main.state, View::Host);
        let took = started.elapsed();
        post.assert_ok();
        // One at a time, three tokens would take three deadlines.
        assert!(took < Duration::from_secs(4), "{name}: {took:?}");
        let warnings = post
            .stdout
            .lines()
            .filter(|l| l.starts_with("::warning"))
            .count();
        assert_eq!(warnings, 3, "{name}: one per token: {}", post.log());
        assert!(
            !job.temp.join("token-keeper").exists(),
            "{name}: state removed"
        );
    }
}

#[tokio::test]
async fn the_post_step_ends_within_its_ten_second_deadline() {
    let (github, job, main) = three_tokens().await;
    for _ in 0..3 {
        github.fail_next(
            "/installation/token",
            ResponseTemplate::new(204).set_delay(Duration::from_secs(60)),
        );
    }
    let started = Instant::now();
    let post = job.post(&app_inputs(&[]), &main.state, View::Host);
    post.assert_ok();
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(12),
        "about ten seconds: {took:?}"
    );
    assert!(
        took >= Duration::from_secs(9),
        "the full deadline: {took:?}"
    );
}

#[tokio::test]
async fn a_stalled_dns_resolver_does_not_outlast_the_deadline() {
    if !testkit::runner::is_root() {
        eprintln!("skipped: needs root for a mount namespace and port 53");
        return;
    }
    // A resolver that takes every question and answers none.
    let resolver = std::net::UdpSocket::bind("127.0.0.99:53").expect("bind 127.0.0.99:53");
    let conf = tempfile::NamedTempFile::new().unwrap();
    fs::write(
        conf.path(),
        "nameserver 127.0.0.99\noptions timeout:30 attempts:2\n",
    )
    .unwrap();

    // The re-mint goes through a proxy that only the stalled resolver could name.
    let (_github, _job, main, step) = aged(50 * 60).await;
    let mut command = step.command("token-keeper");
    command
        .arg("token")
        .env("TOKEN_KEEPER_DEADLINE", "2s")
        .env("HTTP_PROXY", "http://proxy.stalled.test:3128");
    let mut namespace = Namespace::default();
    namespace.bind(conf.path().to_str().unwrap(), "/etc/resolv.conf");
    namespace.enter_in(&mut command, step.dir.path().to_str().unwrap());
    let started = Instant::now();
    let out = command.output().unwrap();
    let took = started.elapsed();
    let mut question = [0u8; 512];
    resolver.set_nonblocking(true).unwrap();
    assert!(
        resolver.recv(&mut question).is_ok(),
        "the lookup reached the stalled resolver"
    );
    assert!(
        took < Duration::from_secs(6),
        "bounded by the 2 s deadline: {took:?}"
    );
    assert_success("token", &out);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        main.outputs["token"]
    );
}

#[tokio::test]
async fn an_answer_past_a_mebibyte_is_refused_not_read() {
    let github = FakeGitHub::start().await;
    let huge = format!("{{\"message\": \"{}\"}}", "x".repeat(2 << 20));
    github.fail_next("/repos/", ResponseTemplate::new(200).set_body_string(huge));
    let job = Job::new(&github.url());
    let run = job.main(&app_inputs(&[]), View::Host);
    assert!(
        run.the_error().contains("answered more than 1024 KiB"),
        "{}",
        run.log()
    );
    let peak = run.max_rss_kib.expect("the main step's peak memory");
    assert!(peak < 32 * 1024, "peak {peak} KiB");
}
