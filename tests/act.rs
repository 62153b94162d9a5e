//! nektos/act runs a workflow that uses the native entry: the helper answers after the first
//! token expired, and the post step revokes every token, as the fake GitHub sees it.

use std::time::{Duration, Instant};

use testkit::act::{ActRepo, DockerApi, runner_image};
use testkit::assert_success;
use testkit::background::{group_runs, running};
use testkit::engine;
use testkit::fake_github::{APP_KEY, CLIENT_ID};
use testkit::logs::{assert_no_secret_shown, text};
use testkit::native_entry;
use testkit::scene::Scene;

/// How long the long job's tokens live: long enough that the post step, which act's engine may
/// start seconds after the push, still finds the push's token live to revoke.
const LIFETIME: Duration = Duration::from_secs(6);

/// A long job: mint with the native entry, clone, outlive the token, push, then the post step.
fn long_job(scene: &Scene) -> String {
    format!(
        r#"on: push
jobs:
  long:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: ./native
        id: app
        with:
          client-id: {CLIENT_ID}
          private-key: ${{{{ secrets.APP_KEY }}}}
          owner: Octo-Org
          repositories: app
          github-api-url: {api}
          git-server-url: {git}
      - run: git clone --quiet {repo} app
      - run: sleep {outlive}
      - run: |
          cd app
          git -c user.name=act -c user.email=act@example.invalid commit --quiet --allow-empty -m late
          git push --quiet origin HEAD:main
      - run: test -n "$(token-keeper token)"
"#,
        outlive = LIFETIME.as_secs() + 1,
        api = scene.github.url(),
        git = scene.git_url,
        repo = scene.repo_url("Octo-Org", "app"),
    )
}

/// Run `job` while, once the push has re-minted, the fake's later tokens last an hour: the
/// post step, however late a loaded machine runs it, then has a live token to revoke.
fn run_long(scene: &Scene, job: impl FnOnce() -> std::process::Output) -> std::process::Output {
    let world = scene.github.handle();
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let mut world = world.lock().unwrap_or_else(|e| e.into_inner());
                if world.issued.len() >= 2 {
                    world.token_lifetime = Duration::from_secs(3600);
                    return;
                }
                drop(world);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let out = job();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        out
    })
}

/// The long job passed: a re-mint for the push, every token revoked, none shown.
#[track_caller]
fn assert_kept_fresh_and_revoked(scene: &Scene, out: &std::process::Output) {
    let log = text(out);
    assert_success("act", out);
    assert!(log.contains("Job succeeded"), "{log}");
    assert!(scene.github.mints() >= 2, "the push re-minted:\n{log}");
    assert!(
        scene.github.world().live_tokens().is_empty(),
        "the post step revoked every token:\n{log}"
    );
    // Only the post step revokes, so a revoked token shows it ran. Its own line is not looked
    // for: act now and then drops a short post step's output from its log.
    assert!(
        scene.github.world().issued.iter().any(|t| t.revoked),
        "the post step ran and revoked:\n{log}"
    );
    assert_no_secret_shown("act's log", &log, &scene.github.tokens());
    // act was given the App's key as a secret: none of its lines shows either.
    let key: Vec<String> = APP_KEY
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::to_owned)
        .collect();
    assert_no_secret_shown("act's log, the App's key", &log, &key);
}

#[tokio::test]
async fn act_on_the_host_pushes_after_expiry_and_revokes_every_token() {
    let scene = Scene::start(LIFETIME).await;
    let repo = ActRepo::new(&long_job(&scene));
    let out = run_long(&scene, || {
        repo.run(
            &["-P", "ubuntu-latest=-self-hosted", "-s", "APP_KEY"],
            &[("APP_KEY", APP_KEY)],
        )
    });
    assert_kept_fresh_and_revoked(&scene, &out);
}

#[tokio::test]
async fn act_in_a_job_container_pushes_after_expiry_and_revokes_every_token() {
    let Some(engine) = engine::engine() else {
        return;
    };
    let api = DockerApi::start(&engine);
    let image = runner_image(&engine);
    let scene = Scene::start(LIFETIME).await;
    let repo = ActRepo::new(&long_job(&scene));
    let platform = format!("ubuntu-latest={image}");
    let out = run_long(&scene, || {
        repo.run_in(
            &api,
            &["-P", &platform, "--pull=false", "-s", "APP_KEY"],
            &[("APP_KEY", APP_KEY)],
        )
    });
    assert!(
        text(&out).contains(&format!("Start image={image}")),
        "{}",
        text(&out)
    );
    assert_kept_fresh_and_revoked(&scene, &out);
}

/// The job container runs node actions under the runner's node (the major the native entry
/// declares), whatever node the host has.
#[test]
fn the_job_containers_node_is_the_runners_whatever_the_hosts() {
    let Some(engine) = engine::engine() else {
        return;
    };
    let image = runner_image(&engine);
    let declared = std::fs::read_to_string(native_entry::root().join("native/action.yml"))
        .expect("native/action.yml");
    let major = declared
        .lines()
        .find_map(|l| l.trim().strip_prefix("using: node"))
        .expect("the native entry's node");
    let out = std::process::Command::new(&engine)
        .args(["run", "--rm", image, "node", "--version"])
        .output()
        .expect("engine run");
    assert_success("node in the runner image", &out);
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(version.starts_with(&format!("v{major}.")), "{version}");
}

/// A test that fails while act runs its job in a container leaves nothing running: act, the
/// job's container and volumes, and podman's API service all end with it.
#[test]
fn a_job_container_run_that_fails_leaves_nothing_running() {
    let Some(engine) = engine::engine() else {
        return;
    };
    let image = runner_image(&engine);
    let repo = ActRepo::new(
        "on: push
jobs:
  hangs:
    runs-on: ubuntu-latest
    steps:
      - run: sleep 600
",
    );
    let platform = format!("ubuntu-latest={image}");
    const ON_PURPOSE: &str = "this test fails on purpose while its job runs";
    let mut started = None;
    let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let api = DockerApi::start(&engine);
        let run = repo.start(Some(&api), &["-P", &platform, "--pull=false"], &[]);
        started = Some((run.pid(), api.pid()));
        let since = Instant::now();
        while repo.containers(&engine, Some("running")).is_empty() {
            assert!(
                since.elapsed() < Duration::from_secs(120),
                "act started no job container"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{ON_PURPOSE}");
    }));
    let why = failed.expect_err("the run failed");
    assert_eq!(
        why.downcast_ref::<String>().map(String::as_str),
        Some(ON_PURPOSE)
    );
    let (act, service) = started.expect("act started");
    assert_eq!(
        repo.containers(&engine, None),
        Vec::<String>::new(),
        "no job container"
    );
    assert_eq!(repo.volumes(&engine), Vec::<String>::new(), "no job volume");
    assert!(!running(act), "act ended");
    assert!(!group_runs(act), "nothing act started runs");
    if let Some(service) = service {
        assert!(!running(service), "podman's API service ended");
    }
}
