//! The git credential shim, end to end: the real `git` against a git server that accepts only
//! live tokens of the fake GitHub, in the later steps of an emulated job.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use base64::Engine;

use testkit::assert_success;
use testkit::fake_github::{FakeGitHub, Issued, app_inputs};
use testkit::git_server::git_command;
use testkit::measure;
use testkit::runner::{Job, LaterStep, View, age_cached_token, as_user, is_root, require};
use testkit::scene::Scene;
use testkit::walk;

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn a_push_after_expiry_gets_a_fresh_token() {
    let w = Scene::start(Duration::from_secs(3)).await;
    let main = w.job.main(&w.inputs(&[]), View::Host);
    main.assert_ok();
    let step = LaterStep::after(&w.job, &main);
    let push = w.push_late(&step, Duration::from_millis(3500));
    assert_success("git", &push);
    // Tokens this short are replaced when half their life is left: a slow machine may re-mint
    // again within the push.
    assert!(w.github.mints() >= 2, "the push re-minted");
    // Git never prints the token, and the helper prints no mask line.
    for issued in &w.github.world().issued {
        assert!(!stderr(&push).contains(issued.token.as_str()));
    }
    assert!(!stderr(&push).contains("::add-mask::"));
}

#[tokio::test]
async fn with_git_identity_later_commits_are_the_bots() {
    let w = Scene::start(Duration::from_secs(3600)).await;
    let main = w
        .job
        .main(&w.inputs(&[("git-identity", "true")]), View::Host);
    main.assert_ok();
    let step = LaterStep::after(&w.job, &main);
    step.assert_git(&["clone", "--quiet", &w.repo_url("Octo-Org", "app"), "app"]);
    let repo = step.dir.path().join("app");
    fs::write(repo.join("bot.txt"), "committed by the App\n").unwrap();
    assert_success("git", &step.git_in(&repo, &["add", "bot.txt"]));
    assert_success(
        "git",
        &step.git_in(&repo, &["commit", "--quiet", "-m", "bot"]),
    );
    let log = step.git_in(&repo, &["log", "-1", "--format=%an <%ae>|%cn <%ce>"]);
    let expected = format!(
        "{0}|{0}",
        format_args!(
            "{} <{}>",
            main.outputs["git-user-name"], main.outputs["git-user-email"]
        )
    );
    assert_eq!(String::from_utf8_lossy(&log.stdout).trim(), expected);
    assert!(expected.starts_with("keeper-test[bot] <41898282+keeper-test[bot]@users.noreply."));
}

#[tokio::test]
async fn the_helper_answers_at_the_blank_line_while_its_input_stays_open() {
    let w = Scene::start(Duration::from_secs(3600)).await;
    let main = w.job.main(&w.inputs(&[]), View::Host);
    main.assert_ok();
    let step = LaterStep::after(&w.job, &main);
    let mut child = step
        .command("token-keeper")
        .args([
            "credential",
            "--state",
            &w.job.host_path(&main.state["dir"]).to_string_lossy(),
            "get",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let host = w.git_url.trim_start_matches("http://");
    std::io::Write::write_all(
        &mut stdin,
        format!("protocol=http\nhost={host}\n\n").as_bytes(),
    )
    .unwrap();
    // Stdin stays open: the answer must come all the same.
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let finished = child.try_wait().unwrap().is_some();
    if !finished {
        child.kill().unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(finished, "the helper waited for the end of its input");
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!("password={}", main.outputs["token"]))
    );
}

/// Hold the lock at `path` for `how_long`, as a process re-minting would; join to wait for it.
fn hold_lock(path: &Path, how_long: Duration) -> std::thread::JoinHandle<()> {
    let lock = fs::File::open(path).unwrap();
    lock.lock().unwrap();
    std::thread::spawn(move || {
        std::thread::sleep(how_long);
        drop(lock);
    })
}

#[tokio::test]
async fn a_person_waiting_for_the_lock_is_told_and_git_is_not() {
    let w = Scene::start(Duration::from_secs(3600)).await;
    let main = w.job.main(&w.inputs(&[]), View::Host);
    main.assert_ok();
    let step = LaterStep::after(&w.job, &main);
    age_cached_token(&w.job, &main, 50 * 60);
    // Another process is re-minting: it holds the lock for a moment.
    let lock_file = w.job.host_path(&main.state["dir"]).join("lock");
    let release = hold_lock(&lock_file, Duration::from_millis(500));
    let out = step.command("token-keeper").arg("token").output().unwrap();
    release.join().unwrap();
    assert_success("token", &out);
    assert!(
        stderr(&out).contains("waiting for another process of this job to finish re-minting"),
        "{}",
        stderr(&out)
    );

    age_cached_token(&w.job, &main, 50 * 60);
    let release = hold_lock(&lock_file, Duration::from_millis(500));
    let fill = step.git(&["ls-remote", &w.repo_url("Octo-Org", "app")]);
    release.join().unwrap();
    assert_success("git", &fill);
    assert!(!stderr(&fill).contains("waiting"), "{}", stderr(&fill));
}

#[tokio::test]
async fn cargo_fetches_a_private_git_dependency_after_the_first_token_expired() {
    let w = Scene::start(Duration::from_secs(3)).await;
    w.git.add_files(
        "Octo-Org",
        "lib",
        &[
            (
                "Cargo.toml",
                "[package]\nname = \"lib\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
            ),
            ("src/lib.rs", "pub fn answer() -> u32 {\n    42\n}\n"),
        ],
    );
    let main = w
        .job
        .main(&w.inputs(&[("repositories", "app, lib")]), View::Host);
    main.assert_ok();
    assert_eq!(main.env["CARGO_NET_GIT_FETCH_WITH_CLI"], "true");
    assert!(
        main.stdout.contains("cargo will fetch git dependencies"),
        "{}",
        main.stdout
    );
    let step = LaterStep::after(&w.job, &main);
    let app = step.dir.path().join("app");
    fs::create_dir_all(app.join("src")).unwrap();
    fs::write(
        app.join("Cargo.toml"),
        format!(
            "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nlib = {{ git = \"{}\" }}\n",
            w.repo_url("Octo-Org", "lib")
        ),
    )
    .unwrap();
    fs::write(app.join("src/main.rs"), "fn main() {}\n").unwrap();
    std::thread::sleep(Duration::from_millis(3500));
    assert!(
        w.github.world().live_tokens().is_empty(),
        "the first token has expired"
    );

    let cargo = |with_cli: bool| {
        let home = tempfile::tempdir().unwrap();
        // The cargo that builds these tests, not rustup's proxy, which reads HOME.
        let mut command = step.tool(env!("CARGO"), home.path());
        command
            .current_dir(&app)
            .args(["generate-lockfile", "--quiet"])
            .env("CARGO_HOME", home.path());
        if !with_cli {
            command.env_remove("CARGO_NET_GIT_FETCH_WITH_CLI");
        }
        (command.output().unwrap(), home)
    };
    // cargo's own git library never asks the shim.
    let (without, _home) = cargo(false);
    assert!(!without.status.success(), "{}", stderr(&without));
    let (with, _home) = cargo(true);
    assert_success("cargo", &with);
    let lock = fs::read_to_string(app.join("Cargo.lock")).unwrap();
    assert!(lock.contains("name = \"lib\""), "{lock}");
}

/// A job whose first token has expired, with `Octo-Org/lib` holding `files` and in scope.
async fn expired_with_lib(files: &[(&str, &str)]) -> (Scene, LaterStep) {
    let w = Scene::start(Duration::from_secs(3)).await;
    w.git.add_files("Octo-Org", "lib", files);
    let main = w
        .job
        .main(&w.inputs(&[("repositories", "app, lib")]), View::Host);
    main.assert_ok();
    let step = LaterStep::after(&w.job, &main);
    std::thread::sleep(Duration::from_millis(3500));
    assert!(
        w.github.world().live_tokens().is_empty(),
        "the first token has expired"
    );
    (w, step)
}

#[tokio::test]
async fn pip_installs_a_private_git_requirement_after_the_first_token_expired() {
    require(
        "python3",
        &["-c", "import setuptools, wheel, pip"],
        "python3 with pip, setuptools and wheel (Debian's python3-pip, python3-setuptools, python3-wheel)",
    );
    let (w, step) = expired_with_lib(&[
        (
            "pyproject.toml",
            "[build-system]\nrequires = [\"setuptools\"]\nbuild-backend = \"setuptools.build_meta\"\n\n[project]\nname = \"octo-lib\"\nversion = \"0.1.0\"\n\n[tool.setuptools]\npy-modules = [\"octo_lib\"]\n",
        ),
        ("octo_lib.py", "ANSWER = 42\n"),
    ])
    .await;
    let target = step.dir.path().join("site");
    let out = step
        .tool("python3", step.dir.path())
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
        ])
        .arg(&target)
        .arg(format!("git+{}", w.repo_url("Octo-Org", "lib")))
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .output()
        .unwrap();
    assert_success("pip", &out);
    let installed: Vec<String> = fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        installed.iter().any(|n| n.starts_with("octo_lib-0.1.0")),
        "{installed:?}"
    );
    assert!(w.github.mints() >= 2, "pip's git re-minted");
}

#[tokio::test]
async fn npm_installs_a_private_git_dependency_after_the_first_token_expired() {
    require("npm", &["--version"], "npm (Debian's package `npm`)");
    let (w, step) = expired_with_lib(&[(
        "package.json",
        "{\"name\": \"octo-lib\", \"version\": \"0.1.0\"}\n",
    )])
    .await;
    let app = step.dir.path().join("app");
    fs::create_dir_all(&app).unwrap();
    fs::write(
        app.join("package.json"),
        "{\"name\": \"app\", \"version\": \"0.1.0\"}\n",
    )
    .unwrap();
    let out = step
        .tool("npm", step.dir.path())
        .current_dir(&app)
        .args(["install", "--no-audit", "--no-fund", "--ignore-scripts"])
        .arg(format!("git+{}", w.repo_url("Octo-Org", "lib")))
        .env("npm_config_cache", step.dir.path().join("npm-cache"))
        .output()
        .unwrap();
    assert_success("npm", &out);
    assert!(app.join("node_modules/octo-lib/package.json").exists());
    assert!(w.github.mints() >= 2, "npm's git re-minted");
}

#[tokio::test]
async fn gh_in_a_long_running_process_gets_a_fresh_token_from_keep_fresh() {
    require(
        "gh",
        &["--version"],
        "the real `gh` (Debian's package `gh`)",
    );
    let github = FakeGitHub::start().await;
    github.world().token_lifetime = Duration::from_secs(3);
    // `gh` talks to the git server's host over TLS: the front, with the test CA.
    let front = testkit::tls::TlsFront::start(&github.url());
    let job = Job::new(&github.url());
    let server = front.url();
    let main = job.main(&app_inputs(&[("git-server-url", &server)]), View::Host);
    main.assert_ok();
    let step = LaterStep::after(&job, &main);
    let ca = step.dir.path().join("ca.pem");
    front.write_ca(&ca);
    let script = r#"test -z "$GH_TOKEN$GITHUB_TOKEN" || exit 9
gh api installation/repositories --jq .total_count || exit 1
sleep 4
gh api installation/repositories --jq .total_count"#;
    let out = step
        .command("token-keeper")
        .args(["exec", "--keep-fresh", "--", "sh", "-c", script])
        .env("SSL_CERT_FILE", &ca)
        .env("HOME", step.dir.path())
        .env("GH_NO_UPDATE_NOTIFIER", "1")
        .env("GH_PROMPT_DISABLED", "1")
        .env("GH_TOKEN", "a-stale-token-from-the-step")
        .env("GITHUB_ACTIONS", "true")
        .output()
        .unwrap();
    assert_success("gh under exec", &out);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "1\n1\n",
        "{}",
        stderr(&out)
    );
    assert!(github.mints() >= 2, "re-minted while the child ran");
    // Each new token is masked before the child can read it, and only once.
    let masks: Vec<String> = stderr(&out)
        .lines()
        .filter(|l| l.starts_with("::add-mask::"))
        .map(str::to_owned)
        .collect();
    let distinct: std::collections::BTreeSet<&String> = masks.iter().collect();
    assert!(masks.len() >= 2, "{masks:?}");
    assert_eq!(
        distinct.len(),
        masks.len(),
        "a token masked twice: {masks:?}"
    );
    let left = gh_config_dirs(&job.host_path(&main.state["dir"]));
    assert!(left.is_empty(), "the private GH_CONFIG_DIR is gone");
}

/// The private `GH_CONFIG_DIR`s `exec --keep-fresh` made in the store `state`, and left.
fn gh_config_dirs(state: &Path) -> Vec<fs::DirEntry> {
    fs::read_dir(state)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("gh-config"))
        .collect()
}

#[tokio::test]
async fn a_cancelled_keep_fresh_ends_its_child_and_leaves_nothing() {
    let w = Scene::start(Duration::from_secs(3600)).await;
    let main = w.job.main(&w.inputs(&[]), View::Host);
    main.assert_ok();
    let step = LaterStep::after(&w.job, &main);
    let pid_file = step.dir.path().join("child.pid");
    let mut running = step
        .command("token-keeper")
        .args(["exec", "--keep-fresh", "--", "sh", "-c"])
        .arg(format!("echo $$ > {}; exec sleep 30", pid_file.display()))
        .spawn()
        .unwrap();
    let state = w.job.host_path(&main.state["dir"]);
    let started = std::time::Instant::now();
    while !pid_file.exists() && started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let child: i32 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The runner cancels a job with SIGINT, then SIGTERM.
    // SAFETY: kill has no memory preconditions; the pid is our own child's.
    unsafe { libc::kill(running.id() as i32, libc::SIGTERM) };
    let status = running.wait().unwrap();
    assert!(started.elapsed() < Duration::from_secs(10), "ended at once");
    assert_eq!(status.code(), Some(128 + libc::SIGTERM), "{status:?}");
    // SAFETY: as above; signal 0 only asks whether the process exists.
    assert_ne!(unsafe { libc::kill(child, 0) }, 0, "the child is gone");
    let left = gh_config_dirs(&state);
    assert!(left.is_empty(), "nothing left behind");
}

#[tokio::test]
async fn a_workflows_own_cargo_setting_is_kept() {
    let mut w = Scene::start(Duration::from_secs(3600)).await;
    w.job
        .extra_env
        .insert("CARGO_NET_GIT_FETCH_WITH_CLI".into(), "false".into());
    let main = w.job.main(&w.inputs(&[]), View::Host);
    main.assert_ok();
    assert!(!main.env.contains_key("CARGO_NET_GIT_FETCH_WITH_CLI"));
    assert!(!main.stdout.contains("cargo will fetch"), "{}", main.stdout);
}

#[tokio::test]
async fn without_the_shim_a_late_push_fails() {
    let w = Scene::start(Duration::from_secs(2)).await;
    let inputs = w.inputs(&[("git-credentials", "false")]);
    let main = w.job.main(&inputs, View::Host);
    main.assert_ok();
    assert!(!main.env.contains_key("GIT_CONFIG_COUNT"));
    let step = LaterStep::after(&w.job, &main);
    let url = w.repo_url("Octo-Org", "app").replace(
        "http://",
        &format!("http://x-access-token:{}@", main.outputs["token"]),
    );
    step.assert_git(&["clone", "--quiet", &url, "app"]);
    std::thread::sleep(Duration::from_millis(2500));
    let output = step.git_in(
        &step.dir.path().join("app"),
        &["push", "origin", "HEAD:refs/heads/late"],
    );
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("Authentication failed"),
        "{}",
        stderr(&output)
    );
    assert_eq!(w.github.mints(), 1);
}

#[tokio::test]
async fn sixty_four_git_processes_at_expiry_mint_exactly_once() {
    let w = Scene::start(Duration::from_secs(3600)).await;
    let main = w.job.main(&w.inputs(&[]), View::Host);
    main.assert_ok();
    let step = LaterStep::after(&w.job, &main);
    // An hour into the job: the first token is dead, and every git process finds it due.
    age_cached_token(&w.job, &main, 50 * 60);
    {
        let mut world = w.github.world();
        world.issued[0].expires_at = world.now() - 1;
    }
    let url = w.repo_url("Octo-Org", "app");
    let children: Vec<_> = (0..64)
        .map(|_| {
            git_command(step.dir.path())
                .envs(&step.env)
                .args(["ls-remote", &url])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("git")
        })
        .collect();
    for child in children {
        assert_success("git", &child.wait_with_output().unwrap());
    }
    assert_eq!(w.github.mints(), 2, "one mint in main, one for all 64");
}

#[tokio::test]
async fn the_shim_answers_only_inside_the_token_scope() {
    let w = Scene::start(Duration::from_secs(3600)).await;
    let inputs = w.inputs(&[("repositories", "app")]);
    let main = w.job.main(&inputs, View::Host);
    main.assert_ok();
    let step = LaterStep::after(&w.job, &main);
    step.assert_git(&["ls-remote", &w.repo_url("Octo-Org", "app")]);
    step.assert_git(&["ls-remote", &w.repo_url("octo-org", "app")]);
    // Another repository of the owner, another owner, another host: nothing from us.
    for url in [
        w.repo_url("Octo-Org", "lib"),
        w.repo_url("Other-Org", "tools"),
        w.repo_url("Octo-Org", "app")
            .replace("127.0.0.1", "localhost"),
    ] {
        let output = step.git(&["ls-remote", &url]);
        assert!(!output.status.success(), "{url}");
        assert!(
            stderr(&output).contains("could not read Username"),
            "{url}: {}",
            stderr(&output)
        );
    }
    assert_eq!(w.github.mints(), 1);
}

#[tokio::test]
async fn a_stale_checkout_header_is_neutralised_only_in_scope() {
    let mut w = Scene::start(Duration::from_secs(3600)).await;
    // Another owner's live token in checkout's server-wide header.
    let other_token = "ghs_othertokenforotherorg000000000000";
    {
        let mut world = w.github.world();
        let expires_at = world.now() + 3600;
        world.issued.push(Issued {
            token: other_token.into(),
            installation: 4343,
            repos: None,
            permissions: BTreeMap::new(),
            expires_at,
            revoked: false,
        });
    }
    let header = |token: &str| {
        let basic =
            base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
        format!("AUTHORIZATION: basic {basic}")
    };
    // An earlier step configured git: checkout's header for the whole server, and an alias.
    let earlier = [
        (
            format!("http.{}/.extraheader", w.git.url()),
            header(other_token),
        ),
        ("alias.earlier".to_owned(), "status".to_owned()),
    ];
    w.job
        .extra_env
        .insert("GIT_CONFIG_COUNT".into(), "2".into());
    for (i, (key, value)) in earlier.iter().enumerate() {
        w.job
            .extra_env
            .insert(format!("GIT_CONFIG_KEY_{i}"), key.clone());
        w.job
            .extra_env
            .insert(format!("GIT_CONFIG_VALUE_{i}"), value.clone());
    }
    let inputs = w.inputs(&[("owner", "Octo-Org")]);
    let main = w.job.main(&inputs, View::Host);
    main.assert_ok();
    let mut step = LaterStep::after(&w.job, &main);
    for (key, value) in w
        .job
        .extra_env
        .iter()
        .filter(|(k, _)| k.starts_with("GIT_CONFIG_"))
    {
        step.env.entry(key.clone()).or_insert_with(|| value.clone());
    }
    assert_eq!(
        step.env["GIT_CONFIG_KEY_2"],
        format!("credential.{}/Octo-Org.helper", w.git.url())
    );

    // Octo-Org: the header (a token that does not cover it) is cleared, the helper answers.
    step.assert_git(&["ls-remote", &w.repo_url("Octo-Org", "app")]);
    // Other-Org: its header still works.
    step.assert_git(&["ls-remote", &w.repo_url("Other-Org", "tools")]);
    // The earlier step's entries survive.
    let alias = step.git(&["config", "alias.earlier"]);
    assert_eq!(String::from_utf8_lossy(&alias.stdout).trim(), "status");
}

#[tokio::test]
async fn erase_of_a_refused_token_makes_the_next_call_remint() {
    let w = Scene::start(Duration::from_secs(3600)).await;
    let main = w.job.main(&w.inputs(&[]), View::Host);
    main.assert_ok();
    // The token is two minutes old, and GitHub no longer takes it.
    age_cached_token(&w.job, &main, 120);
    w.github.world().issued[0].revoked = true;

    let step = LaterStep::after(&w.job, &main);
    let url = w.repo_url("Octo-Org", "app");
    let refused = step.git(&["ls-remote", &url]);
    assert!(!refused.status.success());
    assert_eq!(w.github.mints(), 1, "a get does not re-mint a young token");
    step.assert_git(&["ls-remote", &url]);
    assert_eq!(w.github.mints(), 2, "the erase made the next get re-mint");
}

#[tokio::test]
async fn token_and_exec_hand_out_a_live_token() {
    let w = Scene::start(Duration::from_secs(3600)).await;
    let main = w.job.main(&w.inputs(&[]), View::Host);
    main.assert_ok();
    let step = LaterStep::after(&w.job, &main);
    let token = main.outputs["token"].clone();

    let printed = step.command("token-keeper").arg("token").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&printed.stdout),
        format!("{token}\n")
    );
    assert!(printed.stderr.is_empty());
    let masked = step
        .command("token-keeper")
        .arg("token")
        .env("GITHUB_ACTIONS", "true")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&masked.stderr),
        format!("\n::add-mask::{token}\n"),
        "a mask starts a line of its own"
    );

    let exec = step
        .command("token-keeper")
        .args([
            "exec",
            "--",
            "sh",
            "-c",
            "test \"$GH_TOKEN\" = \"$GITHUB_TOKEN\" && printf %s \"$GH_TOKEN\"; exit 7",
        ])
        .output()
        .unwrap();
    assert_eq!(exec.status.code(), Some(7));
    assert_eq!(String::from_utf8_lossy(&exec.stdout), token);

    // By hand, without `--state`: the job's only state answers.
    let request = format!(
        "protocol=http\nhost={}\n\n",
        w.git_url.trim_start_matches("http://")
    );
    let by_hand = measure::run(
        step.command("token-keeper").args(["credential", "get"]),
        request.as_bytes(),
    )
    .unwrap();
    assert!(
        String::from_utf8_lossy(&by_hand.output.stdout).contains(&format!("password={token}\n"))
    );

    let unknown = step
        .command("token-keeper")
        .args(["token", "--owner", "nobody"])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&unknown.stderr)
            .starts_with("token-keeper: no token-keeper state for `nobody`")
    );
}

#[tokio::test]
async fn exec_keeps_exit_codes_of_its_own_apart_from_the_commands() {
    let w = Scene::start(Duration::from_secs(3600)).await;
    let main = w.job.main(&w.inputs(&[]), View::Host);
    main.assert_ok();
    let step = LaterStep::after(&w.job, &main);
    let exec = |args: &[&str]| {
        step.command("token-keeper")
            .arg("exec")
            .args(args)
            .output()
            .unwrap()
    };
    assert_eq!(exec(&["--", "sh", "-c", "exit 3"]).status.code(), Some(3));
    assert_eq!(
        exec(&["--keep-fresh", "--", "sh", "-c", "exit 4"])
            .status
            .code(),
        Some(4)
    );
    let missing = exec(&["--", "no-such-command-here"]);
    assert_eq!(missing.status.code(), Some(127), "{missing:?}");
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot run `no-such-command-here`"));
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/app-key.pem");
    assert_eq!(
        exec(&["--", fixture]).status.code(),
        Some(126),
        "not executable"
    );
    assert_eq!(
        exec(&["--keep-fresh", "--", "no-such-command-here"])
            .status
            .code(),
        Some(127)
    );
    let no_state = exec(&["--owner", "nobody", "--", "true"]);
    assert_eq!(
        no_state.status.code(),
        Some(125),
        "token-keeper's own failure"
    );
}

#[tokio::test]
async fn post_revokes_every_token_of_the_job_and_removes_everything() {
    let w = Scene::start(Duration::from_secs(3600)).await;
    let inputs = w.inputs(&[]);
    let main = w.job.main(&inputs, View::Host);
    main.assert_ok();
    let step = LaterStep::after(&w.job, &main);
    age_cached_token(&w.job, &main, 50 * 60);
    step.assert_git(&["ls-remote", &w.repo_url("Octo-Org", "app")]);
    assert_eq!(w.github.mints(), 2);
    assert_eq!(w.github.world().live_tokens().len(), 2);

    let post = w.job.post(&inputs, &main.state, View::Host);
    post.assert_ok();
    assert!(w.github.world().live_tokens().is_empty(), "both revoked");
    assert!(
        !w.job.temp.join("token-keeper").exists(),
        "state, key and binary removed"
    );
}

#[tokio::test]
async fn the_runner_user_uses_the_shim_after_a_root_main_step() {
    if !is_root() {
        eprintln!("skipped: needs root to switch users");
        return;
    }
    let w = Scene::start(Duration::from_secs(3600)).await;
    w.job.chown_all(1001);
    let inputs = w.inputs(&[]);
    let main = w.job.main(&inputs, View::Container);
    main.assert_ok();
    let step = LaterStep::after(&w.job, &main);
    let root_dir = w.job.temp.join("token-keeper");
    for entry in walk(&root_dir) {
        let meta = fs::symlink_metadata(&entry).unwrap();
        assert_eq!(meta.uid(), 1001, "{}", entry.display());
        let mode = meta.mode() & 0o777;
        let expected = if meta.is_dir() || entry.ends_with("bin/token-keeper") {
            0o700
        } else {
            0o600
        };
        assert_eq!(mode, expected, "{}", entry.display());
    }
    assert!(
        main.path[0].ends_with("/_temp/token-keeper/bin"),
        "{:?}",
        main.path
    );
    fs::set_permissions(
        step.dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let url = w.repo_url("Octo-Org", "app");
    let as_runner = |args: &[&str]| {
        let mut command = git_command(step.dir.path());
        command.envs(&step.env).args(args);
        as_user(&mut command, 1001);
        command.output().expect("git as the runner user")
    };
    assert_success("git", &as_runner(&["ls-remote", &url]));

    // Due for a refresh: a root process re-mints (sudo git), then the runner user reads what it wrote.
    age_cached_token(&w.job, &main, 50 * 60);
    step.assert_git(&["ls-remote", &url]);
    assert_eq!(w.github.mints(), 2);
    assert_success("git", &as_runner(&["ls-remote", &url]));
    for entry in walk(&root_dir) {
        assert_eq!(
            fs::symlink_metadata(&entry).unwrap().uid(),
            1001,
            "{}",
            entry.display()
        );
    }

    // A job container sees `_temp` elsewhere: the helper string follows RUNNER_TEMP.
    let elsewhere = tempfile::tempdir().unwrap();
    let link = elsewhere.path().join("__w_temp");
    std::os::unix::fs::symlink(&w.job.temp, &link).unwrap();
    let mut moved = LaterStep::after(&w.job, &main);
    moved
        .env
        .insert("RUNNER_TEMP".into(), link.to_string_lossy().into_owned());
    moved.assert_git(&["ls-remote", &url]);
}

/// What `token-keeper token --owner OWNER` prints in a later step.
fn token_for(step: &LaterStep, owner: &str) -> String {
    let out = step
        .command("token-keeper")
        .args(["token", "--owner", owner])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test]
async fn steps_whose_ids_differ_only_by_punctuation_keep_their_own_state() {
    let w = Scene::start(Duration::from_secs(3600)).await;
    // A step inside a composite action, and a step of the workflow.
    let octo = w.job.main_as(
        "release.token",
        &w.inputs(&[("owner", "Octo-Org")]),
        View::Host,
    );
    octo.assert_ok();
    let other = w.job.main_as(
        "release_token",
        &w.inputs(&[("owner", "Other-Org")]),
        View::Host,
    );
    other.assert_ok();
    assert_ne!(octo.state["dir"], other.state["dir"]);
    let step = LaterStep::after(&w.job, &other);
    step.assert_git(&["ls-remote", &w.repo_url("Octo-Org", "app")]);
    step.assert_git(&["ls-remote", &w.repo_url("Other-Org", "tools")]);
    let token = |owner: &str| token_for(&step, owner);
    assert_eq!(token("Octo-Org"), octo.outputs["token"]);
    assert_eq!(token("Other-Org"), other.outputs["token"]);
}

#[tokio::test]
async fn two_steps_for_two_owners_coexist() {
    let w = Scene::start(Duration::from_secs(3600)).await;
    let octo = w
        .job
        .main_as("octo", &w.inputs(&[("owner", "Octo-Org")]), View::Host);
    octo.assert_ok();
    let other = w
        .job
        .main_as("other", &w.inputs(&[("owner", "Other-Org")]), View::Host);
    other.assert_ok();
    // The second step's entries come after the first's.
    let step = LaterStep::after(&w.job, &other);
    assert_eq!(
        other.env["GIT_CONFIG_KEY_6"],
        format!("credential.{}/Other-Org.helper", w.git_url)
    );
    step.assert_git(&["ls-remote", &w.repo_url("Octo-Org", "app")]);
    step.assert_git(&["ls-remote", &w.repo_url("Other-Org", "tools")]);
    assert_eq!(w.github.mints(), 2);

    let token = |owner: &str| token_for(&step, owner);
    assert_eq!(token("octo-org"), octo.outputs["token"]);
    assert_eq!(token("Other-Org"), other.outputs["token"]);
    let ambiguous = step.command("token-keeper").arg("token").output().unwrap();
    assert!(String::from_utf8_lossy(&ambiguous.stderr).contains("pick one with `--owner`"));

    // Post steps run in reverse order; the binary goes with the last state.
    let bin = w.job.temp.join("token-keeper/bin/token-keeper");
    w.job
        .post_as("other", &w.inputs(&[]), &other.state, View::Host)
        .assert_ok();
    assert!(
        bin.exists(),
        "the first step's state still needs the binary"
    );
    step.assert_git(&["ls-remote", &w.repo_url("Octo-Org", "app")]);
    w.job
        .post_as("octo", &w.inputs(&[]), &octo.state, View::Host)
        .assert_ok();
    assert!(!w.job.temp.join("token-keeper").exists());
    assert!(w.github.world().live_tokens().is_empty());
}

#[tokio::test]
async fn old_runners_keep_the_state_under_github_home() {
    if !is_root() {
        eprintln!("skipped: needs root for a mount namespace");
        return;
    }
    let w = Scene::start(Duration::from_secs(3600)).await;
    let main = w.job.main(&w.inputs(&[]), View::OldContainer);
    main.assert_ok();
    assert!(main.env["GIT_CONFIG_VALUE_1"].contains("$RUNNER_TEMP/_github_home/token-keeper/"));
    assert!(
        main.path[0].ends_with("/_temp/_github_home/token-keeper/bin"),
        "{:?}",
        main.path
    );
    let step = LaterStep::after(&w.job, &main);
    step.assert_git(&["ls-remote", &w.repo_url("Octo-Org", "app")]);
}

#[tokio::test]
async fn a_thousand_fills_with_a_fresh_cache_mint_nothing() {
    let w = Scene::start(Duration::from_secs(3600)).await;
    let main = w.job.main(&w.inputs(&[]), View::Host);
    main.assert_ok();
    let step = LaterStep::after(&w.job, &main);
    let request = format!("url={}\n\n", w.repo_url("Octo-Org", "app"));
    let expected = format!("password={}\n", main.outputs["token"]);
    let mut times = Vec::with_capacity(1000);
    for _ in 0..1000 {
        let mut command = git_command(step.dir.path());
        command.envs(&step.env).args(["credential", "fill"]);
        let measured = measure::run(&mut command, request.as_bytes()).expect("git credential fill");
        assert_success("git", &measured.output);
        assert!(String::from_utf8_lossy(&measured.output.stdout).contains(&expected));
        times.push(measured.elapsed);
    }
    times.sort();
    eprintln!(
        "git credential fill with a fresh cache: median {:?} over 1000 calls",
        times[500]
    );
    assert_eq!(w.github.mints(), 1, "no re-mint");
}

#[tokio::test]
async fn an_enterprise_token_is_kept_fresh_for_tools_but_not_given_to_git() {
    let w = Scene::start(Duration::from_secs(3600)).await;
    let main = w
        .job
        .main(&w.inputs(&[("enterprise", "octo-enterprise")]), View::Host);
    main.assert_ok();
    assert_eq!(main.outputs["installation-id"], "4444");
    assert!(
        !main.env.contains_key("GIT_CONFIG_COUNT"),
        "no git entries: {:?}",
        main.env
    );
    assert!(main.stdout.contains("git is left alone"), "{}", main.stdout);
    let step = LaterStep::after(&w.job, &main);
    age_cached_token(&w.job, &main, 50 * 60);
    let out = step.command("token-keeper").arg("token").output().unwrap();
    assert_success("token", &out);
    assert_eq!(w.github.mints(), 2, "re-minted for the tool");
    assert_eq!(
        w.github.seen("POST", "/app/installations/4444/")[1].body,
        serde_json::json!({})
    );
    // An enterprise token reaches no repository: its check is not a repository listing.
    assert!(
        w.github
            .seen("GET", "/installation/repositories")
            .is_empty()
    );
    assert_eq!(w.github.seen("GET", "/users/keeper-test%5Bbot%5D").len(), 2);
}

#[tokio::test]
async fn an_unknown_enterprise_says_enterprise_installations_are_cloud_only() {
    let w = Scene::start(Duration::from_secs(3600)).await;
    let main = w.job.main(
        &w.inputs(&[("enterprise", "no-such-enterprise")]),
        View::Host,
    );
    let error = main.the_error();
    assert!(error.contains("GitHub Enterprise Cloud only"), "{error}");
    assert!(error.contains("`no-such-enterprise`"), "{error}");
    assert!(!error.contains("install it at"), "{error}");
}

/// macOS and Windows runners configure a system-wide helper (`osxkeychain`, Git Credential
/// Manager), and users add their own: inside the token's scope git asks ours alone, and never
/// hands one of our tokens to theirs to store; outside it, theirs are still asked.
#[tokio::test]
async fn system_and_global_helpers_are_not_asked_inside_the_scope_nor_given_our_tokens() {
    let w = Scene::start(Duration::from_secs(3600)).await;
    let main = w
        .job
        .main(&w.inputs(&[("repositories", "app")]), View::Host);
    main.assert_ok();
    let mut step = LaterStep::after(&w.job, &main);
    let dir = step.dir.path().to_owned();
    let log = dir.join("keychain.log");
    let keychain = dir.join("keychain");
    // Empty, as on a fresh runner, it answers nothing: were it in the scope's list, git would
    // go on to ours and then hand it our token to store.
    fs::write(
        &keychain,
        format!(
            "#!/bin/sh\n{{ echo \"$1\"; cat; }} >> '{}'\nexit 0\n",
            log.display()
        ),
    )
    .unwrap();
    fs::set_permissions(
        &keychain,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    for (scope, file) in [
        ("GIT_CONFIG_SYSTEM", "system"),
        ("GIT_CONFIG_GLOBAL", "global"),
    ] {
        let path = dir.join(format!("{file}.gitconfig"));
        fs::write(
            &path,
            format!("[credential]\n\thelper = {}\n", keychain.display()),
        )
        .unwrap();
        step.env
            .insert(scope.into(), path.to_string_lossy().into_owned());
    }
    step.env.insert("GIT_CONFIG_NOSYSTEM".into(), "0".into());

    // It succeeds, so git runs `store` on the scope's helpers.
    step.assert_git(&["ls-remote", &w.repo_url("Octo-Org", "app")]);
    let asked = fs::read_to_string(&log).unwrap_or_default();
    for token in w.github.tokens() {
        assert!(
            !asked.contains(&token),
            "a token reached the keychain: {asked}"
        );
    }
    assert!(
        !asked.lines().any(|l| l == "store"),
        "the keychain was asked to store: {asked}"
    );
    assert!(asked.is_empty(), "the keychain was asked: {asked}");

    // Outside the scope, the machine's helpers are git's as before.
    let other = step.git(&["ls-remote", &w.repo_url("Other-Org", "tools")]);
    assert!(!other.status.success());
    let asked = fs::read_to_string(&log).unwrap_or_default();
    assert!(asked.starts_with("get\n"), "{asked}");
}
