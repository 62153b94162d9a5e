//! `setup --git-config global`: the user's global git config during and after a job. The
//! entry names a file in the user's home; after revoke the config is byte for byte what it was,
//! wherever git keeps it; two jobs of one user do not take each other's helper; and what a
//! killed job left is harmless, and taken out by the next.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use testkit::assert_success;
use testkit::ci::{CiJob, assert_nothing_left};
use testkit::logs::text;
use testkit::scene::Scene;

/// Setup for `owner` with the global config, then a git command through it, then revoke: what
/// the config held in between.
fn job_through(scene: &Scene, job: &CiJob, extra: &[(&str, &str)], config: &Path) -> String {
    let setup = job.setup(scene, "--owner Octo-Org --git-config global >/dev/null");
    assert_success("setup", &job.shell(&setup, extra));
    let during = fs::read_to_string(config).unwrap_or_default();
    let url = scene.repo_url("Octo-Org", "app");
    assert_success(
        "git through the global config",
        &job.shell(&format!("git ls-remote -q '{url}' >/dev/null"), extra),
    );
    assert_success("revoke", &job.shell("token-keeper revoke", extra));
    assert!(scene.github.world().live_tokens().is_empty());
    assert_nothing_left(job);
    during
}

#[tokio::test]
async fn after_revoke_the_global_config_is_byte_for_byte_what_it_was() {
    let scene = Scene::start(Duration::from_secs(3600)).await;
    let before = [
        None,
        Some("[user]\n\tname = CI"),
        Some(""),
        Some("# ours\n[user]\n\tname = CI\n\n\n"),
    ];
    for before in before {
        let job = CiJob::new(&[("CI_JOB_ID", "50")]);
        let global = job.home.join(".gitconfig");
        if let Some(text) = before {
            fs::write(&global, text).unwrap();
        }
        let during = job_through(&scene, &job, &[], &global);
        assert!(during.contains("[include]"), "{before:?}: {during}");
        match before {
            None => assert!(!global.exists(), "no config made: {:?}", fs::read(&global)),
            Some(text) => assert_eq!(fs::read_to_string(&global).unwrap(), text),
        }
    }
}

#[tokio::test]
async fn the_config_git_writes_is_the_one_edited_xdg_or_named_or_linked() {
    let scene = Scene::start(Duration::from_secs(3600)).await;

    // Only the XDG file: git writes there, and so do we; no `~/.gitconfig` appears.
    let job = CiJob::new(&[("CI_JOB_ID", "51")]);
    let xdg = job.home.join(".config/git/config");
    fs::create_dir_all(xdg.parent().unwrap()).unwrap();
    fs::write(&xdg, "[user]\n\tname = XDG\n").unwrap();
    let during = job_through(&scene, &job, &[], &xdg);
    assert!(during.contains("[include]"), "{during}");
    assert_eq!(fs::read_to_string(&xdg).unwrap(), "[user]\n\tname = XDG\n");
    assert!(!job.home.join(".gitconfig").exists());

    // `GIT_CONFIG_GLOBAL` names another file.
    let job = CiJob::new(&[("CI_JOB_ID", "52")]);
    let named = job.path("named.gitconfig");
    fs::write(&named, "[core]\n\tautocrlf = false").unwrap();
    let vars = [("GIT_CONFIG_GLOBAL", named.as_str())];
    let during = job_through(&scene, &job, &vars, Path::new(&named));
    assert!(during.contains("[include]"), "{during}");
    assert_eq!(
        fs::read_to_string(&named).unwrap(),
        "[core]\n\tautocrlf = false"
    );
    assert!(!job.home.join(".gitconfig").exists());

    // A linked `~/.gitconfig` (a dotfiles folder): the link stays, its target is edited.
    let job = CiJob::new(&[("CI_JOB_ID", "53")]);
    let dotfiles = job.home.join("dotfiles");
    fs::create_dir(&dotfiles).unwrap();
    fs::write(dotfiles.join("gitconfig"), "[user]\n\tname = Dots\n").unwrap();
    let link = job.home.join(".gitconfig");
    std::os::unix::fs::symlink(dotfiles.join("gitconfig"), &link).unwrap();
    let during = job_through(&scene, &job, &[], &link);
    assert!(during.contains("[include]"), "{during}");
    assert!(
        fs::symlink_metadata(&link).unwrap().is_symlink(),
        "still a link"
    );
    assert_eq!(
        fs::read_to_string(dotfiles.join("gitconfig")).unwrap(),
        "[user]\n\tname = Dots\n"
    );
}

#[tokio::test]
async fn a_change_someone_made_meanwhile_stays_and_only_our_entry_goes() {
    let scene = Scene::start(Duration::from_secs(3600)).await;
    let job = CiJob::new(&[("CI_JOB_ID", "54")]);
    let global = job.home.join(".gitconfig");
    fs::write(&global, "[user]\n\tname = CI\n").unwrap();
    let setup = job.setup(&scene, "--owner Octo-Org --git-config global >/dev/null");
    assert_success("setup", &job.shell(&setup, &[]));
    assert_success(
        "their change",
        &job.shell("git config --global user.email ci@example.invalid", &[]),
    );
    assert_success("revoke", &job.shell("token-keeper revoke", &[]));
    let after = fs::read_to_string(&global).unwrap();
    assert!(!after.contains("token-keeper"), "{after}");
    let email = job.shell("git config --global user.email", &[]);
    assert_eq!(
        String::from_utf8_lossy(&email.stdout),
        "ci@example.invalid\n"
    );
    let name = job.shell("git config --global user.name", &[]);
    assert_eq!(String::from_utf8_lossy(&name.stdout), "CI\n");
}

/// The file the global config's entry names, and the folder it is in.
fn included(job: &CiJob, config: &Path) -> PathBuf {
    let text = fs::read_to_string(config).unwrap();
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("path = "))
        .unwrap_or_else(|| panic!("no include: {text}"));
    let file = PathBuf::from(line.trim_matches('"'));
    assert!(
        file.starts_with(&job.home),
        "in the home: {}",
        file.display()
    );
    file
}

#[tokio::test]
async fn the_entry_names_a_file_only_the_user_can_make_and_a_killed_jobs_is_taken_out_later() {
    let scene = Scene::start(Duration::from_secs(3600)).await;
    let killed = CiJob::new(&[("CI_JOB_ID", "55")]);
    let global = killed.home.join(".gitconfig");
    fs::write(&global, "[user]\n\tname = CI\n").unwrap();
    let setup = killed.setup(&scene, "--owner Octo-Org --git-config global >/dev/null");
    assert_success("setup", &killed.shell(&setup, &[]));
    let file = included(&killed, &global);
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(file.parent().unwrap()), 0o700);
    assert!(!file.starts_with(&killed.tmp), "not in a temporary folder");

    // The job is killed, and its temporary folder cleaned away.
    for entry in fs::read_dir(&killed.tmp).unwrap().flatten() {
        fs::remove_dir_all(entry.path()).unwrap();
    }
    // The next job of the user, sharing the home, takes the dead entry out before adding its own.
    let next = CiJob::new(&[("CI_JOB_ID", "56")]);
    let home = killed.home.display().to_string();
    let vars = [("HOME", home.as_str())];
    let setup = next.setup(&scene, "--owner Octo-Org --git-config global >/dev/null");
    assert_success("the next setup", &next.shell(&setup, &vars));
    let during = fs::read_to_string(&global).unwrap();
    assert_eq!(during.matches("[include]").count(), 1, "{during}");
    assert!(!file.exists(), "the dead entry's file is gone");
    assert_success("revoke", &next.shell("token-keeper revoke", &vars));
    assert_eq!(
        fs::read_to_string(&global).unwrap(),
        "[user]\n\tname = CI\n"
    );
}

#[tokio::test]
async fn two_jobs_of_one_user_do_not_take_each_others_helper() {
    let scene = Scene::start(Duration::from_secs(3)).await;
    let first = CiJob::new(&[("BUILD_TAG", "jenkins-app-1")]);
    let second = CiJob::new(&[("BUILD_TAG", "jenkins-app-2")]);
    let home = first.home.display().to_string();
    let vars = [("HOME", home.as_str())];
    let global = first.home.join(".gitconfig");
    let octo = |job: &CiJob| job.setup(&scene, "--owner Octo-Org --git-config global >/dev/null");
    assert_success("the first job", &first.shell(&octo(&first), &vars));

    let refused = second.shell(&octo(&second), &vars);
    assert!(!refused.status.success(), "{}", text(&refused));
    let said = text(&refused);
    assert!(said.contains("of another job of this user"), "{said}");
    assert!(said.contains("--git-config env"), "{said}");
    assert_eq!(
        fs::read_to_string(&global)
            .unwrap()
            .matches("[include]")
            .count(),
        1
    );
    // Another owner's helper does not stand in the way.
    let other = second.setup(&scene, "--owner Other-Org --git-config global >/dev/null");
    assert_success(
        "the second job, another owner",
        &second.shell(&other, &vars),
    );

    // The first job's git still gets its own fresh tokens.
    let url = scene.repo_url("Octo-Org", "app");
    std::thread::sleep(Duration::from_secs(4));
    assert_success(
        "the first job's git after expiry",
        &first.shell(&format!("git ls-remote -q '{url}' >/dev/null"), &vars),
    );
    assert_success(
        "revoke the first",
        &first.shell("token-keeper revoke", &vars),
    );
    assert_eq!(
        fs::read_to_string(&global)
            .unwrap()
            .matches("[include]")
            .count(),
        1
    );
    assert_success(
        "revoke the second",
        &second.shell("token-keeper revoke", &vars),
    );
    assert!(!global.exists(), "{:?}", fs::read_to_string(&global));
    assert!(scene.github.world().live_tokens().is_empty());
}
