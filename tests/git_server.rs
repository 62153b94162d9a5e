//! The test git server, driven by the real git client with tokens from the fake GitHub.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Output, Stdio};

use ring::rand::{SecureRandom, SystemRandom};

use testkit::fake_github::{FakeGitHub, Issued};
use testkit::git_server::{GitServer, fingerprint, git, git_command};

/// A fake GitHub and a git server that trusts it, with `Octo-Org/app`, `Octo-Org/lib` and
/// `Other-Org/app` (outside the installation).
async fn setup() -> (FakeGitHub, GitServer) {
    let github = FakeGitHub::start().await;
    let server = GitServer::start(github.handle());
    for (owner, repo) in [
        ("Octo-Org", "app"),
        ("Octo-Org", "lib"),
        ("Other-Org", "app"),
    ] {
        server.create_repo(owner, repo);
    }
    (github, server)
}

/// Issue a token for installation 4242 directly in the fake's world.
fn issue(github: &FakeGitHub, repos: Option<&[&str]>, lifetime: i64, revoked: bool) -> String {
    let mut bytes = [0u8; 18];
    SystemRandom::new().fill(&mut bytes).expect("random");
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let token = format!("ghs_{token}");
    let mut world = github.world();
    let expires_at = world.now() + lifetime;
    world.issued.push(Issued {
        token: token.clone(),
        installation: 4242,
        repos: repos.map(|rs| rs.iter().map(|r| (*r).to_owned()).collect()),
        permissions: Default::default(),
        expires_at,
        revoked,
    });
    token
}

/// The repository's URL, with the token as the Basic password if given.
fn remote(server: &GitServer, token: Option<&str>, path: &str) -> String {
    let url = match token {
        Some(token) => {
            server
                .url()
                .replacen("http://", &format!("http://x-access-token:{token}@"), 1)
        }
        None => server.url(),
    };
    url + path
}

/// git's output, with the token replaced by its fingerprint, for assertion messages.
fn shown(output: &Output, token: Option<&str>) -> String {
    let text = format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    match token {
        Some(token) => text.replace(token, &fingerprint(token)),
        None => text,
    }
}

#[track_caller]
fn git_ok(dir: &Path, args: &[&str], token: Option<&str>) -> String {
    let output = git(dir, args);
    assert!(
        output.status.success(),
        "git {:?} failed: {}",
        args.first(),
        shown(&output, token)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn a_live_token_clones_and_pushes() {
    let (github, server) = setup().await;
    let token = issue(&github, Some(&["app"]), 3600, false);
    let url = remote(&server, Some(&token), "/Octo-Org/app.git");
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path();

    git_ok(work, &["clone", "--quiet", &url, "app"], Some(&token));
    let clone = work.join("app");
    assert!(clone.join("README.md").exists());
    // Incompressible and above git's 64 KiB minimum post buffer: the push goes out chunked.
    let mut blob = vec![0u8; 256 * 1024];
    SystemRandom::new().fill(&mut blob).expect("random");
    fs::write(clone.join("blob.bin"), blob).expect("write");
    git_ok(&clone, &["add", "blob.bin"], None);
    git_ok(&clone, &["commit", "--quiet", "-m", "Add a blob"], None);
    let pushed = git_command(&clone)
        .args([
            "-c",
            "http.postBuffer=65536",
            "push",
            "--quiet",
            "origin",
            "main",
        ])
        .output()
        .expect("git push");
    assert!(
        pushed.status.success(),
        "push: {}",
        shown(&pushed, Some(&token))
    );

    let head = git_ok(&clone, &["rev-parse", "HEAD"], None);
    let listed = git_ok(work, &["ls-remote", &url, "refs/heads/main"], Some(&token));
    assert_eq!(listed.split_whitespace().next(), Some(head.trim()));
    // The path without `.git` names the same repository.
    let bare_url = remote(&server, Some(&token), "/Octo-Org/app");
    let listed = git_ok(
        work,
        &["ls-remote", &bare_url, "refs/heads/main"],
        Some(&token),
    );
    assert_eq!(listed.split_whitespace().next(), Some(head.trim()));

    let requests = server.requests();
    assert!(
        requests.iter().any(|r| r.method == "POST"
            && r.path == "/Octo-Org/app.git/git-receive-pack"
            && r.status == 200
            && r.chunked
            && r.token.as_deref() == Some(fingerprint(&token).as_str())),
        "{requests:#?}"
    );
    assert!(!format!("{requests:?}").contains(&token));

    // Checked at each request: once revoked, the same token is refused.
    github.world().issued[0].revoked = true;
    let refused = git(work, &["ls-remote", &url]);
    assert!(
        !refused.status.success(),
        "{}",
        shown(&refused, Some(&token))
    );
    assert_eq!(server.requests().last().map(|r| r.status), Some(401));
}

#[tokio::test]
async fn a_long_fetch_negotiation_arrives_gzipped_and_is_served() {
    let (github, server) = setup().await;
    let token = issue(&github, None, 3600, false);
    let url = remote(&server, Some(&token), "/Octo-Org/app.git");
    let work = tempfile::tempdir().expect("tempdir");
    let (pusher, fetcher) = (work.path().join("pusher"), work.path().join("fetcher"));
    for dir in [&pusher, &fetcher] {
        let dir = dir.to_str().expect("UTF-8 path");
        git_ok(work.path(), &["clone", "--quiet", &url, dir], Some(&token));
    }
    git_ok(
        &pusher,
        &["commit", "--quiet", "--allow-empty", "-m", "New"],
        None,
    );
    git_ok(
        &pusher,
        &["push", "--quiet", "origin", "main"],
        Some(&token),
    );
    // Many local commits newer than anything the server has: git sends rounds of `have`s,
    // and gzips a request body once it passes 1 KiB.
    let mut history = String::new();
    for i in 0..300 {
        let from = if i == 0 { "from refs/heads/main\n" } else { "" };
        history.push_str(&format!(
            "commit refs/heads/local\ncommitter T <t@example.invalid> {} +0000\ndata 3\n{i:03}\n{from}\n",
            3_000_000_000u64 + i,
        ));
    }
    let mut import = git_command(&fetcher)
        .args(["fast-import", "--quiet"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("git fast-import");
    import
        .stdin
        .take()
        .expect("stdin")
        .write_all(history.as_bytes())
        .expect("feed fast-import");
    assert!(import.wait().expect("fast-import").success());

    git_ok(&fetcher, &["fetch", "--quiet", "origin"], Some(&token));
    let requests = server.requests();
    assert!(
        requests.iter().any(|r| r.gzipped && r.status == 200),
        "{requests:#?}"
    );
    let fetched = git_ok(&fetcher, &["rev-parse", "origin/main"], None);
    let pushed = git_ok(&pusher, &["rev-parse", "HEAD"], None);
    assert_eq!(fetched, pushed);
}

#[tokio::test]
async fn tokens_that_do_not_cover_the_repository_get_401() {
    let (github, server) = setup().await;
    let expired = issue(&github, None, -60, false);
    let revoked = issue(&github, None, 3600, true);
    let lib_only = issue(&github, Some(&["lib"]), 3600, false);
    let app_only = issue(&github, Some(&["app"]), 3600, false);
    let work = tempfile::tempdir().expect("tempdir");
    let cases = [
        ("expired", Some(&expired), "/Octo-Org/app.git"),
        ("revoked", Some(&revoked), "/Octo-Org/app.git"),
        ("limited to lib", Some(&lib_only), "/Octo-Org/app.git"),
        ("another owner", Some(&app_only), "/Other-Org/app.git"),
        ("no credentials", None, "/Octo-Org/app.git"),
    ];
    for (case, token, path) in cases {
        let token = token.map(String::as_str);
        let before = server.requests().len();
        let output = git(work.path(), &["ls-remote", &remote(&server, token, path)]);
        assert!(
            !output.status.success(),
            "{case}: {}",
            shown(&output, token)
        );
        let seen = &server.requests()[before..];
        assert!(!seen.is_empty(), "{case}: no request reached the server");
        assert!(seen.iter().all(|r| r.status == 401), "{case}: {seen:#?}");
        let expected = token.map(fingerprint);
        assert!(
            seen.iter().any(|r| r.token == expected),
            "{case}: {seen:#?}"
        );
    }
    // The same lib-only token does open lib: the refusals were about coverage.
    let lib = remote(&server, Some(&lib_only), "/Octo-Org/lib.git");
    git_ok(work.path(), &["ls-remote", &lib], Some(&lib_only));
}

#[tokio::test]
async fn malformed_requests_get_400_and_the_server_keeps_serving() {
    let (github, server) = setup().await;
    let address = server.url().replacen("http://", "", 1);
    for request in [
        "nonsense\r\n\r\n".to_owned(),
        "GET /x HTTP/1.1\r\nno colon here\r\n\r\n".to_owned(),
        "POST /x HTTP/1.1\r\nContent-Length: lots\r\n\r\n".to_owned(),
        format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(64 * 1024)),
    ] {
        let mut stream = TcpStream::connect(&address).expect("connect");
        // The server may answer and close before reading all of an oversized request.
        let _ = stream.write_all(request.as_bytes());
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 400 "), "{answer:?}");
    }
    let token = issue(&github, None, 3600, false);
    let work = tempfile::tempdir().expect("tempdir");
    let url = remote(&server, Some(&token), "/Octo-Org/app.git");
    git_ok(work.path(), &["ls-remote", &url], Some(&token));
}
