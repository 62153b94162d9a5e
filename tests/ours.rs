//! The state directory is ours alone: a main step running as root (in the action's container)
//! follows no link an earlier step planted, and keeps no folder another user could change.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

use testkit::fake_github::{FakeGitHub, app_inputs};
use testkit::runner::{Job, View, is_root};

/// The runner's user, whose earlier steps could plant things in `_temp`.
const RUNNER_UID: u32 = 1001;

fn root_needed() -> bool {
    if is_root() {
        return false;
    }
    eprintln!("skipped: needs root, as the action's container runs");
    true
}

#[tokio::test]
async fn a_planted_link_in_the_step_folder_is_not_followed() {
    if root_needed() {
        return;
    }
    let github = FakeGitHub::start().await;
    let job = Job::new(&github.url());
    let victim_dir = tempfile::tempdir().unwrap();
    let victim = victim_dir.path().join("root-owned");
    fs::write(&victim, "root's own\n").unwrap();
    let step = job.temp.join("token-keeper/step-__org_token-keeper");
    fs::create_dir_all(&step).unwrap();
    symlink(&victim, step.join("ledger")).unwrap();
    job.chown_all(RUNNER_UID);

    let main = job.main(&app_inputs(&[]), View::Container);
    assert!(
        main.the_error().contains("cannot record the new token"),
        "{}",
        main.log()
    );
    assert_eq!(fs::read_to_string(&victim).unwrap(), "root's own\n");
    assert_eq!(fs::metadata(&victim).unwrap().uid(), 0, "still root's");
    assert!(
        github.world().issued[0].revoked,
        "the unrecorded token was revoked"
    );
}

#[tokio::test]
async fn a_planted_link_for_the_job_folder_is_refused_before_minting() {
    if root_needed() {
        return;
    }
    let github = FakeGitHub::start().await;
    let job = Job::new(&github.url());
    let elsewhere = tempfile::tempdir().unwrap();
    symlink(elsewhere.path(), job.temp.join("token-keeper")).unwrap();
    let main = job.main(&app_inputs(&[]), View::Container);
    let error = main.the_error();
    assert!(
        error.contains("is a link or a file where our folder goes"),
        "{error}"
    );
    assert_eq!(github.mints(), 0);
    assert_eq!(
        fs::read_dir(elsewhere.path()).unwrap().count(),
        0,
        "nothing written there"
    );
    assert_eq!(
        fs::metadata(elsewhere.path()).unwrap().uid(),
        0,
        "not handed over"
    );
}

#[tokio::test]
async fn a_loose_folder_is_made_private_and_a_strangers_refused() {
    if root_needed() {
        return;
    }
    let github = FakeGitHub::start().await;
    let job = Job::new(&github.url());
    let root = job.temp.join("token-keeper");
    fs::create_dir(&root).unwrap();
    fs::set_permissions(&root, fs::Permissions::from_mode(0o777)).unwrap();
    job.chown_all(RUNNER_UID);
    job.main(&app_inputs(&[]), View::Container).assert_ok();
    assert_eq!(fs::metadata(&root).unwrap().mode() & 0o777, 0o700);

    let job = Job::new(&github.url());
    let root = job.temp.join("token-keeper");
    fs::create_dir(&root).unwrap();
    job.chown_all(RUNNER_UID);
    std::os::unix::fs::chown(&root, Some(RUNNER_UID + 1), None).unwrap();
    let main = job.main(&app_inputs(&[]), View::Container);
    assert!(
        main.the_error().contains("belongs to uid 1002"),
        "{}",
        main.log()
    );
}

#[tokio::test]
async fn a_planted_hard_link_in_the_step_folder_is_neither_written_nor_handed_over() {
    if root_needed() {
        return;
    }
    for name in ["ledger", "lock"] {
        let github = FakeGitHub::start().await;
        let job = Job::new(&github.url());
        let step = job.temp.join("token-keeper/step-__org_token-keeper");
        fs::create_dir_all(&step).unwrap();
        job.chown_all(RUNNER_UID);
        // Root's file, on the job's file system, under a second name in the step's folder.
        let victim = job.temp.join("root-owned");
        fs::write(&victim, "root's own\n").unwrap();
        fs::hard_link(&victim, step.join(name)).unwrap();

        let main = job.main(&app_inputs(&[]), View::Container);
        let error = main.the_error();
        assert!(error.contains("hard link"), "{name}: {error}");
        assert_eq!(
            fs::read_to_string(&victim).unwrap(),
            "root's own\n",
            "{name}"
        );
        assert_eq!(
            fs::metadata(&victim).unwrap().uid(),
            0,
            "{name}: still root's"
        );
        assert!(
            github.world().issued.iter().all(|t| t.revoked),
            "{name}: nothing left live"
        );
    }
}
