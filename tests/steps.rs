//! The main and post steps, run as the runner runs them, against the fake GitHub.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use wiremock::ResponseTemplate;

use testkit::fake_github::{APP_ID, CLIENT_ID, FakeGitHub, app_inputs};
use testkit::proxy::Proxy;
use testkit::runner::{Job, StepRun, View, is_root};
use testkit::unix_now;

fn state_dir(run: &StepRun) -> PathBuf {
    PathBuf::from(run.state.get("dir").expect("main saved its state dir"))
}

/// The lines of a step's stdout that mention `token`, in order.
fn lines_with<'a>(run: &'a StepRun, token: &str) -> Vec<&'a str> {
    run.stdout.lines().filter(|l| l.contains(token)).collect()
}

#[tokio::test]
async fn main_step_mints_masks_and_exports() {
    let github = FakeGitHub::start().await;
    let job = Job::new(&github.url());
    let run = job.main(&app_inputs(&[]), View::Host);
    run.assert_ok();

    let token = run.outputs["token"].clone();
    assert!(token.starts_with("ghs_"), "{token}");
    assert_eq!(run.outputs["installation-id"], "4242");
    assert_eq!(run.outputs["app-slug"], "keeper-test");
    let expires = humantime::parse_rfc3339(&run.outputs["expires-at"]).expect("RFC 3339");
    let expires = expires
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((expires - (unix_now() + 3600)).abs() < 10);

    // The masks come first (the App's JWTs', then the token's), and the token shows nowhere
    // else in the log.
    let masks = run
        .stdout
        .lines()
        .take_while(|l| l.starts_with("::add-mask::"))
        .count();
    assert!(masks >= 2, "{}", run.stdout);
    assert_eq!(lines_with(&run, &token), [format!("::add-mask::{token}")]);
    let mask = run.stdout.find(&format!("::add-mask::{token}")).unwrap();
    assert!(
        !run.stdout[..mask].contains("token-keeper:"),
        "{}",
        run.stdout
    );
    assert!(!run.stderr.contains(&token));
    assert!(!run.summary.contains(&token));
    assert!(run.summary.contains("sha256:"), "{}", run.summary);

    // No owner and no repositories: the current repository only.
    assert_eq!(github.seen("GET", "/repos/").len(), 1);
    assert_eq!(
        github.seen("GET", "/repos/")[0].path,
        "/repos/Octo-Org/app/installation"
    );
    let posts = github.seen("POST", "/app/installations/4242/access_tokens");
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].body, serde_json::json!({"repositories": ["app"]}));
    assert_eq!(posts[0].claims.as_ref().unwrap()["iss"], APP_ID);
}

#[tokio::test]
async fn post_step_revokes_every_recorded_token_and_removes_the_state() {
    let github = FakeGitHub::start().await;
    let job = Job::new(&github.url());
    let main = job.main(&app_inputs(&[]), View::Host);
    main.assert_ok();
    let dir = state_dir(&main);
    assert!(dir.join("ledger").exists());

    let post = job.post(&app_inputs(&[]), &main.state, View::Host);
    post.assert_ok();
    assert!(
        github.world().live_tokens().is_empty(),
        "the token was revoked"
    );
    assert_eq!(github.seen("DELETE", "/installation/token").len(), 1);
    assert!(!dir.exists(), "state removed");
    assert!(!post.log().contains(&main.outputs["token"]));
    assert_eq!(github.mints(), 1, "a post step never mints");
}

#[tokio::test]
async fn a_post_step_without_state_variables_finds_the_steps_state_and_revokes() {
    // nektos/act gives a container action's post step no `STATE_*`.
    let github = FakeGitHub::start().await;
    let job = Job::new(&github.url());
    let main = job.main(&app_inputs(&[]), View::Host);
    main.assert_ok();
    let dir = state_dir(&main);
    let other = job.main_as("other", &app_inputs(&[("owner", "Other-Org")]), View::Host);
    other.assert_ok();

    let post = job.post(&app_inputs(&[]), &BTreeMap::new(), View::Host);
    post.assert_ok();
    assert!(post.stdout.contains("no `STATE_dir`"), "{}", post.log());
    assert!(!dir.exists(), "state removed");
    let live: Vec<u64> = github
        .world()
        .live_tokens()
        .iter()
        .map(|t| t.installation)
        .collect();
    assert_eq!(
        live,
        [4343],
        "this step's token revoked, the other step's left alone"
    );
}

#[tokio::test]
async fn post_step_warns_of_a_token_someone_else_revoked_as_the_official_action_does() {
    let github = FakeGitHub::start().await;
    let job = Job::new(&github.url());
    let main = job.main(&app_inputs(&[]), View::Host);
    main.assert_ok();
    github.world().issued[0].revoked = true;
    // Still live by its expiry, so post tries; GitHub answers 401.
    let post = job.post(&app_inputs(&[]), &main.state, View::Host);
    post.assert_ok();
    let warnings: Vec<&str> = post
        .stdout
        .lines()
        .filter(|l| l.starts_with("::warning"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", post.log());
    assert!(warnings[0].contains("401"), "{}", warnings[0]);
    assert!(
        warnings[0].contains("revoked already or has expired"),
        "{}",
        warnings[0]
    );
}

#[tokio::test]
async fn post_step_leaves_an_expired_token_alone_quietly() {
    let github = FakeGitHub::start().await;
    let job = Job::new(&github.url());
    let main = job.main(&app_inputs(&[]), View::Host);
    main.assert_ok();
    token_keeper::backdate_ledger(&state_dir(&main), 3660).unwrap();
    let post = job.post(&app_inputs(&[]), &main.state, View::Host);
    post.assert_ok();
    assert!(github.seen("DELETE", "/installation/token").is_empty());
    assert!(!post.log().contains("::warning"), "{}", post.log());
}

#[tokio::test]
async fn skip_token_revoke_leaves_the_token_but_removes_the_state() {
    let github = FakeGitHub::start().await;
    let job = Job::new(&github.url());
    let inputs = app_inputs(&[("skip-token-revoke", "true")]);
    let main = job.main(&inputs, View::Host);
    main.assert_ok();
    let post = job.post(&inputs, &main.state, View::Host);
    post.assert_ok();
    assert_eq!(github.world().live_tokens().len(), 1);
    assert!(!state_dir(&main).exists());
}

#[tokio::test]
async fn post_after_a_failed_main_mints_nothing_and_succeeds() {
    let github = FakeGitHub::start().await;
    let job = Job::new(&github.url());
    // Fails after saving its state: the App is not installed there.
    let main = job.main(&app_inputs(&[("owner", "nobody")]), View::Host);
    assert_eq!(main.status.code(), Some(1));
    assert_eq!(
        github.seen("GET", "/users/nobody/installation").len(),
        1,
        "404 is not retried"
    );
    let post = job.post(&app_inputs(&[("owner", "nobody")]), &main.state, View::Host);
    post.assert_ok();
    // Fails before anything: bad key.
    let main = job.main(&app_inputs(&[("private-key", "nonsense")]), View::Host);
    assert_eq!(main.status.code(), Some(1));
    assert!(main.state.is_empty());
    let post = job.post(
        &app_inputs(&[("private-key", "nonsense")]),
        &main.state,
        View::Host,
    );
    post.assert_ok();
    assert_eq!(github.mints(), 0);
    assert!(github.seen("POST", "/").is_empty());
}

#[tokio::test]
async fn errors_are_one_annotation_line_that_says_what_to_do() {
    let github = FakeGitHub::start().await;
    let job = Job::new(&github.url());
    let cases: [(Vec<(&str, &str)>, &str); 4] = [
        (
            app_inputs(&[("owner", "nobody")]),
            "the App is not installed on `nobody`: install it at https://github.com/apps/keeper-test/installations/new",
        ),
        (
            app_inputs(&[("repositories", "elsewhere")]),
            "the App is not installed on `Octo-Org/elsewhere`: install it at",
        ),
        (
            app_inputs(&[("permission-issues", "write")]),
            "check that the installation on `Octo-Org` can reach repositories `app` and that the App is granted `issues: write`",
        ),
        (
            vec![
                ("app-id", APP_ID),
                ("private-key", include_str!("fixtures/openssh-key")),
            ],
            "input `private-key`: the private key is an OpenSSH key",
        ),
    ];
    for (inputs, expected) in cases {
        let run = job.main(&inputs, View::Host);
        let error = run.the_error();
        assert!(error.contains(expected), "{error}\nwanted: {expected}");
        assert!(
            !run.log().contains("PRIVATE KEY-----\n"),
            "the key is never echoed"
        );
    }
    assert_eq!(github.mints(), 0);
}

#[tokio::test]
async fn lookup_and_request_follow_the_inputs() {
    let github = FakeGitHub::start().await;
    let job = Job::new(&github.url());
    job.main(&app_inputs(&[("owner", "octo-org")]), View::Host)
        .assert_ok();
    job.main(&app_inputs(&[("repositories", "lib\napp")]), View::Host)
        .assert_ok();
    job.main(
        &app_inputs(&[("client-id", CLIENT_ID), ("permission-contents", "read")]),
        View::Host,
    )
    .assert_ok();
    let enterprise = job.main(&app_inputs(&[("enterprise", "acme")]), View::Host);
    assert!(
        enterprise
            .stdout
            .contains("no installation of the App on the enterprise `acme`"),
        "{}",
        enterprise.log()
    );

    let lookups: Vec<String> = github
        .world()
        .seen
        .iter()
        .filter(|s| s.path.ends_with("/installation"))
        .map(|s| s.path.clone())
        .collect();
    assert_eq!(
        lookups,
        [
            "/users/octo-org/installation",
            "/repos/Octo-Org/lib/installation",
            "/repos/Octo-Org/app/installation",
            "/enterprises/acme/installation"
        ]
    );
    let bodies: Vec<serde_json::Value> = github
        .seen("POST", "/app/")
        .into_iter()
        .map(|s| s.body)
        .collect();
    assert_eq!(
        bodies,
        [
            serde_json::json!({}),
            serde_json::json!({"repositories": ["lib", "app"]}),
            serde_json::json!({"repositories": ["app"], "permissions": {"contents": "read"}}),
        ]
    );
    assert_eq!(
        github.seen("POST", "/app/")[2].claims.as_ref().unwrap()["iss"],
        CLIENT_ID
    );
    let granted = github.world().issued[2].permissions.clone();
    assert_eq!(
        granted,
        BTreeMap::from([("contents".into(), "read".into())])
    );
}

#[tokio::test]
async fn permission_inputs_not_in_githubs_list_go_to_github_with_a_warning() {
    let github = FakeGitHub::start().await;
    let job = Job::new(&github.url());
    // The underscore spelling, which the runner passes though `action.yml` declares none.
    let run = job.main(
        &app_inputs(&[("permission-pull_requests", "write")]),
        View::Host,
    );
    run.assert_ok();
    assert!(!run.stdout.contains("::warning"), "{}", run.log());
    let posts = github.seen("POST", "/app/installations/4242/access_tokens");
    assert_eq!(
        posts[0].body["permissions"],
        serde_json::json!({"pull_requests": "write"})
    );

    // A name GitHub does not list: asked for, with a warning; GitHub's 422 decides.
    let run = job.main(&app_inputs(&[("permission-telepathy", "read")]), View::Host);
    let warning = run
        .stdout
        .lines()
        .find(|l| l.starts_with("::warning"))
        .unwrap_or("");
    assert!(
        warning.contains("`telepathy` is not a permission GitHub lists"),
        "{}",
        run.log()
    );
    assert!(
        run.the_error().contains("`permission-telepathy`"),
        "{}",
        run.log()
    );
    let posts = github.seen("POST", "/app/installations/4242/access_tokens");
    assert_eq!(
        posts[1].body["permissions"],
        serde_json::json!({"telepathy": "read"})
    );
}

#[tokio::test]
async fn a_custom_api_url_with_api_v3_is_used_and_gives_the_git_server() {
    let github = FakeGitHub::start().await;
    let api = format!("{}/api/v3", github.url());
    let job = Job::new(&api);
    let run = job.main(
        &[
            ("app-id", APP_ID),
            ("private-key", testkit::fake_github::APP_KEY),
            ("github-api-url", &api),
        ],
        View::Host,
    );
    run.assert_ok();
    assert_eq!(
        github
            .seen("POST", "/app/installations/4242/access_tokens")
            .len(),
        1
    );
    let received = github.server.received_requests().await.unwrap_or_default();
    assert!(
        received
            .iter()
            .all(|r| r.url.path().starts_with("/api/v3/"))
    );
    // The git server is the API's host, as on GitHub Enterprise Server.
    assert_eq!(
        run.env["GIT_CONFIG_KEY_1"],
        format!("credential.{}/Octo-Org/app.helper", github.url())
    );
}

#[tokio::test]
async fn export_env_hands_the_token_to_later_steps() {
    let github = FakeGitHub::start().await;
    let job = Job::new(&github.url());
    let run = job.main(
        &app_inputs(&[("export-env", "GH_TOKEN, OTHER")]),
        View::Host,
    );
    run.assert_ok();
    assert_eq!(run.env["GH_TOKEN"], run.outputs["token"]);
    assert_eq!(run.env["OTHER"], run.outputs["token"]);
}

#[tokio::test]
async fn the_bot_identity_is_an_output_and_on_request_the_git_author() {
    let github = FakeGitHub::start().await;
    let job = Job::new(&github.url());
    let run = job.main(&app_inputs(&[]), View::Host);
    run.assert_ok();
    assert_eq!(run.outputs["app-user-id"], "41898282");
    assert_eq!(run.outputs["git-user-name"], "keeper-test[bot]");
    assert_eq!(
        run.outputs["git-user-email"],
        "41898282+keeper-test[bot]@users.noreply.github.com"
    );
    assert!(!run.env.contains_key("GIT_AUTHOR_NAME"), "only on request");
    // The identity comes with the new token's check: three round trips in all.
    assert_eq!(github.world().seen.len(), 3);

    let run = job.main(&app_inputs(&[("git-identity", "true")]), View::Host);
    run.assert_ok();
    for who in ["AUTHOR", "COMMITTER"] {
        assert_eq!(run.env[&format!("GIT_{who}_NAME")], "keeper-test[bot]");
        assert_eq!(
            run.env[&format!("GIT_{who}_EMAIL")],
            "41898282+keeper-test[bot]@users.noreply.github.com"
        );
    }
}

#[tokio::test]
async fn clock_skew_is_corrected_once_and_kept() {
    for offset in [600_i64, -600] {
        let github = FakeGitHub::start().await;
        github.world().clock_offset = offset;
        let job = Job::new(&github.url());
        job.main(&app_inputs(&[]), View::Host).assert_ok();
        let seen: Vec<_> = github
            .world()
            .seen
            .iter()
            .filter(|s| s.claims.is_some())
            .cloned()
            .collect();
        // The lookup is refused once, then every JWT carries GitHub's time.
        assert_eq!(seen.len(), 3, "{seen:#?}");
        let server_now = unix_now() + offset;
        for corrected in &seen[1..] {
            let iat = corrected.claims.as_ref().unwrap()["iat"].as_i64().unwrap();
            assert!(
                (iat - (server_now - 60)).abs() <= 5,
                "offset {offset}: iat {iat}"
            );
        }
        let first_iat = seen[0].claims.as_ref().unwrap()["iat"].as_i64().unwrap();
        assert!((first_iat - (unix_now() - 60)).abs() <= 5);
    }
}

#[tokio::test]
async fn server_errors_are_retried_and_client_errors_are_not() {
    let github = FakeGitHub::start().await;
    for status in [500, 502, 503] {
        github.fail_next("/repos/", ResponseTemplate::new(status));
    }
    github.fail_next(
        "/app/installations",
        ResponseTemplate::new(429).insert_header("retry-after", "1"),
    );
    let job = Job::new(&github.url());
    let started = Instant::now();
    job.main(&app_inputs(&[]), View::Host).assert_ok();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was honoured"
    );
    assert_eq!(github.seen("GET", "/repos/").len(), 4);
    assert_eq!(github.seen("POST", "/app/").len(), 2);

    github.fail_next("/repos/", ResponseTemplate::new(422));
    let run = job.main(&app_inputs(&[]), View::Host);
    assert_eq!(run.status.code(), Some(1));
    assert_eq!(github.seen("GET", "/repos/").len(), 5, "422 is not retried");
}

#[tokio::test]
async fn a_hanging_server_is_cut_off_by_the_read_timeout_and_retried() {
    let github = FakeGitHub::start().await;
    github.fail_next(
        "/repos/",
        ResponseTemplate::new(200).set_delay(Duration::from_secs(20)),
    );
    let mut job = Job::new(&github.url());
    job.extra_env
        .insert("TOKEN_KEEPER_READ_TIMEOUT".into(), "1s".into());
    let started = Instant::now();
    job.main(&app_inputs(&[]), View::Host).assert_ok();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(github.seen("GET", "/repos/").len(), 2);
}

#[tokio::test]
async fn an_unreachable_api_fails_within_the_deadline() {
    let mut job = Job::new("http://127.0.0.1:9");
    job.extra_env
        .insert("TOKEN_KEEPER_DEADLINE".into(), "2s".into());
    let started = Instant::now();
    let run = job.main(&app_inputs(&[]), View::Host);
    assert_eq!(run.status.code(), Some(1));
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    assert!(
        run.stdout
            .contains("got no usable answer within the 2s allowed"),
        "{}",
        run.stdout
    );
}

#[tokio::test]
async fn requests_go_through_the_proxy() {
    let github = FakeGitHub::start().await;
    let proxy = Proxy::start();
    let mut job = Job::new(&github.url());
    job.extra_env.insert("http_proxy".into(), proxy.url.clone());
    job.main(&app_inputs(&[]), View::Host).assert_ok();
    let seen = proxy.seen();
    assert!(!seen.is_empty());
    assert!(
        seen[0].starts_with(&format!(
            "GET {}/repos/Octo-Org/app/installation",
            github.url()
        )),
        "{seen:?}"
    );

    job.extra_env.insert("NO_PROXY".into(), "127.0.0.1".into());
    let before = proxy.seen().len();
    job.main(&app_inputs(&[]), View::Host).assert_ok();
    assert_eq!(proxy.seen().len(), before, "NO_PROXY is honoured");
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn in_the_container_state_goes_to_the_runner_user() {
    if !is_root() {
        eprintln!("skipped: needs root for a mount namespace");
        return;
    }
    for (view, relative) in [
        (View::Container, "token-keeper"),
        (View::OldContainer, "_github_home/token-keeper"),
    ] {
        let github = FakeGitHub::start().await;
        let job = Job::new(&github.url());
        job.chown_all(1001);
        let main = job.main(&app_inputs(&[]), view);
        main.assert_ok();
        let host_dir = job.temp.join(relative).join("step-__org_token-keeper");
        let ledger = host_dir.join("ledger");
        assert!(ledger.exists(), "{view:?}: {}", main.log());
        for (path, expected) in [(&host_dir, 0o700), (&ledger, 0o600)] {
            assert_eq!(mode(path), expected, "{}", path.display());
            assert_eq!(
                fs::metadata(path).unwrap().uid(),
                1001,
                "{}",
                path.display()
            );
        }
        assert!(
            main.state["dir"].starts_with("/github/"),
            "{:?}",
            main.state
        );
        let post = job.post(&app_inputs(&[]), &main.state, view);
        post.assert_ok();
        assert!(github.world().live_tokens().is_empty());
        assert!(!host_dir.exists());
    }
}

#[tokio::test]
async fn risky_events_get_a_warning_about_the_stored_key() {
    let github = FakeGitHub::start().await;
    let mut job = Job::new(&github.url());
    job.extra_env
        .insert("GITHUB_EVENT_NAME".into(), "pull_request_target".into());
    let run = job.main(&app_inputs(&[]), View::Host);
    run.assert_ok();
    assert!(
        run.stdout
            .contains("::warning title=token-keeper::this `pull_request_target` job"),
        "{}",
        run.stdout
    );
    let quiet = job.main(&app_inputs(&[("git-credentials", "false")]), View::Host);
    assert!(
        !quiet.stdout.contains("::warning"),
        "no key stored, nothing to warn about"
    );
}

#[tokio::test]
async fn a_brand_new_token_briefly_refused_is_checked_again() {
    let github = FakeGitHub::start().await;
    github.world().refuse_new_tokens = 2;
    let job = Job::new(&github.url());
    let run = job.main(&app_inputs(&[]), View::Host);
    run.assert_ok();
    assert_eq!(github.seen("GET", "/users/keeper-test%5Bbot%5D").len(), 3);
    assert!(!run.stdout.contains("::warning"), "{}", run.stdout);
    assert_eq!(run.outputs["app-user-id"], "41898282");
}
