//! The built image under a real engine, run the way actions/runner runs a container action: main
//! in a container, later steps on the host with the real git through the binary the container
//! copied out, as the runner's unprivileged user, then post in a container again.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use testkit::assert_success;
use testkit::engine;
use testkit::git_server::git_command;
use testkit::runner::{LaterStep, View, age_cached_token, as_user, is_root};
use testkit::scene::{KeylessScene, Scene, assert_no_key_material};
use testkit::walk;

/// The runner's user on GitHub-hosted runners.
const RUNNER_UID: u32 = 1001;

/// A later step's command as the runner's user, where the tests can switch users.
fn as_runner(step: &LaterStep, args: &[&str], dir: &Path) -> Output {
    let mut command: Command = git_command(dir);
    command.envs(&step.env).args(args);
    if is_root() {
        as_user(&mut command, RUNNER_UID);
    }
    command.output().expect("git")
}

#[tokio::test]
async fn a_long_job_mints_pushes_after_an_hour_and_revokes_on_the_built_image() {
    let Some(image) = engine::image() else {
        return;
    };
    let w = Scene::start(Duration::from_secs(3600)).await;
    if is_root() {
        w.job.chown_all(RUNNER_UID);
    }
    let view = View::Engine {
        image,
        runner_temp: true,
    };
    let inputs = w.inputs(&[]);
    let main = w.job.main(&inputs, view);
    main.assert_ok();
    let token = &main.outputs["token"];
    // Masks come first, the App's JWTs' and then the token's, before anything shows it.
    let first = main.stdout.lines().find(|l| l.contains(token.as_str()));
    assert_eq!(first, Some(format!("::add-mask::{token}").as_str()));
    assert!(main.stdout.starts_with("::add-mask::"), "{}", main.stdout);
    assert!(
        main.state["dir"].starts_with("/github/runner_temp/token-keeper/"),
        "{}",
        main.state["dir"]
    );

    // Later steps run the binary the container copied out: the image's own static binary.
    let copied = Path::new(&main.path[0]).join("token-keeper");
    let extracted = tempfile::tempdir().unwrap();
    image.file("/usr/local/bin/token-keeper", extracted.path());
    assert_eq!(
        fs::read(&copied).expect("the copied binary"),
        fs::read(extracted.path().join("token-keeper")).unwrap(),
        "{} is the image's binary",
        copied.display()
    );
    let root_dir = w.job.temp.join("token-keeper");
    if is_root() {
        for entry in walk(&root_dir) {
            let meta = fs::symlink_metadata(&entry).unwrap();
            assert_eq!(
                meta.uid(),
                RUNNER_UID,
                "{} is the runner's",
                entry.display()
            );
        }
    }

    let step = LaterStep::after(&w.job, &main);
    fs::set_permissions(step.dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let repo = step.dir.path().join("app");
    assert_success(
        "git",
        &as_runner(
            &step,
            &["clone", "--quiet", &w.repo_url("Octo-Org", "app"), "app"],
            step.dir.path(),
        ),
    );
    // An hour into the build: the push needs a token minted after the main step.
    age_cached_token(&w.job, &main, 50 * 60);
    fs::write(repo.join("late.txt"), "built after the first token aged\n").unwrap();
    assert_success("git", &as_runner(&step, &["add", "late.txt"], &repo));
    assert_success(
        "git",
        &as_runner(&step, &["commit", "--quiet", "-m", "late"], &repo),
    );
    assert_success(
        "git",
        &as_runner(&step, &["push", "--quiet", "origin", "main"], &repo),
    );
    assert_eq!(w.github.mints(), 2, "the push re-minted once");
    assert_eq!(w.github.world().live_tokens().len(), 2);

    let post = w.job.post(&inputs, &main.state, view);
    post.assert_ok();
    assert!(w.github.world().live_tokens().is_empty(), "both revoked");
    assert!(!root_dir.exists(), "state, key and binary removed");
}

#[tokio::test]
async fn on_old_runners_the_built_image_keeps_the_state_under_github_home() {
    let Some(image) = engine::image() else {
        return;
    };
    let w = Scene::start(Duration::from_secs(3600)).await;
    let view = View::Engine {
        image,
        runner_temp: false,
    };
    let inputs = w.inputs(&[]);
    let main = w.job.main(&inputs, view);
    main.assert_ok();
    assert!(main.env["GIT_CONFIG_VALUE_1"].contains("$RUNNER_TEMP/_github_home/token-keeper/"));
    let step = LaterStep::after(&w.job, &main);
    step.assert_git(&["ls-remote", &w.repo_url("Octo-Org", "app")]);

    w.job.post(&inputs, &main.state, view).assert_ok();
    assert!(w.github.world().live_tokens().is_empty());
    assert!(!w.job.home.join("token-keeper").exists());
}

#[tokio::test]
async fn bad_input_on_the_built_image_is_one_error_and_post_succeeds() {
    let Some(image) = engine::image() else {
        return;
    };
    let w = Scene::start(Duration::from_secs(3600)).await;
    let view = View::Engine {
        image,
        runner_temp: true,
    };
    let inputs = w.inputs(&[("refresh-after", "two hours")]);
    let main = w.job.main(&inputs, view);
    assert!(main.the_error().contains("refresh-after"), "{}", main.log());
    let post = w.job.post(&inputs, &main.state, view);
    post.assert_ok();
    assert_eq!(w.github.mints(), 0);
    assert!(!w.job.temp.join("token-keeper").exists());
}

#[tokio::test]
async fn a_keyless_job_runs_on_the_built_image() {
    let Some(image) = engine::image() else {
        return;
    };
    let k = KeylessScene::start().await;
    let view = View::Engine {
        image,
        runner_temp: true,
    };
    let sts = k.sts.url();
    let inputs = k.inputs(&sts, &[]);
    let main = k.job.main(&inputs, view);
    main.assert_ok();
    let root = k.job.temp.join("token-keeper");
    assert_no_key_material(&root);
    let step = k.later(&main);
    age_cached_token(&k.job, &main, 50 * 60);
    step.assert_git(&["ls-remote", &k.repo_url("Octo-Org", "app")]);
    assert_eq!(k.sts.world().exchanges, 2, "the later step exchanged again");
    k.job.post(&inputs, &main.state, view).assert_ok();
    assert!(k.github.world().live_tokens().is_empty());
    assert!(!root.exists());
}
