//! Nothing minted is ever lost: every token GitHub hands over is recorded and revoked, whatever
//! goes wrong around it, and no odd answer reaches git or another host.

use std::fs;
use std::time::{Duration, Instant};

use wiremock::{MockServer, ResponseTemplate};

use testkit::assert_success;
use testkit::fake_github::{FakeGitHub, app_inputs};
use testkit::runner::{Job, LaterStep, View, age_cached_token};
use testkit::unix_now;

#[tokio::test]
async fn an_answer_with_an_unreadable_expiry_is_recorded_and_revoked() {
    let github = FakeGitHub::start().await;
    github.world().edit_mint_answer = Some(|answer| answer["expires_at"] = "soon".into());
    let job = Job::new(&github.url());
    let main = job.main(&app_inputs(&[]), View::Host);
    main.assert_ok();
    let expires = humantime::parse_rfc3339(&main.outputs["expires-at"]).unwrap();
    let expires = expires
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (expires - (unix_now() + 3600)).abs() < 10,
        "an hour, as usual"
    );
    job.post(&app_inputs(&[]), &main.state, View::Host)
        .assert_ok();
    assert!(github.world().live_tokens().is_empty(), "revoked");
}

#[tokio::test]
async fn a_token_that_cannot_be_recorded_is_revoked_at_once() {
    let github = FakeGitHub::start().await;
    let job = Job::new(&github.url());
    // The ledger cannot be written: a folder stands where it goes.
    let step = job.temp.join("token-keeper/step-__org_token-keeper");
    fs::create_dir_all(step.join("ledger")).unwrap();
    let main = job.main(&app_inputs(&[]), View::Host);
    let error = main.the_error();
    assert!(error.contains("cannot record the new token"), "{error}");
    assert_eq!(
        error.matches("os error").count(),
        1,
        "the cause once: {error}"
    );
    let world = github.world();
    assert_eq!(world.issued.len(), 1);
    assert!(world.issued[0].revoked, "revoked by the main step itself");
    assert!(!main.outputs.contains_key("token"));
}

#[tokio::test]
async fn a_token_with_a_line_break_fails_the_step_at_once() {
    let github = FakeGitHub::start().await;
    github.world().edit_mint_answer = Some(|answer| {
        let token = answer["token"].as_str().unwrap_or_default().to_owned();
        answer["token"] = format!("{token}\r\npassword=planted").into();
    });
    let job = Job::new(&github.url());
    let started = Instant::now();
    let main = job.main(&app_inputs(&[]), View::Host);
    assert!(
        main.the_error()
            .contains("its token has characters no token has"),
        "{}",
        main.log()
    );
    assert!(started.elapsed() < Duration::from_secs(5), "not retried");
    assert!(!main.log().contains("planted"));
    assert!(main.outputs.is_empty() && main.env.is_empty());
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let github = FakeGitHub::start().await;
    let elsewhere = MockServer::start().await;
    github.fail_next(
        "/app/installations",
        ResponseTemplate::new(307).insert_header(
            "location",
            format!("{}/app/installations/4242/access_tokens", elsewhere.uri()).as_str(),
        ),
    );
    let job = Job::new(&github.url());
    let main = job.main(&app_inputs(&[]), View::Host);
    assert!(main.the_error().contains("307"), "{}", main.log());
    let received = elsewhere.received_requests().await.unwrap_or_default();
    assert!(received.is_empty(), "sent elsewhere: {received:?}");
}

#[tokio::test]
async fn a_damaged_ledger_line_does_not_stop_revocation() {
    let github = FakeGitHub::start().await;
    let job = Job::new(&github.url());
    let main = job.main(&app_inputs(&[]), View::Host);
    main.assert_ok();
    let ledger = job.host_path(&main.state["dir"]).join("ledger");
    let mut bytes = fs::read(&ledger).unwrap();
    bytes.extend_from_slice(b"\xff\xfe\x00 damaged\n");
    fs::write(&ledger, bytes).unwrap();
    // A re-mint appends after the damage.
    age_cached_token(&job, &main, 50 * 60);
    let step = LaterStep::after(&job, &main);
    let out = step.command("token-keeper").arg("token").output().unwrap();
    assert_success("token", &out);
    assert_eq!(github.world().live_tokens().len(), 2);

    job.post(&app_inputs(&[]), &main.state, View::Host)
        .assert_ok();
    assert!(github.world().live_tokens().is_empty(), "both revoked");
    assert!(!job.temp.join("token-keeper").exists(), "state removed");
}
