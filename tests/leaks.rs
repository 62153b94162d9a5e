//! Nothing leaks: a whole job (main step, git through the helper, `token`, `exec`, a re-mint, post)
//! with every byte it writes collected. Tokens appear only after their mask line and in the
//! intended outputs and state files; the key only in the key file; after post, neither anywhere.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use testkit::fake_github::{APP_KEY, FakeGitHub, app_inputs};
use testkit::git_server::git_command;
use testkit::runner::{Job, LaterStep, StepRun, View, age_cached_token};
use testkit::scene::Scene;

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
    let scene = Scene::start(Duration::from_secs(3600)).await;
    let (github, job, git_url) = (&scene.github, &scene.job, &scene.git_url);
    let inputs = scene.inputs(&[]);
    let main = job.main(&inputs, View::Host);
    main.assert_ok();
    let step = LaterStep::after(job, &main);
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
    age_cached_token(job, &main, 50 * 60);
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

    let tokens = github.tokens();
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
    // `token` masks on stderr, on a line of its own, then prints on stdout; `exec` prints
    // nothing of it.
    assert_eq!(
        String::from_utf8_lossy(&token_out.stderr),
        format!("\n::add-mask::{}\n", tokens[1])
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

/// Every 20-character run of the key's base64, as `(run, which key)`.
fn key_runs(keys: &[&str]) -> std::collections::HashSet<String> {
    let mut runs = std::collections::HashSet::new();
    for key in keys {
        let body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
        for start in 0..=body.len() - 20 {
            runs.insert(body[start..start + 20].to_owned());
        }
    }
    runs
}

/// The first 20-character run of a key found in `text`, if any.
fn leaked_run<'a>(text: &'a str, runs: &std::collections::HashSet<String>) -> Option<&'a str> {
    let bytes = text.as_bytes();
    (0..bytes.len().saturating_sub(19))
        .filter(|&i| text.is_char_boundary(i) && text.is_char_boundary(i + 20))
        .map(|i| &text[i..i + 20])
        .find(|window| runs.contains(*window))
}

/// Ways a key gets mangled on its way into a secret, each of a real key.
fn malformed_shapes(pem: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = pem.trim().lines().collect();
    let (begin, end) = (lines[0], lines[lines.len() - 1]);
    let body = &lines[1..lines.len() - 1];
    let label = begin.trim_matches('-').trim_start_matches("BEGIN ");
    let joined = body.concat();
    let mut damaged = joined.clone();
    damaged.replace_range(40..41, "!");
    let shapes = [
        ("one line, spaces", lines.join(" ")),
        ("one line, no separators", lines.concat()),
        ("escaped newlines escaped again", lines.join("\\\\n")),
        ("escaped newlines and spaces", lines.join("\\n ")),
        ("tabs", lines.join("\t")),
        (
            "begin line runs into the body",
            format!("-----BEGIN {label} {joined}\n{end}"),
        ),
        (
            "begin line without its closing dashes",
            format!("-----BEGIN {label}\n{}\n{end}", body.join("\n")),
        ),
        ("no end line", format!("{begin}\n{}", body.join("\n"))),
        ("no end line, one line", format!("{begin} {joined}")),
        ("four dashes", lines.join("\n").replace("-----", "----")),
        ("lower-case armour", lines.join("\n").to_lowercase()),
        (
            "misspelt label",
            lines.join("\n").replace("PRIVATE KEY", "PRIVAT KEY"),
        ),
        (
            "unknown label",
            lines.join("\n").replace(label, "OCTO ORG KEY"),
        ),
        ("body only", body.join("\n")),
        ("body on one line", joined.clone()),
        (
            "half the body",
            format!("{begin}\n{}\n{end}", &joined[..joined.len() / 2]),
        ),
        ("a damaged body", format!("{begin}\n{damaged}\n{end}")),
        ("in JSON", format!("{{\"key\": \"{}\"}}", lines.join("\\n"))),
        ("in quotes, one line", format!("'{}'", lines.join(" "))),
        ("base64 of a truncated key", {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(&pem[..pem.len() / 2])
        }),
        ("body then armour", format!("{joined} {begin} {end}")),
        (
            "two begin lines",
            format!("{begin} {begin}\n{}\n{end}", body.join("\n")),
        ),
    ];
    shapes
        .into_iter()
        .map(|(name, text)| (name.to_owned(), text))
        .collect()
}

#[tokio::test]
async fn no_malformed_key_shows_any_of_its_text() {
    let pkcs8 = include_str!("fixtures/app-key.pkcs8.pem");
    let runs = key_runs(&[APP_KEY, pkcs8]);
    let github = FakeGitHub::start().await;
    for pem in [APP_KEY, pkcs8] {
        for (shape, text) in malformed_shapes(pem) {
            let job = Job::new(&github.url());
            let run = job.main(&app_inputs(&[("private-key", text.as_str())]), View::Host);
            // A key that parses is stored for re-mints, in its own file: nowhere else.
            let written: Vec<String> = files_below(&job.work)
                .into_iter()
                .filter(|(path, _)| !path.ends_with("key.pem"))
                .map(|(_, bytes)| String::from_utf8_lossy(&bytes).into_owned())
                .collect();
            for shown in [&run.stdout, &run.stderr].into_iter().chain(&written) {
                if let Some(leak) = leaked_run(shown, &runs) {
                    panic!("{shape}: the key's `{leak}` shows in:\n{shown}");
                }
            }
            if !run.succeeded() {
                assert!(
                    run.the_error().contains("private-key"),
                    "{shape}: {}",
                    run.log()
                );
            }
        }
    }
}
