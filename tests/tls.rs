//! The main step against an HTTPS API behind a private CA: real handshakes, through a TLS front.

use testkit::fake_github::{FakeGitHub, app_inputs};
use testkit::proxy::Proxy;
use testkit::runner::{Job, StepRun, View};
use testkit::tls::{TestCa, TlsFront};

/// A job against `front`, with a short deadline in case a refusal ever turns into retries.
fn job_for(front: &TlsFront) -> Job {
    let mut job = Job::new(&front.url());
    job.extra_env
        .insert("TOKEN_KEEPER_DEADLINE".into(), "2s".into());
    job
}

fn assert_minted(github: &FakeGitHub, run: &StepRun) {
    run.assert_ok();
    assert!(
        run.outputs["token"].starts_with("ghs_"),
        "{:?}",
        run.outputs
    );
    assert_eq!(github.mints(), 1);
}

/// Refused for the certificate (rustls's `reason`) at once, with a hint: the front was reached
/// once, no handshake completed, nothing minted.
fn assert_untrusted(github: &FakeGitHub, front: &TlsFront, run: &StepRun, reason: &str) {
    let error = run.the_error();
    assert!(
        error.contains(&format!("invalid peer certificate: {reason}")),
        "{error}"
    );
    assert!(
        error.contains("cannot trust the TLS certificate of https://localhost:"),
        "{error}"
    );
    assert!(error.contains("`ca-certificates` input"), "{error}");
    assert_eq!(
        front.connections(),
        1,
        "the front was reached once: no retry"
    );
    assert_eq!(front.handshakes(), 0);
    assert_eq!(github.mints(), 0);
}

#[tokio::test]
async fn a_private_ca_given_as_input_is_trusted() {
    let github = FakeGitHub::start().await;
    let front = TlsFront::start(&github.url());
    let job = job_for(&front);
    let ca = front.ca_pem();
    let run = job.main(&app_inputs(&[("ca-certificates", &ca)]), View::Host);
    assert_minted(&github, &run);
    assert!(front.handshakes() > 0, "the API was reached over TLS");
}

#[tokio::test]
async fn a_private_ca_in_ssl_cert_file_is_trusted() {
    let github = FakeGitHub::start().await;
    let front = TlsFront::start(&github.url());
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = dir.path().join("ca.pem");
    front.write_ca(&bundle);
    let mut job = job_for(&front);
    job.extra_env.insert(
        "SSL_CERT_FILE".into(),
        bundle.to_string_lossy().into_owned(),
    );
    let run = job.main(&app_inputs(&[]), View::Host);
    assert_minted(&github, &run);
}

#[tokio::test]
async fn without_the_ca_the_certificate_is_refused() {
    let github = FakeGitHub::start().await;
    let front = TlsFront::start(&github.url());
    let run = job_for(&front).main(&app_inputs(&[]), View::Host);
    assert_untrusted(&github, &front, &run, "UnknownIssuer");
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    let github = FakeGitHub::start().await;
    let trusted = TestCa::new("token-keeper test CA");
    let ca = trusted.pem();
    // Another CA's name is not found at all; an impostor with the trusted CA's name is found,
    // and only its signature gives it away.
    for (name, reason) in [
        ("another CA", "UnknownIssuer"),
        ("token-keeper test CA", "BadSignature"),
    ] {
        let front = TlsFront::signed_by(&github.url(), &TestCa::new(name));
        let run = job_for(&front).main(&app_inputs(&[("ca-certificates", &ca)]), View::Host);
        assert_untrusted(&github, &front, &run, reason);
    }
}

#[tokio::test]
async fn tls_goes_through_a_proxy_tunnel() {
    let github = FakeGitHub::start().await;
    let front = TlsFront::start(&github.url());
    let proxy = Proxy::start();
    let mut job = job_for(&front);
    job.extra_env
        .insert("HTTPS_PROXY".into(), proxy.url.clone());
    let ca = front.ca_pem();
    let run = job.main(&app_inputs(&[("ca-certificates", &ca)]), View::Host);
    assert_minted(&github, &run);
    let tunnel = format!(
        "CONNECT {} HTTP/1.1",
        front.url().trim_start_matches("https://")
    );
    let seen = proxy.seen();
    assert!(!seen.is_empty(), "the proxy carried the requests");
    assert!(seen.iter().all(|line| *line == tunnel), "{seen:?}");
}

#[tokio::test]
async fn a_ca_input_that_is_not_pem_is_named() {
    let github = FakeGitHub::start().await;
    let front = TlsFront::start(&github.url());
    let run = job_for(&front).main(&app_inputs(&[("ca-certificates", "hello")]), View::Host);
    let error = run.the_error();
    assert!(error.contains("`ca-certificates`"), "{error}");
    assert_eq!(front.connections(), 0, "refused before any connection");
    assert_eq!(github.mints(), 0);
}
