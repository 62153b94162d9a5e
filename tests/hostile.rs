//! A hostile or broken server, and a careless later step: what a server says reaches the log only
//! cleaned and never starts a line of its own, nothing we send it is ever shown, and the names it
//! gives are checked before they decide any scope.

use std::time::Duration;

use proptest::prelude::*;
use serde_json::{Value, json};
use wiremock::ResponseTemplate;

use testkit::assert_success;
use testkit::fake_github::{FakeGitHub, app_inputs, message};
use testkit::logs::{
    MARK, altered, assert_no_line_of_theirs, assert_no_part_shown, assert_no_secret_shown, text,
};
use testkit::runner::{Job, LaterStep, StepRun, View, age_cached_token, expire_cached_token};
use testkit::scene::{KeylessScene, Scene};

/// A job whose server answers `says`, and quotes the credentials it was sent, wherever it can:
/// a failed main step, a re-mint refused in `token` (the cached token serves), git's helper and
/// `exec` reading that failure from the state, `token` with no valid token left, and a refused
/// revocation in the post step. What each showed (for `token`, its stderr: its stdout is the
/// token), and every credential the server saw.
struct HostileJob {
    logs: Vec<(&'static str, String)>,
    secrets: Vec<String>,
}

async fn a_job_whose_server_says(says: &str) -> HostileJob {
    let scene = Scene::start(Duration::from_secs(3600)).await;
    let (github, job) = (&scene.github, &scene.job);
    let inputs = scene.inputs(&[]);
    let says = says.to_owned();
    let say = |path: &str| {
        let says = says.clone();
        github.answer_next(path, move |bearer| {
            message(403, &format!("{says} {bearer}"))
        });
    };
    let stderr =
        |output: &std::process::Output| String::from_utf8_lossy(&output.stderr).into_owned();
    let mut logs = Vec::new();

    say("/repos/");
    let failed = job.main(&inputs, View::Host);
    assert_eq!(failed.status.code(), Some(1), "{}", failed.log());
    logs.push(("failed main step", failed.log()));

    let main = job.main(&inputs, View::Host);
    main.assert_ok();
    logs.push(("main step", main.log()));
    age_cached_token(job, &main, 50 * 60);
    let step = LaterStep::after(job, &main);
    say("/app/installations/");
    let token = step.command("token-keeper").arg("token").output().unwrap();
    assert_success("token", &token);
    logs.push(("token", stderr(&token)));
    let helper = step.git(&["ls-remote", &scene.repo_url("Octo-Org", "app")]);
    assert_success("git's helper", &helper);
    logs.push(("git's helper", text(&helper)));
    let exec = step
        .command("token-keeper")
        .args(["exec", "--", "true"])
        .output()
        .unwrap();
    logs.push(("exec", text(&exec)));

    expire_cached_token(job, &main);
    say("/app/installations/");
    let expired = step.command("token-keeper").arg("token").output().unwrap();
    assert!(!expired.status.success(), "{}", text(&expired));
    logs.push(("token, none valid", text(&expired)));

    for _ in 0..2 {
        say("/installation/token");
    }
    let post = job.post(&inputs, &main.state, View::Host);
    post.assert_ok();
    logs.push(("post step", post.log()));
    HostileJob {
        logs,
        secrets: github.bearers(),
    }
}

/// Line breaks and commands in the forms the runner reads, escape sequences, and what GitHub's
/// log viewer would break lines at.
fn hostile_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("\n".to_owned()),
        Just("\r".to_owned()),
        Just("\r\n".to_owned()),
        Just(format!("::stop-commands::{MARK}")),
        Just(format!("  ::add-mask::{MARK}")),
        Just(format!("##[stop-commands]{MARK}")),
        Just(format!("%0A::warning::{MARK}")),
        Just(format!("\u{1b}[2K\u{1b}[1G{MARK}")),
        Just(format!("\u{2028}{MARK}\u{2029}\u{85}")),
        Just("`|".to_owned()),
        "[a-zA-Z ]{1,6}",
    ];
    proptest::collection::vec(piece, 1..8).prop_map(|pieces| format!("{}\n{MARK}", pieces.concat()))
}

#[test]
fn no_server_text_starts_a_line_or_a_command_and_no_secret_shows() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 8,
        max_shrink_iters: 16,
        ..ProptestConfig::default()
    });
    let fixed = format!("stopped\n::stop-commands::{MARK}\r##[add-mask]x\u{1b}[31m");
    let checked = |says: String| {
        let job = runtime.block_on(a_job_whose_server_says(&says));
        for (what, log) in &job.logs {
            assert_no_line_of_theirs(what, log);
            assert_no_secret_shown(what, log, &job.secrets);
        }
        Ok(())
    };
    checked(fixed).unwrap();
    runner.run(&hostile_text(), checked).unwrap();
}

#[tokio::test]
async fn a_mask_line_printed_beside_a_childs_unfinished_line_starts_a_line_of_its_own() {
    let github = FakeGitHub::start().await;
    github.world().token_lifetime = Duration::from_secs(3);
    let job = Job::new(&github.url());
    let main = job.main(&app_inputs(&[]), View::Host);
    main.assert_ok();
    let step = LaterStep::after(&job, &main);
    // A progress bar: no line break while the token is re-minted under it.
    let child = "printf 'progress 50%%' >&2; sleep 4; printf ' done\\n' >&2";
    let out = step
        .command("token-keeper")
        .args(["exec", "--keep-fresh", "--", "sh", "-c", child])
        .env("GITHUB_ACTIONS", "true")
        .output()
        .unwrap();
    assert_success("exec", &out);
    assert!(github.mints() >= 2, "re-minted while the child ran");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("::add-mask::"),
        "the re-minted token is masked: {stderr:?}"
    );
    for (at, _) in stderr.match_indices("::add-mask::") {
        assert!(
            at == 0 || stderr[..at].ends_with('\n'),
            "a mask line inside another line: {stderr:?}"
        );
    }
    let tokens = github.tokens();
    assert_no_secret_shown("keep-fresh", &stderr, &tokens);
}

#[tokio::test]
async fn a_server_quoting_the_apps_jwt_shows_none_of_it() {
    let quoting =
        |status| move |bearer: &str| message(status, &format!("Bad credentials: {bearer}"));
    let github = FakeGitHub::start().await;
    let job = Job::new(&github.url());
    let mut slow = Job::new(&github.url());
    slow.extra_env
        .insert("TOKEN_KEEPER_DEADLINE".into(), "1s".into());
    let refused = || {
        github.answer_next("/repos/", quoting(401));
        job.main(&app_inputs(&[]), View::Host)
    };
    // Repeated until the deadline, whose error quotes the last answer.
    let late = || {
        for _ in 0..50 {
            github.answer_next("/repos/", quoting(500));
        }
        slow.main(&app_inputs(&[]), View::Host)
    };
    for (what, step) in [
        ("refused", &refused as &dyn Fn() -> StepRun),
        ("deadline", &late),
    ] {
        let before = github.bearers().len();
        let run = step();
        let error = run.the_error();
        assert!(error.contains("Bad credentials"), "{what}: {error}");
        let sent: Vec<String> = github.bearers()[before..].to_vec();
        assert!(sent.iter().all(|b| b.starts_with("eyJ")), "{sent:?}");
        assert_no_secret_shown(what, &run.log(), &sent);
        for jwt in &sent {
            assert!(
                run.stdout.contains(&format!("::add-mask::{jwt}\n")),
                "{what}: the JWT is masked before it is sent"
            );
        }
    }
}

#[tokio::test]
async fn a_server_quoting_our_jwt_altered_shows_no_part_of_it() {
    let github = FakeGitHub::start().await;
    let job = Job::new(&github.url());
    let forms = altered("x").len();
    for at in 0..forms {
        github.answer_next("/repos/", move |bearer| {
            let (how, form) = altered(bearer).swap_remove(at);
            message(401, &format!("Bad credentials ({how}): {form}"))
        });
        let before = github.bearers().len();
        let run = job.main(&app_inputs(&[]), View::Host);
        assert!(run.the_error().contains("Bad credentials"), "{}", run.log());
        let sent = github.bearers()[before..].to_vec();
        assert!(sent.iter().all(|b| b.starts_with("eyJ")), "{sent:?}");
        assert_no_part_shown(&format!("form {at}"), &run.log(), &sent);
    }
}

#[tokio::test]
async fn an_exchange_quoting_the_identity_token_altered_shows_no_part_of_it() {
    let k = KeylessScene::start().await;
    let sts = k.sts.url();
    for at in 0..altered("x").len() {
        k.sts.world().answer_next = Some(Box::new(move |identity: &str| {
            let (how, form) = altered(identity).swap_remove(at);
            message(403, &format!("not this identity ({how}): {form}"))
        }));
        let run = k.job.main(&k.inputs(&sts, &[]), View::Host);
        assert!(
            run.the_error().contains("not this identity"),
            "{}",
            run.log()
        );
        let identities = k.sts.world().identities.clone();
        assert_no_part_shown(&format!("form {at}"), &run.log(), &identities);
    }
}

#[tokio::test]
async fn a_megabyte_message_is_quoted_in_a_few_hundred_characters() {
    let github = FakeGitHub::start().await;
    let job = Job::new(&github.url());
    let long = "no ".repeat(300_000);
    github.answer_next("/repos/", move |_| message(401, &long));
    let run = job.main(&app_inputs(&[]), View::Host);
    let error = run.the_error();
    assert!(error.len() < 1000, "{} characters", error.len());
    assert!(error.contains("no no no") && error.contains('…'), "{error}");
}

#[tokio::test]
async fn a_remint_refusal_quoting_the_jwt_shows_none_of_it_here_or_later() {
    let scene = Scene::start(Duration::from_secs(3600)).await;
    let (github, job) = (&scene.github, &scene.job);
    let main = job.main(&scene.inputs(&[]), View::Host);
    main.assert_ok();
    age_cached_token(job, &main, 50 * 60);
    let step = LaterStep::after(job, &main);
    github.answer_next("/app/installations/", |bearer| {
        message(403, &format!("this JWT is not welcome here: {bearer}"))
    });
    let token = step.command("token-keeper").arg("token").output().unwrap();
    assert!(text(&token).contains("not welcome"), "{}", text(&token));
    // Another process reads the failure from the state.
    let helper = step.git(&["ls-remote", &scene.repo_url("Octo-Org", "app")]);
    assert!(text(&helper).contains("not welcome"), "{}", text(&helper));
    let state =
        std::fs::read_to_string(job.host_path(&main.state["dir"]).join("state.json")).unwrap();
    let jwts: Vec<String> = github
        .bearers()
        .into_iter()
        .filter(|b| b.starts_with("eyJ"))
        .collect();
    assert_no_secret_shown("token", &text(&token), &jwts);
    assert_no_secret_shown("git's helper", &text(&helper), &jwts);
    assert_no_secret_shown("state.json", &state, &jwts);
}

#[tokio::test]
async fn an_answer_that_is_not_the_json_we_expect_is_not_quoted() {
    let quoted = "ghs_quotedBackInAParseError0123456789";
    let github = FakeGitHub::start().await;
    let job = Job::new(&github.url());
    for path in ["/repos/", "/app/installations/"] {
        github.fail_next(
            path,
            ResponseTemplate::new(if path == "/repos/" { 200 } else { 201 })
                .set_body_json(json!(quoted)),
        );
        let run = job.main(&app_inputs(&[]), View::Host);
        let error = run.the_error().to_owned();
        assert!(error.contains("line 1"), "where, not what: {error}");
        assert!(!run.log().contains(quoted), "{}", run.log());
    }
}

#[tokio::test]
async fn the_step_summary_escapes_what_it_pastes() {
    let github = FakeGitHub::start().await;
    github.world().edit_mint_answer = Some(|answer| {
        answer["permissions"] = json!({"contents|x": "write`\n| forged | row |"});
    });
    let job = Job::new(&github.url());
    let main = job.main(&app_inputs(&[]), View::Host);
    main.assert_ok();
    for line in main.summary.lines().filter(|l| l.starts_with('|')) {
        let cells = line.replace("\\|", "").matches('|').count();
        assert_eq!(cells, 3, "one row of two cells: {line:?}\n{}", main.summary);
    }
    assert!(!main.summary.contains("\n| forged"), "{}", main.summary);
}

/// What GitHub's lookup answers, with `account` and `app_slug` as given.
fn lookup(account: Value, slug: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "id": 4242,
        "app_slug": slug,
        "account": account,
    }))
}

#[tokio::test]
async fn names_from_the_server_are_checked_before_they_decide_the_scope() {
    let refused = [
        (
            lookup(json!({"login": ""}), "keeper-test"),
            "`account.login`",
        ),
        (lookup(json!({}), "keeper-test"), "`account.login`"),
        (
            lookup(json!({"login": "Other-Org"}), "keeper-test"),
            "`Other-Org`",
        ),
        (
            lookup(json!({"login": "Octo-Org/app"}), "keeper-test"),
            "`account.login`",
        ),
        (
            lookup(json!({"login": "Octo-Org"}), "keeper test\n"),
            "`app_slug`",
        ),
        (lookup(json!({"login": "Octo-Org"}), ""), "`app_slug`"),
    ];
    for (answer, field) in refused {
        let github = FakeGitHub::start().await;
        github.fail_next("/repos/", answer);
        let job = Job::new(&github.url());
        let run = job.main(&app_inputs(&[]), View::Host);
        let error = run.the_error();
        assert!(error.contains(field), "{field}: {error}");
        assert!(
            !run.env.contains_key("GIT_CONFIG_COUNT"),
            "{field}: {:?}",
            run.env
        );
        assert_eq!(github.mints(), 0, "{field}: minted all the same");
    }

    // A login that differs only in case is the owner asked for.
    let github = FakeGitHub::start().await;
    github.fail_next(
        "/repos/",
        lookup(json!({"login": "octo-org"}), "keeper-test"),
    );
    let job = Job::new(&github.url());
    job.main(&app_inputs(&[]), View::Host).assert_ok();

    // A token whose answer names repositories that are no repository's name goes at once.
    let github = FakeGitHub::start().await;
    github.world().edit_mint_answer = Some(|answer| {
        answer["repositories"] = json!([{"name": "app"}, {"name": "../lib"}]);
    });
    let job = Job::new(&github.url());
    let run = job.main(&app_inputs(&[]), View::Host);
    assert!(run.the_error().contains("`repositories`"), "{}", run.log());
    assert!(!run.env.contains_key("GIT_CONFIG_COUNT"), "{:?}", run.env);
    assert!(github.world().issued[0].revoked, "the token was revoked");
}

#[tokio::test]
async fn keep_fresh_backs_off_while_github_refuses_and_warns_when_things_change() {
    let github = FakeGitHub::start().await;
    github.world().token_lifetime = Duration::from_secs(3);
    let job = Job::new(&github.url());
    let main = job.main(&app_inputs(&[]), View::Host);
    main.assert_ok();
    for _ in 0..100 {
        github.fail_next(
            "/app/installations/",
            message(403, "This installation has been suspended"),
        );
    }
    let step = LaterStep::after(&job, &main);
    let out = step
        .command("token-keeper")
        .args(["exec", "--keep-fresh", "--", "sleep", "10"])
        .output()
        .unwrap();
    assert_success("exec", &out);
    let tries = github.seen("POST", "/app/installations/").len() - 1;
    // Once a second for ten seconds would be nine; doubling pauses make three or four.
    assert!((2..=4).contains(&tries), "{tries} re-mints\n{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warnings = stderr.matches("token-keeper: warning:").count();
    // One when the cached token is served instead, one when none is valid: not one per try.
    assert!((1..=2).contains(&warnings), "{stderr}");
}

#[tokio::test]
async fn a_moved_repository_says_so_and_names_the_fix() {
    let github = FakeGitHub::start().await;
    let moved = format!("{}/repositories/99/installation", github.url());
    github.fail_next(
        "/repos/",
        ResponseTemplate::new(301)
            .insert_header("location", moved.as_str())
            .set_body_json(json!({"message": "Moved Permanently", "url": moved})),
    );
    let job = Job::new(&github.url());
    let run = job.main(&app_inputs(&[]), View::Host);
    let error = run.the_error();
    assert!(error.contains("`Octo-Org/app` has moved"), "{error}");
    assert!(error.contains("current name"), "{error}");
}

#[tokio::test]
async fn a_token_that_expires_within_a_minute_is_refused_and_revoked() {
    let github = FakeGitHub::start().await;
    github.world().edit_mint_answer = Some(|answer| {
        answer["expires_at"] = "2020-01-01T00:00:00Z".into();
    });
    let job = Job::new(&github.url());
    let run = job.main(&app_inputs(&[]), View::Host);
    assert!(
        run.the_error().contains("2020-01-01T00:00:00Z"),
        "{}",
        run.log()
    );
    assert!(!run.outputs.contains_key("token"), "{:?}", run.outputs);
    assert!(github.world().issued[0].revoked, "revoked at once");
}

#[tokio::test]
async fn with_git_identity_a_failed_bot_lookup_is_a_warning() {
    let github = FakeGitHub::start().await;
    github.fail_next("/users/", message(404, "Not Found"));
    let job = Job::new(&github.url());
    let run = job.main(&app_inputs(&[("git-identity", "true")]), View::Host);
    run.assert_ok();
    let warning = run
        .stdout
        .lines()
        .find(|l| l.starts_with("::warning") && l.contains("keeper-test[bot]"))
        .unwrap_or_else(|| panic!("no warning: {}", run.log()));
    assert!(warning.contains("404"), "{warning}");
    assert_eq!(
        run.env["GIT_AUTHOR_EMAIL"],
        "keeper-test[bot]@users.noreply.github.com"
    );
}

#[tokio::test]
async fn the_debug_log_shows_a_retried_answer_cleaned_and_without_our_jwt() {
    let github = FakeGitHub::start().await;
    github.answer_next("/repos/", |bearer| {
        message(503, &format!("busy\n::add-mask::{MARK} {bearer}"))
    });
    let mut job = Job::new(&github.url());
    job.extra_env.insert("TOKEN_KEEPER_LOG".into(), "1".into());
    let run = job.main(&app_inputs(&[]), View::Host);
    run.assert_ok();
    assert!(run.stderr.contains("retrying"), "{}", run.stderr);
    for line in run.stderr.split(['\n', '\r']) {
        assert!(
            !line.trim_start().starts_with("::") && !line.contains("##["),
            "a workflow command we did not write: {line:?}\n{}",
            run.stderr
        );
    }
    assert_no_secret_shown("debug log", &run.stderr, &github.bearers());
}
