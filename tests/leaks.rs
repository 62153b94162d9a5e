//! Nothing leaks: a whole job (main step, git through the helper, `token`, `exec`, a re-mint, post)
//! with every byte it writes collected. Tokens appear only after their mask line and in the
//! intended outputs and state files; the key only in the key file; after post, neither anywhere.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::support::fake_github::{APP_ID, APP_KEY, FakeGitHub};
use crate::support::git_server::{GitServer, git_command};
use crate::support::runner::{Job, LaterStep, StepRun, View, age_cached_token};

/// Every file below `dir`, with its contents.
fn files_below(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let kind = entry.file_type().expect("file type");
        if kind.is_dir() && path.ends_with("token-keeper/bin") {
            // The job's copy of our own executable: large, and no secret goes there.
            continue;
        } else if kind.is_dir() {
            found.extend(files_below(&path));
        } else if kind.is_file() {
            found.push((path.clone(), fs::read(&path).expect("read")));
        }
    }
    found
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Lines of the key's body: any of them showing up is a leak.
fn key_needles() -> Vec<&'static str> {
    APP_KEY
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect()
}

/// In a step's stdout, the first line that shows `token` must be its mask line.
fn assert_masked_first(run: &StepRun, token: &str) {
    if let Some(first) = run.stdout.lines().find(|l| l.contains(token)) {
        assert_eq!(
            first,
            format!("::add-mask::{token}"),
            "the mask comes first"
        );
    }
    assert!(!run.stderr.contains(token), "stderr: {}", run.stderr);
}

#[tokio::test]
async fn a_whole_job_leaks_neither_token_nor_key() {
    let github = FakeGitHub::start().await;
    let git = GitServer::start(github.handle());
    git.create_repo("Octo-Org", "app");
    let job = Job::new(&github.url());
    let git_url = git.url();
    let inputs = [
        ("app-id", APP_ID),
        ("private-key", APP_KEY),
        ("git-server-url", git_url.as_str()),
    ];
    let main = job.main(&inputs, View::Host);
    main.assert_ok();
    let step = LaterStep::after(&job, &main);
    let logs = tempfile::tempdir().expect("logs");

    // Git as a build runs it, its stderr captured to a file; then a re-mint, then the tools.
    let repo_url = format!("{git_url}/Octo-Org/app.git");
    // Both streams, as a build that keeps its logs does.
    let captured = |name: &str, dir: &Path, args: &[&str]| {
        let log = fs::File::create(logs.path().join(name)).expect("log file");
        let status = git_command(dir)
            .envs(&step.env)
            .args(args)
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .status()
            .expect("git");
        assert!(status.success(), "git {args:?}");
    };
    captured(
        "clone.log",
        step.dir.path(),
        &["clone", "--progress", &repo_url, "app"],
    );
    age_cached_token(&job, &main, 50 * 60);
    let repo = step.dir.path().join("app");
    fs::write(repo.join("build.txt"), "built\n").expect("write");
    captured("add.log", &repo, &["add", "build.txt"]);
    captured("commit.log", &repo, &["commit", "-m", "build"]);
    captured("push.log", &repo, &["push", "--progress", "origin", "main"]);
    assert_eq!(github.mints(), 2, "the push re-minted");
    let token_out = step
        .command("token-keeper")
        .arg("token")
        .env("GITHUB_ACTIONS", "true")
        .output()
        .expect("token");
    let exec_out = step
        .command("token-keeper")
        .args([
            "exec",
            "--",
            "sh",
            "-c",
            "test -n \"$GH_TOKEN\" && echo has-token",
        ])
        .output()
        .expect("exec");
    assert_eq!(String::from_utf8_lossy(&exec_out.stdout), "has-token\n");

    let tokens: Vec<String> = github
        .world()
        .issued
        .iter()
        .map(|t| t.token.clone())
        .collect();
    assert_eq!(tokens.len(), 2);
    let state_dir = job.host_path(&main.state["dir"]);

    // The main step: mask first; the token only in the outputs file among the file commands.
    assert_masked_first(&main, &tokens[0]);
    for (path, bytes) in files_below(&job.temp.join("_runner_file_commands")) {
        let is_output = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("github_output"));
        for token in &tokens {
            assert!(
                is_output || !contains(&bytes, token),
                "{} holds a token",
                path.display()
            );
        }
    }
    assert!(!main.summary.contains(&tokens[0]));
    // `token` masks on stderr, then prints on stdout; `exec` prints nothing of it.
    assert_eq!(
        String::from_utf8_lossy(&token_out.stderr),
        format!("::add-mask::{}\n", tokens[1])
    );
    assert_eq!(
        String::from_utf8_lossy(&token_out.stdout),
        format!("{}\n", tokens[1])
    );
    assert!(exec_out.stderr.is_empty());
    // Git's captured output never holds a token or the key.
    for (path, bytes) in files_below(logs.path()) {
        for needle in tokens.iter().map(String::as_str).chain(key_needles()) {
            assert!(!contains(&bytes, needle), "{} leaks", path.display());
        }
    }
    // Everywhere else in the job: tokens only in the state files, the key only in its file.
    for (path, bytes) in files_below(&job.work)
        .into_iter()
        .chain(files_below(step.dir.path()))
    {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let in_state = path.starts_with(&state_dir);
        let token_allowed = (in_state && (name == "state.json" || name == "ledger"))
            || name.starts_with("github_output");
        for token in &tokens {
            assert!(
                token_allowed || !contains(&bytes, token),
                "{} holds a token",
                path.display()
            );
        }
        let key_allowed = in_state && name == "key.pem";
        for needle in key_needles() {
            assert!(
                key_allowed || !contains(&bytes, needle),
                "{} holds the key",
                path.display()
            );
        }
        if in_state {
            assert_eq!(
                fs::metadata(&path).expect("meta").permissions().mode() & 0o777,
                0o600,
                "{}",
                path.display()
            );
        }
    }

    let post = job.post(&inputs, &main.state, View::Host);
    post.assert_ok();
    for token in &tokens {
        assert!(!post.log().contains(token.as_str()));
    }
    // After post: the state is gone, and with it every copy of the token and the key.
    assert!(!state_dir.exists());
    for (path, bytes) in files_below(&job.work) {
        let is_output = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("github_output"));
        for needle in tokens
            .iter()
            .map(String::as_str)
            .filter(|_| !is_output)
            .chain(key_needles())
        {
            assert!(
                !contains(&bytes, needle),
                "{} still holds a secret",
                path.display()
            );
        }
    }
    assert!(github.world().live_tokens().is_empty());
}
