//! The stores `setup` makes and `revoke` ends: only a folder setup made and marked is ended, and
//! only the files it wrote; every store the job made is found, however it was named, and ended
//! at once; nothing is minted or served once the end has begun; and on a shared machine each
//! user's stores keep apart.

use std::fs;
use std::time::{Duration, Instant};

use wiremock::ResponseTemplate;

use testkit::assert_success;
use testkit::ci::{CiJob, assert_nothing_left};
use testkit::logs::text;
use testkit::runner::is_root;
use testkit::scene::Scene;

#[tokio::test]
async fn revoke_and_setup_refuse_a_folder_that_is_not_a_store_and_touch_nothing_in_it() {
    let scene = Scene::start(Duration::from_secs(3600)).await;
    let job = CiJob::new(&[("CI_JOB_ID", "40")]);
    let project = job.path("project");
    fs::create_dir(&project).unwrap();
    fs::write(format!("{project}/main.rs"), "fn main() {}\n").unwrap();
    fs::write(
        format!("{project}/ledger"),
        "our own ledger, not a token's\n",
    )
    .unwrap();

    for (what, script, extra) in [
        (
            "--state",
            format!("token-keeper revoke --state '{project}'"),
            vec![],
        ),
        (
            "TOKEN_KEEPER_STATE",
            "token-keeper revoke".to_owned(),
            vec![("TOKEN_KEEPER_STATE", project.as_str())],
        ),
    ] {
        let out = job.shell(&script, &extra);
        assert!(!out.status.success(), "{what}: {}", text(&out));
        assert!(
            text(&out).contains("is not a token-keeper store"),
            "{what}: {}",
            text(&out)
        );
    }
    let setup = job.shell(
        &job.setup(&scene, &format!("--owner Octo-Org --state '{project}'")),
        &[],
    );
    assert!(!setup.status.success(), "{}", text(&setup));
    assert!(
        text(&setup).contains("holds files already"),
        "{}",
        text(&setup)
    );
    assert_eq!(scene.github.mints(), 0);
    assert_eq!(
        fs::read_to_string(format!("{project}/main.rs")).unwrap(),
        "fn main() {}\n"
    );
    assert_eq!(
        fs::read_to_string(format!("{project}/ledger")).unwrap(),
        "our own ledger, not a token's\n"
    );

    // An empty folder, as `mktemp -d` makes, is a store's.
    let empty = job.path("empty");
    fs::create_dir(&empty).unwrap();
    let made = job.shell(
        &job.setup(
            &scene,
            &format!("--owner Octo-Org --state '{empty}' >/dev/null"),
        ),
        &[],
    );
    assert_success("setup in an empty folder", &made);
    // A file of someone else's in a store keeps the folder; what we wrote goes all the same.
    fs::write(format!("{empty}/notes.txt"), "mine\n").unwrap();
    let out = job.shell("token-keeper revoke", &[]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("`notes.txt`"), "{}", text(&out));
    assert!(scene.github.world().live_tokens().is_empty());
    assert_eq!(
        fs::read_to_string(format!("{empty}/notes.txt")).unwrap(),
        "mine\n"
    );
    // Its marks and its lock stay with the store that stays.
    for ours in ["ledger", "state.json", "key.pem"] {
        assert!(!std::path::Path::new(&empty).join(ours).exists(), "{ours}");
    }
}

#[tokio::test]
async fn a_link_among_the_jobs_stores_is_not_followed() {
    let scene = Scene::start(Duration::from_secs(3600)).await;
    let job = CiJob::new(&[("CI_JOB_ID", "41")]);
    assert_success(
        "setup",
        &job.shell(&job.setup(&scene, "--owner Octo-Org >/dev/null"), &[]),
    );
    let store = job.stores().remove(0);
    // Someone replaces the store with a link to a folder of theirs that looks like one.
    let theirs = job.path("theirs");
    fs::create_dir(&theirs).unwrap();
    for name in ["token-keeper-store", "ledger", "state.json"] {
        fs::write(format!("{theirs}/{name}"), "theirs\n").unwrap();
    }
    let moved = job.path("moved");
    fs::rename(&store, &moved).unwrap();
    std::os::unix::fs::symlink(&theirs, &store).unwrap();

    let out = job.shell("token-keeper revoke", &[]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("is a link"), "{}", text(&out));
    for name in ["token-keeper-store", "ledger", "state.json"] {
        assert_eq!(
            fs::read_to_string(format!("{theirs}/{name}")).unwrap(),
            "theirs\n"
        );
    }
    // The real store, back where it was, is ended.
    fs::remove_file(&store).unwrap();
    fs::rename(&moved, &store).unwrap();
    assert_success("revoke", &job.shell("token-keeper revoke", &[]));
    assert!(scene.github.world().live_tokens().is_empty());
    assert_nothing_left(&job);
}

#[tokio::test]
async fn revoke_finds_a_store_made_elsewhere_after_a_later_setup_replaced_the_variable() {
    let scene = Scene::start(Duration::from_secs(3600)).await;
    let job = CiJob::new(&[("CI_JOB_ID", "42")]);
    let elsewhere = job.path("elsewhere");
    let script = format!(
        "eval \"$({})\"\neval \"$({})\"\ntest \"$TOKEN_KEEPER_STATE\" != '{elsewhere}'",
        job.setup(&scene, &format!("--owner Octo-Org --state '{elsewhere}'")),
        job.setup(&scene, "--owner Other-Org"),
    );
    assert_success("two setups", &job.shell(&script, &[]));
    assert_eq!(scene.github.world().live_tokens().len(), 2);
    // A shell with nothing but the CI's variables.
    let out = job.shell("token-keeper revoke", &[]);
    assert_success("revoke", &out);
    assert!(
        scene.github.world().live_tokens().is_empty(),
        "{}",
        text(&out)
    );
    assert!(!std::path::Path::new(&elsewhere).exists(), "{}", text(&out));
    assert!(
        !job.home.join(".config").exists(),
        "nothing made in the home"
    );
    assert_nothing_left(&job);
}

#[tokio::test]
async fn nothing_is_minted_or_served_from_a_store_once_its_end_began() {
    let scene = Scene::start(Duration::from_secs(3600)).await;
    // A re-mint is on its way while revoke runs: its answer comes sooner, or later, than
    // revoke stops waiting for the store's lock.
    for (slow, revoke_waits) in [
        (Duration::from_millis(1500), true),
        (Duration::from_secs(5), false),
    ] {
        let job = CiJob::new(&[("CI_JOB_ID", "43")]);
        let script = format!(
            "eval \"$({})\" && printf %s \"$TOKEN_KEEPER_STATE\"",
            job.setup(&scene, "--owner Octo-Org")
        );
        let made = job.shell(&script, &[]);
        assert_success("setup", &made);
        let store = String::from_utf8_lossy(&made.stdout)
            .lines()
            .last()
            .unwrap()
            .to_owned();
        token_keeper::backdate_cached_token(store.as_ref(), 55 * 60, false).unwrap();
        scene.github.world().slow_next_mint = Some(slow);
        let mints = scene.github.mints();
        let asked = || scene.github.seen("POST", "/app/installations/").len();
        let before = asked();
        let (served, revoked) = std::thread::scope(|s| {
            let served =
                s.spawn(|| job.shell("token-keeper token", &[("TOKEN_KEEPER_STATE", &store)]));
            while asked() <= before {
                std::thread::sleep(Duration::from_millis(20));
            }
            let revoked = job.shell("token-keeper revoke", &[]);
            (served.join().unwrap(), revoked)
        });
        assert_eq!(scene.github.mints(), mints + 1, "the re-mint got its token");
        assert!(
            !served.status.success(),
            "nothing served: {}",
            text(&served)
        );
        assert!(served.stdout.is_empty(), "{}", text(&served));
        assert!(text(&served).contains("being ended"), "{}", text(&served));
        assert_eq!(revoked.status.success(), revoke_waits, "{}", text(&revoked));
        assert!(
            scene.github.world().live_tokens().is_empty(),
            "{}\n{}",
            text(&served),
            text(&revoked)
        );
        if !revoke_waits {
            assert_success("revoke again", &job.shell("token-keeper revoke", &[]));
        }
        assert_nothing_left(&job);
    }
}

#[tokio::test]
async fn revoke_ends_every_store_at_once_within_one_bound() {
    let scene = Scene::start(Duration::from_secs(3600)).await;
    let job = CiJob::new(&[("CI_JOB_ID", "44")]);
    for owner in ["Octo-Org", "Other-Org"].repeat(3) {
        let setup = job.setup(&scene, &format!("--owner {owner} >/dev/null"));
        assert_success("setup", &job.shell(&setup, &[]));
    }
    let hang = ResponseTemplate::new(204).set_delay(Duration::from_secs(60));
    for _ in 0..100 {
        scene.github.fail_next("/installation/token", hang.clone());
    }
    let started = Instant::now();
    let out = job.shell("token-keeper revoke", &[("TOKEN_KEEPER_DEADLINE", "2s")]);
    let took = started.elapsed();
    assert!(!out.status.success(), "{}", text(&out));
    // One store after another, six would take six deadlines.
    assert!(took < Duration::from_secs(6), "{took:?}: {}", text(&out));
    assert_eq!(
        text(&out).matches("could not revoke").count(),
        6,
        "{}",
        text(&out)
    );
    scene.github.clear_faults();
    assert_success("revoke again", &job.shell("token-keeper revoke", &[]));
    assert!(scene.github.world().live_tokens().is_empty());
}

#[tokio::test]
async fn a_store_a_killed_job_left_is_swept_by_the_users_next_setup() {
    let scene = Scene::start(Duration::from_secs(3600)).await;
    let tmp = tempfile::tempdir().unwrap();
    let shared = tmp.path().display().to_string();
    let killed = CiJob::new(&[("CI_JOB_ID", "45"), ("WORKSPACE_TMP", &shared)]);
    let idle = CiJob::new(&[("CI_JOB_ID", "46"), ("WORKSPACE_TMP", &shared)]);
    for job in [&killed, &idle] {
        assert_success(
            "setup",
            &job.shell(&job.setup(&scene, "--owner Octo-Org >/dev/null"), &[]),
        );
    }
    let stores = |job: &str| -> Vec<std::path::PathBuf> {
        let user = fs::read_dir(tmp.path())
            .unwrap()
            .flatten()
            .next()
            .unwrap()
            .path();
        fs::read_dir(user.join(job))
            .map(|e| {
                e.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_dir())
                    .collect()
            })
            .unwrap_or_default()
    };
    let left = stores("45");
    assert_eq!(left.len(), 1);
    // The killed job's tokens expired a day and more ago; the idle job's an hour ago.
    token_keeper::backdate_ledger(&left[0], 25 * 3600 + 3600).unwrap();
    token_keeper::backdate_ledger(&stores("46")[0], 2 * 3600).unwrap();

    let next = CiJob::new(&[("CI_JOB_ID", "47"), ("WORKSPACE_TMP", &shared)]);
    assert_success(
        "the next setup",
        &next.shell(&next.setup(&scene, "--owner Octo-Org >/dev/null"), &[]),
    );
    assert!(
        !left[0].exists(),
        "the killed job's store, key and all, is gone"
    );
    assert!(stores("45").is_empty());
    assert_eq!(stores("46").len(), 1, "an idle job's store stays");
    assert!(stores("46")[0].join("key.pem").exists());
    assert_eq!(stores("47").len(), 1);
}

#[tokio::test]
async fn a_users_folder_that_another_user_made_or_linked_is_refused_before_minting() {
    if !is_root() {
        eprintln!("skipped: needs root, to be another user");
        return;
    }
    let scene = Scene::start(Duration::from_secs(3600)).await;
    let job = CiJob::new(&[("CI_JOB_ID", "48")]);
    let mine = job.tmp.join("token-keeper-0");
    fs::create_dir(&mine).unwrap();
    std::os::unix::fs::chown(&mine, Some(1001), Some(1001)).unwrap();
    let out = job.shell(&job.setup(&scene, "--owner Octo-Org"), &[]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("belongs to uid 1001"), "{}", text(&out));
    fs::remove_dir(&mine).unwrap();

    let elsewhere = job.path("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &mine).unwrap();
    let out = job.shell(&job.setup(&scene, "--owner Octo-Org"), &[]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("is a link"), "{}", text(&out));
    assert!(
        fs::read_dir(&elsewhere).unwrap().next().is_none(),
        "nothing written there"
    );
    assert_eq!(scene.github.mints(), 0);
}

#[tokio::test]
async fn a_refused_new_token_that_could_not_be_revoked_is_kept_for_revoke() {
    let scene = Scene::start(Duration::from_secs(3600)).await;
    let job = CiJob::new(&[("CI_JOB_ID", "49")]);
    // The answer names a repository no repository is named: the token is refused, and GitHub
    // will not take its revocation just now.
    scene.github.world().edit_mint_answer = Some(|answer| {
        answer["repositories"] = serde_json::json!([{"name": "../elsewhere"}]);
    });
    for _ in 0..100 {
        scene
            .github
            .fail_next("/installation/token", ResponseTemplate::new(503));
    }
    let out = job.shell(
        &job.setup(&scene, "--owner Octo-Org"),
        &[("TOKEN_KEEPER_DEADLINE", "1s")],
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(out.stdout.is_empty(), "{}", text(&out));
    assert_eq!(
        scene.github.world().live_tokens().len(),
        1,
        "{}",
        text(&out)
    );
    assert_eq!(
        job.stores().len(),
        1,
        "kept, with its ledger: {}",
        text(&out)
    );

    scene.github.clear_faults();
    assert_success("revoke", &job.shell("token-keeper revoke", &[]));
    assert!(scene.github.world().live_tokens().is_empty());
    assert_nothing_left(&job);
}
