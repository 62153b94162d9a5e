//! The signers' figures: a re-mint whose JWT AWS KMS signs (built in, and through the AWS CLI as
//! the signer command) and one a PKCS#11 token signs through `pkcs11-tool`, each against its real
//! server on loopback, beside the re-mint with a key that `bench.rs` prints.

use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::{REMINT_RUNS, report};
use testkit::assert_success;
use testkit::fake_github::{APP_ID, APP_PUBLIC_KEY, FakeGitHub};
use testkit::measure;
use testkit::runner::{Job, LaterStep, View, age_cached_token, binary};
use testkit::signers::{KmsKey, SoftHsm};

/// The AWS CLI starts a Python for each signature: fewer runs of it.
const CLI_RUNS: usize = 10;

pub async fn figures() {
    println!();
    let missing: Vec<&str> = ["moto_server", "aws", "softhsm2-util", "pkcs11-tool"]
        .into_iter()
        .filter(|program| !on_path(program))
        .collect();
    if !missing.is_empty() {
        println!(
            "signers: not measured: {} not on PATH (scripts/test installs them; the AWS ones in target/tools/aws/bin)",
            missing.join(", ")
        );
        return;
    }
    let kms = KmsKey::start();
    let github = FakeGitHub::start().await;
    github.world().public_key = kms.pkcs1();
    let built_in = [("app-id", APP_ID), ("aws-kms-key", kms.arn.as_str())];
    let (runs, calls, trips) = remints(&github, &built_in, &kms.env(), REMINT_RUNS, || {
        kms.moto.requests()
    });
    report(
        &format!(
            "re-mint signed in AWS KMS, built in (moto): {calls:.1} KMS calls, {trips:.1} to GitHub"
        ),
        &runs,
        "",
    );
    // `signer-public-key` takes the DER in base64, as `GetPublicKey` gives it.
    let (command, public) = (kms.command(), STANDARD.encode(&kms.spki));
    let cli = [
        ("app-id", APP_ID),
        ("signer-command", command.as_str()),
        ("signer-public-key", public.as_str()),
    ];
    let (runs, calls, trips) = remints(&github, &cli, &kms.env(), CLI_RUNS, || kms.moto.requests());
    report(
        &format!("re-mint signed by the AWS CLI (moto): {calls:.1} KMS call, {trips:.1} to GitHub"),
        &runs,
        "",
    );

    let hsm = SoftHsm::start();
    let github = FakeGitHub::start().await;
    let command = SoftHsm::command();
    let pkcs11 = [
        ("app-id", APP_ID),
        ("signer-command", command.as_str()),
        ("signer-public-key", APP_PUBLIC_KEY),
    ];
    let (runs, _, trips) = remints(&github, &pkcs11, &hsm.env(), REMINT_RUNS, || 0);
    report(
        &format!("re-mint signed by pkcs11-tool (SoftHSM): {trips:.1} calls to GitHub"),
        &runs,
        "",
    );
}

/// `runs` re-mints (`token-keeper token` with a stale cache) in a job whose main step signed with
/// `inputs`, every step with `env`: the times and peaks, what `calls` counted per re-mint, and
/// GitHub's requests per re-mint.
fn remints(
    github: &FakeGitHub,
    inputs: &[(&str, &str)],
    env: &[(String, String)],
    runs: usize,
    calls: impl Fn() -> usize,
) -> (Vec<(std::time::Duration, u64)>, f64, f64) {
    let mut inputs = inputs.to_vec();
    inputs.push(("git-server-url", "http://127.0.0.1:9"));
    let mut job = Job::new(&github.url());
    job.extra_env.extend(env.iter().cloned());
    // The native entry: the container entry refuses a signer command.
    let main = job.main(&inputs, View::Native);
    main.assert_ok();
    let mut step = LaterStep::after(&job, &main);
    step.env.extend(env.iter().cloned());
    let state = main.state["dir"].clone();
    let (mints, counted, seen) = (github.mints(), calls(), github.world().seen.len());
    let mut measured = Vec::new();
    for _ in 0..runs {
        age_cached_token(&job, &main, 50 * 60);
        let mut command = step.command(binary().to_str().expect("path"));
        command.args(["token", "--state", &state]);
        let m = measure::run(&mut command, b"").expect("token");
        assert_success("token", &m.output);
        measured.push((m.elapsed, m.max_rss_kib.expect("peak memory")));
    }
    assert_eq!(github.mints() - mints, runs, "each run re-minted");
    let per_run = |count: usize| count as f64 / runs as f64;
    let trips = github.world().seen.len() - seen;
    (measured, per_run(calls() - counted), per_run(trips))
}

fn on_path(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|out| out.status.success())
}
