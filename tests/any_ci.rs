//! The same binary in any CI: `setup` in a job's shell, git and the tools after the first token
//! expired, `revoke` from the same shell or another; no `GITHUB_*` or `RUNNER_*` but in the one
//! test of an Actions job's own shell.

use std::fs;
use std::time::Duration;

use testkit::assert_success;
use testkit::background::Background;
use testkit::ci::{CiJob, assert_nothing_left};
use testkit::fake_github::{APP_ID, APP_KEY};
use testkit::logs::{assert_no_part_shown, text};
use testkit::measure;
use testkit::runner::{View, binary, is_root};
use testkit::scene::{KeylessScene, Scene};
use wiremock::ResponseTemplate;

#[tokio::test]
async fn a_job_outside_actions_pushes_after_the_first_token_expired_and_revokes() {
    let scene = Scene::start(Duration::from_secs(3)).await;
    let job = CiJob::new(&[("CI_JOB_ID", "4242")]);
    let script = format!(
        r#"eval "$({setup})"
{push}
token-keeper exec --keep-fresh -- sh -c 'grep -q oauth_token "$GH_CONFIG_DIR/hosts.yml"'
token-keeper revoke"#,
        setup = job.setup(&scene, "--owner Octo-Org --repositories app"),
        push = CiJob::late_push(&scene),
    );
    let out = job.shell(&script, &[]);
    assert_success("the job", &out);
    assert!(scene.github.mints() >= 2, "the push re-minted");
    assert!(scene.github.world().live_tokens().is_empty(), "all revoked");
    assert_nothing_left(&job);
    let log = text(&out);
    assert!(
        !log.contains("::"),
        "no workflow commands outside Actions: {log}"
    );
    for token in scene.github.tokens() {
        assert!(!log.contains(&token), "a token shown: {log}");
    }
}

#[tokio::test]
async fn a_separate_shell_revokes_with_the_state_alone_or_with_nothing_but_the_ci() {
    let scene = Scene::start(Duration::from_secs(3600)).await;
    let job = CiJob::new(&[("CI_JOB_ID", "77")]);
    let url = scene.repo_url("Octo-Org", "app");
    let noted = job.path("state");
    let script = format!(
        "eval \"$({})\"\ngit ls-remote -q '{url}' >/dev/null\nprintf %s \"$TOKEN_KEEPER_STATE\" > '{noted}'",
        job.setup(&scene, "--owner Octo-Org")
    );
    assert_success("setup", &job.shell(&script, &[]));
    let state = fs::read_to_string(&noted).unwrap();

    // As GitLab's after_script: a fresh shell with the state passed on, then again.
    let after = job.shell("token-keeper revoke", &[("TOKEN_KEEPER_STATE", &state)]);
    assert_success("revoke", &after);
    assert!(scene.github.world().live_tokens().is_empty());
    let again = job.shell("token-keeper revoke", &[("TOKEN_KEEPER_STATE", &state)]);
    assert_success("revoke again", &again);
    assert!(
        text(&again).contains("nothing to revoke"),
        "{}",
        text(&again)
    );

    // A shell with nothing but the CI's own variables finds the job's store.
    assert_success(
        "setup",
        &job.shell(
            &format!("eval \"$({})\"", job.setup(&scene, "--owner Octo-Org")),
            &[],
        ),
    );
    assert_eq!(scene.github.world().live_tokens().len(), 1);
    let found = job.shell("token-keeper revoke", &[]);
    assert_success("revoke by the job", &found);
    assert!(scene.github.world().live_tokens().is_empty());
    assert_nothing_left(&job);

    // Another job's shell finds nothing, and says where it looked.
    let other = CiJob::new(&[("CI_JOB_ID", "78")]);
    let nothing = other.shell("token-keeper revoke", &[]);
    assert_success("revoke in another job", &nothing);
    assert!(
        text(&nothing).starts_with("token-keeper: nothing to revoke: no token-keeper state in"),
        "{}",
        text(&nothing)
    );
}

#[tokio::test]
async fn revoke_in_an_actions_job_ends_only_the_stores_setup_made() {
    let scene = Scene::start(Duration::from_secs(3600)).await;
    let main = scene.job.main(&scene.inputs(&[]), View::Host);
    main.assert_ok();
    let temp = scene.job.temp.display().to_string();
    let job = CiJob::new(&[("RUNNER_TEMP", &temp)]);
    let setup = job.setup(&scene, "--owner Other-Org >/dev/null");
    assert_success("setup", &job.shell(&setup, &[]));
    assert_eq!(scene.github.world().live_tokens().len(), 2);

    // The action's store sits beside setup's, in `$RUNNER_TEMP/token-keeper`: it is left alone.
    assert_success("revoke", &job.shell("token-keeper revoke", &[]));
    let live: Vec<String> = (scene.github.world().live_tokens().iter())
        .map(|t| t.token.clone())
        .collect();
    assert_eq!(
        live,
        [main.outputs["token"].clone()],
        "only setup's revoked"
    );
    let root = scene.job.temp.join("token-keeper");
    let mut left: Vec<String> = fs::read_dir(&root)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["bin", "step-__org_token-keeper"]);

    scene
        .job
        .post(&scene.inputs(&[]), &main.state, View::Host)
        .assert_ok();
    assert!(scene.github.world().live_tokens().is_empty());
}

#[tokio::test]
async fn a_store_that_cannot_be_ended_keeps_no_other_stores_token_alive() {
    let scene = Scene::start(Duration::from_secs(3600)).await;
    let job = CiJob::new(&[("CI_JOB_ID", "31")]);
    for owner in ["Octo-Org", "Other-Org"] {
        let setup = job.setup(&scene, &format!("--owner {owner} >/dev/null"));
        assert_success("setup", &job.shell(&setup, &[]));
    }
    let stores = job.stores();
    assert_eq!(stores.len(), 2, "{stores:?}");
    // A process holds the first store's lock, as a re-mint that hangs would.
    let lock = fs::File::open(stores[0].join("lock")).unwrap();
    lock.lock().unwrap();

    let out = job.shell("token-keeper revoke", &[]);
    assert!(!out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains(&*stores[0].to_string_lossy()), "{said}");
    assert!(said.contains("run `token-keeper revoke` again"), "{said}");
    assert!(
        scene.github.world().live_tokens().is_empty(),
        "both revoked, the locked store's too: {said}"
    );
    assert!(!stores[1].exists(), "the other store gone: {said}");
    assert!(!stores[0].join("key.pem").exists(), "its key gone at once");
    assert!(stores[0].join("ledger").exists(), "its ledger kept");

    drop(lock);
    let again = job.shell("token-keeper revoke", &[]);
    assert_success("revoke again", &again);
    assert_nothing_left(&job);
}

#[tokio::test]
async fn revocation_needs_only_the_ledger_and_a_failed_one_is_finished_by_the_next() {
    let scene = Scene::start(Duration::from_secs(3600)).await;
    let job = CiJob::new(&[("CI_JOB_ID", "33")]);
    for owner in ["Octo-Org", "Other-Org"] {
        let setup = job.setup(&scene, &format!("--owner {owner} >/dev/null"));
        assert_success("setup", &job.shell(&setup, &[]));
    }
    let stores = job.stores();
    // One state damaged, the other of a format this token-keeper does not read: setup killed
    // between minting and writing its state, or a later version's.
    fs::write(stores[0].join("state.json"), "{").unwrap();
    fs::write(stores[1].join("state.json"), r#"{"version": 9}"#).unwrap();
    // GitHub refuses every revocation at first.
    for _ in 0..40 {
        scene
            .github
            .fail_next("/installation/token", ResponseTemplate::new(503));
    }
    let out = job.shell("token-keeper revoke", &[("TOKEN_KEEPER_DEADLINE", "1s")]);
    assert!(!out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("still live"), "{said}");
    assert_eq!(scene.github.world().live_tokens().len(), 2, "{said}");
    for store in &stores {
        assert!(!store.join("key.pem").exists(), "the key goes at once");
        assert!(!store.join("state.json").exists(), "the cached token too");
        assert!(store.join("ledger").exists(), "the ledger stays");
    }
    // Nothing is served from a store whose end has begun.
    let state = stores[0].to_string_lossy().into_owned();
    let served = job.shell("token-keeper token", &[("TOKEN_KEEPER_STATE", &state)]);
    assert!(!served.status.success(), "{}", text(&served));
    assert!(
        text(&served).contains("has been ended"),
        "{}",
        text(&served)
    );

    scene.github.clear_faults();
    let again = job.shell("token-keeper revoke", &[]);
    assert_success("revoke again", &again);
    assert!(scene.github.world().live_tokens().is_empty());
    assert_nothing_left(&job);
}

#[tokio::test]
async fn revoke_revokes_even_when_git_cannot_take_its_config_out() {
    let scene = Scene::start(Duration::from_secs(3600)).await;
    let job = CiJob::new(&[("CI_JOB_ID", "32")]);
    let global = job.home.join(".gitconfig");
    let theirs = "[user]\n\tname = CI";
    fs::write(&global, theirs).unwrap();
    let setup = job.setup(&scene, "--owner Octo-Org --git-config global >/dev/null");
    assert_success("setup", &job.shell(&setup, &[]));
    let included = job.included_files();
    assert_eq!(included.len(), 1, "{included:?}");

    // Another git holds the global config's lock for good.
    let lock = job.home.join(".gitconfig.lock");
    fs::write(&lock, "").unwrap();
    let out = job.shell("token-keeper revoke", &[]);
    assert!(!out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("lock") && said.contains("harmless"), "{said}");
    assert!(
        scene.github.world().live_tokens().is_empty(),
        "revoked all the same: {said}"
    );
    assert!(
        !included[0].exists(),
        "the entry names a file that is gone: {said}"
    );
    assert_nothing_left(&job);
    // git skips the missing file.
    let url = scene.repo_url("Octo-Org", "app");
    let git = job.shell(&format!("git ls-remote '{url}' 2>&1 || true"), &[]);
    assert!(!text(&git).contains("token-keeper"), "{}", text(&git));

    fs::remove_file(&lock).unwrap();
    assert_success("revoke again", &job.shell("token-keeper revoke", &[]));
    assert_eq!(fs::read_to_string(&global).unwrap(), theirs, "as it was");
}

#[tokio::test]
async fn with_the_global_git_config_steps_that_share_nothing_push_after_expiry() {
    let scene = Scene::start(Duration::from_secs(3)).await;
    let job = CiJob::new(&[("BUILD_TAG", "jenkins-app-12")]);
    let global = job.home.join(".gitconfig");
    let theirs =
        "[user]\n\tname = Jenkins\n[credential \"https://example.com\"]\n\thelper = store\n";
    fs::write(&global, theirs).unwrap();
    let url = scene.repo_url("Octo-Org", "app");

    assert_success(
        "setup",
        &job.shell(
            &job.setup(&scene, "--owner Octo-Org --git-config global >/dev/null"),
            &[],
        ),
    );
    // Each `sh` step of Jenkins starts afresh: nothing exported reaches the next.
    assert_success(
        "clone",
        &job.shell(&format!("git clone -q '{url}' app"), &[]),
    );
    std::thread::sleep(Duration::from_secs(4));
    let push = job.shell(
        "cd app && echo late > late.txt && git add late.txt && git commit -qm late && git push -q origin HEAD:main",
        &[],
    );
    assert_success("push after expiry", &push);
    assert!(scene.github.mints() >= 2, "the push re-minted");

    assert_success("revoke", &job.shell("token-keeper revoke", &[]));
    assert_eq!(fs::read_to_string(&global).unwrap(), theirs, "as it was");
    assert!(scene.github.world().live_tokens().is_empty());
    assert_nothing_left(&job);
}

#[tokio::test]
async fn two_setups_for_two_owners_in_one_job() {
    let scene = Scene::start(Duration::from_secs(3600)).await;
    let job = CiJob::new(&[("CI_JOB_ID", "9")]);
    let script = format!(
        r#"eval "$({octo})"
eval "$({other})"
git ls-remote -q '{app}' >/dev/null
git ls-remote -q '{tools}' >/dev/null
test -n "$(token-keeper token --owner Octo-Org)"
test -n "$(token-keeper token --owner Other-Org)"
token-keeper revoke"#,
        octo = job.setup(&scene, "--owner Octo-Org --repositories app"),
        other = job.setup(&scene, "--owner Other-Org"),
        app = scene.repo_url("Octo-Org", "app"),
        tools = scene.repo_url("Other-Org", "tools"),
    );
    let out = job.shell(&script, &[]);
    assert_success("the job", &out);
    assert_eq!(scene.github.mints(), 2);
    assert!(
        scene.github.world().live_tokens().is_empty(),
        "both revoked"
    );
    assert_nothing_left(&job);
}

#[tokio::test]
async fn keyless_from_any_ci_reads_the_identity_again_at_every_refresh() {
    let k = KeylessScene::start().await;
    let job = CiJob::new(&[("CI_JOB_ID", "5")]);
    let audience = k.sts.server.address().to_string();
    let identity = job.path("oidc");
    fs::write(&identity, k.issuer.identity_token(&audience)).unwrap();
    let runs = job.path("runs");
    let setup = |from: &str| format!("token-keeper setup {} {from}", keyless_flags(&k).join(" "));

    // From a variable, as GitLab's `id_tokens:` gives one.
    let token = k.issuer.identity_token(&audience);
    let from_variable = format!(
        "eval \"$({})\"\ngit ls-remote -q '{}' >/dev/null\ntoken-keeper revoke",
        setup("--identity-env CI_OIDC_TOKEN"),
        k.repo_url("Octo-Org", "app")
    );
    assert_success(
        "identity from a variable",
        &job.shell(&from_variable, &[("CI_OIDC_TOKEN", &token)]),
    );
    assert_eq!(k.sts.world().identities.last(), Some(&token));

    // From a command, run again at the refresh; its failure serves the cached token.
    let command = format!("echo run >> {runs}; cat {identity}");
    let state = job.path("state");
    let by_command = format!(
        "eval \"$({} --identity-command '{command}')\"\nprintf %s \"$TOKEN_KEEPER_STATE\" > {state}",
        setup("")
    );
    assert_success("identity from a command", &job.shell(&by_command, &[]));
    let state = fs::read_to_string(&state).unwrap();
    let runs_now = || fs::read_to_string(&runs).unwrap().lines().count();
    assert_eq!(runs_now(), 1);
    token_keeper::backdate_cached_token(state.as_ref(), 50 * 60, false).unwrap();
    let refreshed = job.shell("token-keeper token", &[("TOKEN_KEEPER_STATE", &state)]);
    assert_success("refresh", &refreshed);
    assert_eq!(runs_now(), 2, "the command ran again");

    fs::remove_file(&identity).unwrap();
    token_keeper::backdate_cached_token(state.as_ref(), 60 * 60, false).unwrap();
    let failing = job.shell("token-keeper token", &[("TOKEN_KEEPER_STATE", &state)]);
    assert_success("the cached token serves", &failing);
    let said = String::from_utf8_lossy(&failing.stderr);
    assert!(
        said.contains("the job's identity command") && said.contains("serving the cached token"),
        "{said}"
    );
    assert_success(
        "revoke",
        &job.shell("token-keeper revoke", &[("TOKEN_KEEPER_STATE", &state)]),
    );
    assert!(k.github.world().live_tokens().is_empty());
}

/// A JWT and a token as a careless person pastes them.
const PASTED_JWT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyZXBvOm9jdG8tb3JnL2FwcDpyZWYifQ.c2lnbmF0dXJlLW9mLXRoZS1pc3N1ZXI";
const PASTED_TOKEN: &str = "ghs_16C7e42F292c6912E7710c838347Ae178B4a";

#[tokio::test]
async fn a_secret_given_where_a_name_belongs_is_named_by_where_it_came_never_shown() {
    let scene = Scene::start(Duration::from_secs(3600)).await;
    let job = CiJob::new(&[("CI_JOB_ID", "9")]);
    let key = APP_KEY.to_owned();
    type Case<'a> = (String, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "token-keeper setup".into(),
            vec![("TOKEN_KEEPER_PRIVATE_KEY_FILE", key.as_str())],
            "`TOKEN_KEEPER_PRIVATE_KEY_FILE` holds a private key, not a path",
        ),
        (
            job.setup(&scene, "--owner Octo-Org"),
            vec![("TOKEN_KEEPER_OWNER", PASTED_JWT)],
            "`TOKEN_KEEPER_OWNER` holds a JWT, not an owner",
        ),
        (
            format!(
                "{} --identity-env '{PASTED_JWT}'",
                job.setup(&scene, "--owner Octo-Org")
            ),
            vec![],
            "`--identity-env` holds a JWT, not a variable's name",
        ),
        (
            format!("token-keeper setup --api-url 'https://ghes.example/{PASTED_TOKEN}'"),
            vec![],
            "`--api-url` holds a token, not a URL",
        ),
        (
            "token-keeper revoke".into(),
            vec![("TOKEN_KEEPER_STATE", PASTED_TOKEN)],
            "`TOKEN_KEEPER_STATE` holds a token, not a path",
        ),
        (
            "token-keeper token".into(),
            vec![("TOKEN_KEEPER_DEADLINE", PASTED_JWT)],
            "`TOKEN_KEEPER_DEADLINE` holds a JWT, not a duration",
        ),
        (
            format!("token-keeper setup --format '{PASTED_JWT}'"),
            vec![],
            "`--format` holds a JWT",
        ),
        (
            format!("token-keeper setup '{PASTED_TOKEN}'"),
            vec![],
            "a command-line argument holds a token",
        ),
    ];
    let secrets = [key.clone(), PASTED_JWT.to_owned(), PASTED_TOKEN.to_owned()];
    for (script, vars, says) in &cases {
        let out = job.shell(script, vars);
        assert!(!out.status.success(), "{script}: {}", text(&out));
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(said.trim().lines().count(), 1, "one line: {said}");
        assert!(said.contains(says), "{script}: {said}");
        assert_no_part_shown(script, &text(&out), &secrets);
        assert!(!said.contains("MII"), "{said}");
    }
    assert_eq!(scene.github.mints(), 0);
    assert_nothing_left(&job);

    // `--help` names the variables a flag reads, not what they hold.
    let help = job.shell(
        "token-keeper setup --help",
        &[("TOKEN_KEEPER_OWNER", "octo-org-held-in-the-variable")],
    );
    assert_success("help", &help);
    let help = text(&help);
    assert!(help.contains("TOKEN_KEEPER_OWNER"), "{help}");
    assert!(!help.contains("octo-org-held-in-the-variable"), "{help}");
}

#[tokio::test]
async fn a_long_value_is_quoted_cut_short_in_one_line() {
    let scene = Scene::start(Duration::from_secs(3600)).await;
    let job = CiJob::new(&[("CI_JOB_ID", "9")]);
    let long = "a".repeat(5000);
    for script in [
        job.setup(&scene, &format!("--owner {long}")),
        job.setup(&scene, &format!("--owner Octo-Org --refresh-after {long}")),
        format!("token-keeper setup --format {long}"),
        format!("token-keeper setup --bogus-flag-{long}"),
        job.setup(&scene, &format!("--owner Octo-Org --permission {long}")),
        format!("token-keeper token --state /{long}"),
        format!(
            "token-keeper setup --sts-identity release --sts-scope Octo-Org/app --sts-domain '{}' --api-url '{}' --git-server-url '{}' --identity-command {long}",
            scene.github.url(),
            scene.github.url(),
            scene.git_url
        ),
    ] {
        let out = job.shell(&script, &[]);
        assert!(!out.status.success(), "{}", text(&out));
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(said.trim().lines().count(), 1, "one line: {said}");
        assert!(said.len() < 600, "{} characters: {said}", said.len());
        assert!(said.contains('…'), "{said}");
    }
    assert_eq!(scene.github.mints(), 0);
}

/// setup's flags for keyless mode with `k`'s exchange service; none needs quoting in a shell.
fn keyless_flags(k: &KeylessScene) -> Vec<String> {
    let (sts, api) = (k.sts.url(), k.github.url());
    let flags = [
        "--sts-identity",
        "release",
        "--sts-scope",
        "Octo-Org/app",
        "--sts-domain",
        &sts,
        "--api-url",
        &api,
        "--git-server-url",
        &k.git_url,
    ];
    flags.map(String::from).to_vec()
}

#[tokio::test]
async fn an_identity_command_that_prints_far_too_much_is_ended_at_its_bound() {
    let k = KeylessScene::start().await;
    let job = CiJob::new(&[("CI_JOB_ID", "6")]);
    let command = "head -c 200000000 /dev/zero";
    let mut setup = job.command(binary(), &[]);
    setup.arg("setup").args(keyless_flags(&k));
    setup.args(["--identity-command", command]);
    let measured = measure::run(&mut setup, b"").expect("setup");
    let peak = match measured.max_rss_kib {
        Ok(kib) => format!("{:.1} MiB", kib as f64 / 1024.0),
        Err(why) => why.to_owned(),
    };
    println!(
        "setup whose identity command prints 200 MB: {:.0} ms, peak RSS {peak}",
        measured.elapsed.as_secs_f64() * 1000.0
    );

    let out = &measured.output;
    assert!(!out.status.success(), "{}", text(out));
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(said.trim().lines().count(), 1, "one line: {said}");
    assert!(
        said.contains(&format!(
            "the job's identity command `{command}` printed more than 64 KiB"
        )),
        "{said}"
    );
    assert!(out.stdout.is_empty(), "{}", text(out));
    assert_eq!(k.sts.world().exchanges, 0);
    if let Ok(kib) = measured.max_rss_kib {
        assert!(kib < 64 * 1024, "setup's peak: {peak}");
    }
    assert_nothing_left(&job);
}

#[tokio::test]
async fn what_the_identity_command_leaves_running_is_ended_with_it() {
    let k = KeylessScene::start().await;
    let job = CiJob::new(&[("CI_JOB_ID", "7")]);
    let identity = job.path("oidc");
    let audience = k.sts.server.address().to_string();
    fs::write(&identity, k.issuer.identity_token(&audience)).unwrap();
    let left = Background {
        file: job.path("left").into(),
    };
    // A child that holds none of setup's pipes, and one that holds its stdout.
    for leaves in [">/dev/null 2>&1 &", "&"] {
        let command = format!(
            "sleep 300 {leaves} echo $! > {}; cat {identity}",
            left.file.display()
        );
        let script = format!(
            "eval \"$(token-keeper setup {} --identity-command '{command}')\"\ntoken-keeper revoke",
            keyless_flags(&k).join(" ")
        );
        assert_success(&command, &job.shell(&script, &[]));
        assert!(
            !left.still_runs(),
            "{command}: the background sleep outlived setup"
        );
    }
    assert_eq!(k.sts.world().exchanges, 2);
    assert!(k.github.world().live_tokens().is_empty());
}

#[tokio::test]
async fn bad_setups_are_one_line_that_shows_no_key_and_leave_nothing() {
    let scene = Scene::start(Duration::from_secs(3600)).await;
    let job = CiJob::new(&[("CI_JOB_ID", "1")]);
    let one_line = APP_KEY.replace('\n', " ");
    let cases = [
        (
            format!("token-keeper setup --owner o --private-key-file '{APP_KEY}'"),
            "`--private-key-file` holds a private key, not a path",
        ),
        (
            format!("token-keeper setup --owner o --app-id '{one_line}'"),
            "`--app-id` holds a private key, not an app id",
        ),
        (
            format!(
                "token-keeper setup --app-id {APP_ID} --owner Octo-Org --private-key-file /nonexistent/key.pem --api-url '{}'",
                scene.github.url()
            ),
            "cannot read `/nonexistent/key.pem`",
        ),
        (
            format!(
                "token-keeper setup --app-id {APP_ID} --owner Octo-Org --api-url '{}' --git-server-url '{}'",
                scene.github.url(),
                scene.git_url
            ),
            "`--private-key-file PATH` or `--private-key-env NAME`",
        ),
        // Against GitHub.com, whose list of permissions is the one we ship.
        (
            format!(
                "token-keeper setup --app-id {APP_ID} --private-key-file '{}' --api-url '{}' --git-server-url https://github.com --owner Octo-Org --permission telepathy=read",
                job.key_file(),
                scene.github.url()
            ),
            "`telepathy` is not a permission GitHub lists",
        ),
        (
            job.setup(&scene, "--owner 'bad owner'"),
            "`--owner`: `bad owner` is not a valid GitHub name",
        ),
    ];
    for (script, says) in cases {
        let out = job.shell(&script, &[]);
        assert!(!out.status.success(), "{script}: {}", text(&out));
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(said.trim().lines().count(), 1, "one line: {said}");
        assert!(said.contains(says), "{said}");
        assert!(!said.contains("MII") && !said.contains("BEGIN"), "{said}");
        assert!(out.stdout.is_empty(), "{script}: {}", text(&out));
    }
    assert_eq!(scene.github.mints(), 0);
    assert_nothing_left(&job);

    // A setup that fails after it minted revokes what it minted: the global git config cannot
    // be written where HOME is not.
    let late = job.shell(
        &job.setup(&scene, "--owner Octo-Org --git-config global"),
        &[("HOME", "/nonexistent/home")],
    );
    assert!(!late.status.success(), "{}", text(&late));
    assert!(text(&late).contains("global git config"), "{}", text(&late));
    assert!(late.stdout.is_empty(), "{}", text(&late));
    assert_eq!(scene.github.mints(), 1);
    assert!(scene.github.world().live_tokens().is_empty(), "revoked");
    assert_nothing_left(&job);

    // A `--state` folder someone else owns is not written into, as root least of all.
    if is_root() {
        let theirs = job.path("theirs");
        fs::create_dir(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(1001), Some(1001)).unwrap();
        let out = job.shell(
            &job.setup(&scene, &format!("--owner Octo-Org --state '{theirs}'")),
            &[],
        );
        assert!(!out.status.success(), "{}", text(&out));
        assert!(text(&out).contains("belongs to uid 1001"), "{}", text(&out));
        assert_eq!(
            fs::read_dir(&theirs).unwrap().count(),
            0,
            "nothing written there"
        );
        assert_eq!(scene.github.mints(), 1, "no new token");
    }

    // A state written by another version: one line, and it is left for that version.
    let store = job.path("old-store");
    fs::create_dir(&store).unwrap();
    fs::write(format!("{store}/state.json"), r#"{"version": 1}"#).unwrap();
    let old = job.shell("token-keeper token", &[("TOKEN_KEEPER_STATE", &store)]);
    assert!(!old.status.success());
    let said = String::from_utf8_lossy(&old.stderr);
    assert_eq!(said.trim().lines().count(), 1, "{said}");
    assert!(said.contains("format 1"), "{said}");
}

#[tokio::test]
async fn a_permission_without_a_level_is_refused_not_dropped() {
    let scene = Scene::start(Duration::from_secs(3600)).await;
    let job = CiJob::new(&[("CI_JOB_ID", "2")]);
    for flag in [
        "--permission contents",
        "--permission contents=",
        "--permission 'contents= '",
    ] {
        let out = job.shell(&job.setup(&scene, &format!("--owner Octo-Org {flag}")), &[]);
        assert!(!out.status.success(), "{flag}: {}", text(&out));
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(said.trim().lines().count(), 1, "one line: {said}");
        assert!(
            said.contains("`--permission`") && said.contains("`--permission NAME=LEVEL`"),
            "{said}"
        );
    }
    assert_eq!(scene.github.mints(), 0);
    assert_nothing_left(&job);
}

#[tokio::test]
async fn a_bad_setting_is_named_by_the_flag_or_the_variable_it_came_in() {
    let scene = Scene::start(Duration::from_secs(3600)).await;
    let job = CiJob::new(&[("CI_JOB_ID", "3")]);
    let not_a_key = job.path("not-a-key.pem");
    fs::write(&not_a_key, "not a key at all").unwrap();
    let no_key = format!(
        "token-keeper setup --app-id {APP_ID} --owner Octo-Org --api-url '{}' --git-server-url '{}'",
        scene.github.url(),
        scene.git_url
    );
    type Case<'a> = (String, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            format!("{no_key} --private-key-file '{not_a_key}'"),
            vec![],
            "`--private-key-file`: the private key is not PEM",
        ),
        (
            no_key.clone(),
            vec![("TOKEN_KEEPER_PRIVATE_KEY_FILE", &not_a_key)],
            "`TOKEN_KEEPER_PRIVATE_KEY_FILE`: the private key is not PEM",
        ),
        (
            format!("{no_key} --private-key-env APP_KEY"),
            vec![("APP_KEY", "not a key at all")],
            "`--private-key-env`: the private key is not PEM",
        ),
        (
            job.setup(&scene, ""),
            vec![("TOKEN_KEEPER_OWNER", "bad owner")],
            "`TOKEN_KEEPER_OWNER`: `bad owner` is not a valid GitHub name",
        ),
        (
            job.setup(&scene, "--owner 'bad owner'"),
            vec![("TOKEN_KEEPER_OWNER", "Octo-Org")],
            "`--owner`: `bad owner` is not a valid GitHub name",
        ),
        (
            job.setup(&scene, "--owner Octo-Org"),
            vec![("TOKEN_KEEPER_REFRESH_AFTER", "2h")],
            "`TOKEN_KEEPER_REFRESH_AFTER`: `2h` is not below the token's lifetime",
        ),
        (
            job.setup(&scene, "--enterprise octo-enterprise --owner Octo-Org"),
            vec![],
            "`--enterprise`: an enterprise installation has no owner or repositories: leave `--owner` and `--repositories` empty, or `--enterprise` empty",
        ),
        (
            job.setup(&scene, "--repositories app"),
            vec![("TOKEN_KEEPER_ENTERPRISE", "octo-enterprise")],
            "`TOKEN_KEEPER_ENTERPRISE`: an enterprise installation has no owner or repositories",
        ),
        (
            job.setup(&scene, "--owner Octo-Org"),
            vec![("TOKEN_KEEPER_IDENTITY_COMMAND", "true")],
            "`TOKEN_KEEPER_IDENTITY_COMMAND` is for keyless mode",
        ),
    ];
    for (script, vars, says) in &cases {
        let out = job.shell(script, vars);
        assert!(!out.status.success(), "{script}: {}", text(&out));
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(said.trim().lines().count(), 1, "one line: {said}");
        assert!(said.contains(says), "{script} {vars:?}: {said}");
        assert!(out.stdout.is_empty(), "{script}: {}", text(&out));
    }
    assert_eq!(scene.github.mints(), 0);
    assert_nothing_left(&job);
}

#[tokio::test]
async fn setup_keeps_an_enterprises_token_fresh_for_the_tools_and_leaves_git_alone() {
    let scene = Scene::start(Duration::from_secs(3600)).await;
    let job = CiJob::new(&[("CI_JOB_ID", "8")]);
    let printed = job.path("printed");
    let script = format!(
        "{} > '{printed}'\neval \"$(cat '{printed}')\"\ntest -n \"$(token-keeper token)\"\ntoken-keeper revoke",
        job.setup(&scene, "--enterprise octo-enterprise")
    );
    let out = job.shell(&script, &[]);
    assert_success("the job", &out);
    let printed = fs::read_to_string(&printed).unwrap();
    assert!(printed.contains("TOKEN_KEEPER_STATE="), "{printed}");
    assert!(!printed.contains("GIT_CONFIG"), "no git entries: {printed}");
    assert!(text(&out).contains("git is left alone"), "{}", text(&out));
    assert_eq!(
        scene
            .github
            .seen("GET", "/enterprises/octo-enterprise/installation")
            .len(),
        1
    );
    assert_eq!(scene.github.mints(), 1);
    assert!(scene.github.world().live_tokens().is_empty(), "revoked");
    assert_nothing_left(&job);
}

/// A tool that finds no store says what to run in the words of where it runs: outside Actions,
/// `setup`, never an action's input or step; in an Actions job, the step.
#[test]
fn a_missing_store_is_advised_on_in_the_words_of_where_the_tool_runs() {
    let job = CiJob::new(&[("CI_JOB_ID", "91")]);
    for tool in ["token-keeper token", "token-keeper exec -- true"] {
        let elsewhere = job.shell(tool, &[]);
        let said = text(&elsewhere);
        assert!(!elsewhere.status.success(), "{tool}: {said}");
        assert!(
            said.contains("no token-keeper state in")
                && said.contains("run `token-keeper setup` earlier in this job"),
            "{tool}: {said}"
        );
        assert!(
            !said.contains("input") && !said.contains("git-credentials"),
            "{tool}: {said}"
        );
    }
    let temp = job.tmp.display().to_string();
    let in_actions = job.shell(
        "token-keeper token",
        &[("GITHUB_ACTIONS", "true"), ("RUNNER_TEMP", &temp)],
    );
    assert!(
        text(&in_actions).contains(
            "run the token-keeper step (with `git-credentials: true`) earlier in this job"
        ),
        "{}",
        text(&in_actions)
    );
}
