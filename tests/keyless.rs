//! Keyless: tokens from exchanging the job's OIDC identity at a token exchange service, now and at
//! every refresh, with no App key anywhere in the job.

use std::fs;
use std::process::Output;

use serde_json::json;
use wiremock::ResponseTemplate;

use testkit::assert_success;
use testkit::fake_github::app_inputs;
use testkit::git_server::git_command;
use testkit::logs::assert_no_secret_shown;
use testkit::runner::{Job, LaterStep, View, age_cached_token, expire_cached_token};
use testkit::scene::{KeylessScene, assert_no_key_material};
use testkit::sts::Policy;

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn a_keyless_long_build_pushes_after_an_hour_and_post_revokes_everything() {
    let k = KeylessScene::start().await;
    let sts = k.sts.url();
    let inputs = k.inputs(&sts, &[]);
    let main = k.job.main(&inputs, View::Host);
    main.assert_ok();
    assert!(main.outputs["token"].starts_with("ghs_"));
    assert_eq!(
        main.outputs["installation-id"], "",
        "an exchange names no installation"
    );
    assert!(
        main.stdout.contains("keyless: policy `release`"),
        "{}",
        main.stdout
    );
    assert!(
        main.summary.contains("keyless: policy `release`"),
        "{}",
        main.summary
    );
    assert!(
        main.summary.contains("as the trust policy grants"),
        "{}",
        main.summary
    );
    assert!(!main.summary.contains("installation 0"), "{}", main.summary);
    let root = k.job.temp.join("token-keeper");
    assert_no_key_material(&root);

    let step = k.later(&main);
    let repo = step.dir.path().join("app");
    step.assert_git(&["clone", "--quiet", &k.repo_url("Octo-Org", "app"), "app"]);
    age_cached_token(&k.job, &main, 50 * 60);
    fs::write(repo.join("late.txt"), "built an hour later\n").unwrap();
    assert_success("git", &step.git_in(&repo, &["add", "late.txt"]));
    assert_success(
        "git",
        &step.git_in(&repo, &["commit", "--quiet", "-m", "late"]),
    );
    let push = step.git_in(&repo, &["push", "--quiet", "origin", "main"]);
    assert_success("git", &push);
    assert_eq!(k.sts.world().exchanges, 2, "the push exchanged again");
    assert_no_key_material(&root);

    let post = k.job.post(&inputs, &main.state, View::Host);
    post.assert_ok();
    assert!(
        k.github.world().live_tokens().is_empty(),
        "every token revoked"
    );
    assert!(!root.exists());
    for log in [main.log(), post.log(), stderr(&push)] {
        assert!(!log.contains("PRIVATE KEY"), "{log}");
    }
}

#[tokio::test]
async fn thirty_two_gits_at_expiry_exchange_once() {
    let k = KeylessScene::start().await;
    let sts = k.sts.url();
    let main = k.job.main(&k.inputs(&sts, &[]), View::Host);
    main.assert_ok();
    let step = k.later(&main);
    age_cached_token(&k.job, &main, 50 * 60);
    let url = k.repo_url("Octo-Org", "app");
    let children: Vec<_> = (0..32)
        .map(|_| {
            let mut command = git_command(step.dir.path());
            command.envs(&step.env).args(["ls-remote", &url]);
            command
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert_success("git", &out);
    }
    assert_eq!(
        k.sts.world().exchanges,
        2,
        "one exchange at start, one at expiry"
    );
}

#[tokio::test]
async fn keyless_errors_say_what_to_do() {
    let k = KeylessScene::start().await;
    let sts = k.sts.url();

    // No `id-token: write`: the runner sets neither variable.
    let mut job = Job::new(&k.github.url());
    job.extra_env.clear();
    let run = job.main(&k.inputs(&sts, &[]), View::Host);
    assert!(
        run.the_error().contains("`permissions: id-token: write`"),
        "{}",
        run.log()
    );

    let run = k
        .job
        .main(&k.inputs(&sts, &[("sts-identity", "nope")]), View::Host);
    let error = run.the_error();
    assert!(
        error.contains("trust policy `nope` not found in `Octo-Org/app`"),
        "{error}"
    );

    k.sts.world().policies.push(Policy {
        scope: "Octo-Org/app".into(),
        identity: "elsewhere".into(),
        allows: "Octo-Org/lib".into(),
        repos: None,
    });
    let run = k.job.main(
        &k.inputs(&sts, &[("sts-identity", "elsewhere")]),
        View::Host,
    );
    assert!(
        run.the_error().contains("does not allow this workflow"),
        "{}",
        run.log()
    );
    assert!(!run.log().contains("ghs_"), "no token in any message");
}

#[tokio::test]
async fn without_the_service_or_the_identity_the_cached_token_serves_while_valid() {
    let k = KeylessScene::start().await;
    let sts = k.sts.url();
    let main = k.job.main(&k.inputs(&sts, &[]), View::Host);
    main.assert_ok();
    age_cached_token(&k.job, &main, 50 * 60);
    let step = k.later(&main);
    let token = |step: &LaterStep| {
        let mut command = step.command("token-keeper");
        command.arg("token").env("TOKEN_KEEPER_DEADLINE", "2s");
        command.output().unwrap()
    };

    // The service is down: the cached token, with a warning.
    k.sts.world().down = true;
    let out = token(&step);
    assert_success("token", &out);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        main.outputs["token"]
    );
    assert!(
        stderr(&out).contains("serving the cached token"),
        "{}",
        stderr(&out)
    );
    k.sts.world().down = false;

    // A step without the identity variables: the cached token while valid, then one line.
    let mut bare = k.later(&main);
    bare.env.remove("ACTIONS_ID_TOKEN_REQUEST_URL");
    bare.env.remove("ACTIONS_ID_TOKEN_REQUEST_TOKEN");
    // The failure above keeps callers quiet for half a minute: a minute later, it does not.
    age_cached_token(&k.job, &main, 60);
    let out = token(&bare);
    assert_success("token", &out);
    assert!(
        stderr(&out).contains("cannot ask for the job's identity"),
        "{}",
        stderr(&out)
    );
    expire_cached_token(&k.job, &main);
    let out = token(&bare);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot ask for the job's identity"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn keyless_and_keyed_steps_work_side_by_side() {
    let k = KeylessScene::start().await;
    let sts = k.sts.url();
    let keyless = k.job.main_as("keyless", &k.inputs(&sts, &[]), View::Host);
    keyless.assert_ok();
    let keyed = k.job.main_as(
        "keyed",
        &app_inputs(&[
            ("owner", "Other-Org"),
            ("git-server-url", k.git_url.as_str()),
        ]),
        View::Host,
    );
    keyed.assert_ok();
    let step = k.later(&keyed);
    step.assert_git(&["ls-remote", &k.repo_url("Octo-Org", "app")]);
    step.assert_git(&["ls-remote", &k.repo_url("Other-Org", "tools")]);
    let dirs: Vec<_> = [&keyless, &keyed]
        .iter()
        .map(|run| k.job.host_path(&run.state["dir"]))
        .collect();
    assert!(
        !dirs[0].join("key.pem").exists(),
        "the keyless step stores no key"
    );
    assert!(
        dirs[1].join("key.pem").exists(),
        "the keyed one does, for its re-mints"
    );
}

#[tokio::test]
async fn the_identity_and_its_request_token_are_masked_and_never_shown() {
    let k = KeylessScene::start().await;
    let sts = k.sts.url();
    k.sts.world().answer_next = Some(Box::new(|identity| {
        ResponseTemplate::new(403)
            .set_body_json(json!({"message": format!("identity {identity} refused")}))
    }));
    let refused = k.job.main(&k.inputs(&sts, &[]), View::Host);
    assert!(refused.the_error().contains("refused"), "{}", refused.log());
    // An answer that is not the object we expect is not quoted back either.
    let quoted = "ghs_quotedBackInAParseError0123456789";
    k.sts.world().answer_next = Some(Box::new(move |_| {
        ResponseTemplate::new(200).set_body_json(json!(quoted))
    }));
    let odd = k.job.main(&k.inputs(&sts, &[]), View::Host);
    assert!(odd.the_error().contains("line 1"), "{}", odd.log());
    assert!(!odd.log().contains(quoted), "{}", odd.log());

    let mut secrets = k.sts.world().identities.clone();
    assert_eq!(secrets.len(), 2);
    secrets.push(k.issuer.env()[1].1.clone());
    for run in [&refused, &odd] {
        assert_no_secret_shown("main step", &run.log(), &secrets);
        assert!(
            run.stdout
                .contains(&format!("::add-mask::{}\n", secrets[2])),
            "the runner's request token is masked: {}",
            run.stdout
        );
    }
    for (identity, run) in secrets[..2].iter().zip([&refused, &odd]) {
        assert!(
            run.stdout.contains(&format!("::add-mask::{identity}\n")),
            "the identity token is masked before use"
        );
    }
}
