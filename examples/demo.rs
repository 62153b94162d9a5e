//! The local demo: a whole job on loopback, printed as a readable log.
//!
//! A fake GitHub API and a git server that accepts only live tokens; the main step; a long build
//! that keeps pushing after the first token has expired; the post step revoking every token.
//! Tokens live 8 seconds here instead of an hour, so the demo takes about half a minute.
//!
//! Run it with `cargo build && cargo run --example demo`.

use std::fs;
use std::time::{Duration, Instant};

use testkit::fake_github::{APP_ID, APP_KEY, FakeGitHub};
use testkit::git_server::GitServer;
use testkit::runner::{Job, LaterStep, StepRun, View};

const LIFETIME: Duration = Duration::from_secs(8);
const ROUNDS: u32 = 3;
const BUILD: Duration = Duration::from_secs(5);

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let started = Instant::now();
    let github = FakeGitHub::start().await;
    github.world().token_lifetime = LIFETIME;
    let git = GitServer::start(github.handle());
    git.create_repo("Octo-Org", "app");
    let job = Job::new(&github.url());
    let git_url = git.url();
    let repo_url = format!("{git_url}/Octo-Org/app.git");

    println!("token-keeper demo: a job that outlives its GitHub App token\n");
    println!(
        "  fake GitHub API  {}   (tokens live {} s here, 1 h on GitHub)",
        github.url(),
        LIFETIME.as_secs()
    );
    println!("  git server       {git_url}   (accepts live tokens only)\n");

    let inputs = [
        ("app-id", APP_ID),
        ("private-key", APP_KEY),
        ("git-server-url", git_url.as_str()),
    ];
    // Tokens this short-lived are replaced when half their life is left, as an hour's token is
    // after `refresh-after` (50 minutes).
    heading("main step: uses: token-keeper");
    let main = job.main(&inputs, View::Host);
    show(&main, &github);
    if !main.succeeded() {
        fail("the main step failed");
    }
    println!(
        "  outputs: installation-id={} app-slug={} expires-at={}",
        main.outputs["installation-id"], main.outputs["app-slug"], main.outputs["expires-at"]
    );
    let first_token = main.outputs["token"].clone();

    let step = LaterStep::after(&job, &main);
    heading("step: git clone (git asks token-keeper for credentials)");
    run_git(
        &step,
        step.dir.path(),
        &["clone", "--quiet", &repo_url, "app"],
    );
    println!("  cloned {repo_url}");

    let repo = step.dir.path().join("app");
    heading(&format!(
        "step: a long build, {ROUNDS} rounds of: build {} s, commit, push",
        BUILD.as_secs()
    ));
    for round in 1..=ROUNDS {
        std::thread::sleep(BUILD);
        fs::write(
            repo.join(format!("round-{round}.txt")),
            format!("round {round}\n"),
        )
        .expect("write");
        run_git(&step, &repo, &["add", "."]);
        run_git(
            &step,
            &repo,
            &["commit", "--quiet", "-m", &format!("round {round}")],
        );
        run_git(&step, &repo, &["push", "--quiet", "origin", "main"]);
        println!(
            "  t={:>2}s  round {round}: pushed; tokens minted so far: {}",
            started.elapsed().as_secs(),
            github.mints()
        );
    }

    heading(
        "for comparison: the same push with the first token, as a job without token-keeper would",
    );
    let stale = repo_url.replace("http://", &format!("http://x-access-token:{first_token}@"));
    let output = step.git_in(&repo, &["push", &stale, "HEAD:refs/heads/without-keeper"]);
    let said = String::from_utf8_lossy(&output.stderr);
    let said = said
        .lines()
        .find(|l| l.starts_with("fatal"))
        .unwrap_or("(no error?)");
    println!("  {}", mask(said, &github));

    heading("post step: revoke every token of the job, remove the state");
    let post = job.post(&inputs, &main.state, View::Host);
    show(&post, &github);
    let live = github.world().live_tokens().len();
    let state_left = job.temp.join("token-keeper").exists();
    println!(
        "  live tokens left: {live}; state on disk: {}",
        if state_left { "still there" } else { "removed" }
    );
    println!(
        "\nDone in {} s: {ROUNDS} pushes with tokens that live {} s; {} tokens minted, {} live at the end.",
        started.elapsed().as_secs(),
        LIFETIME.as_secs(),
        github.mints(),
        live
    );
    if live != 0 || state_left || output.status.success() {
        fail("the demo did not end as it should");
    }
}

fn heading(text: &str) {
    println!("\n> {text}");
}

/// A step's log as the runner would show it: masked values as `***`.
fn show(run: &StepRun, github: &FakeGitHub) {
    for line in run.log().lines() {
        println!("  | {}", mask(line, github));
    }
}

fn mask(text: &str, github: &FakeGitHub) -> String {
    github
        .world()
        .issued
        .iter()
        .fold(text.to_owned(), |text, issued| {
            text.replace(&issued.token, "***")
        })
}

fn run_git(step: &LaterStep, dir: &std::path::Path, args: &[&str]) {
    let output = step.git_in(dir, args);
    if !output.status.success() {
        fail(&format!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
}

fn fail(message: &str) -> ! {
    eprintln!("demo failed: {message}");
    std::process::exit(1);
}
