//! `exec --proxy`: real clients that read their token once keep reaching GitHub past its expiry,
//! and the proxy keeps its tokens to the hosts it serves.
//!
//! The fake GitHub serves TLS under a real-looking name, `api.github.test`, with a CA given as
//! a GHES user gives theirs (`--ca-certificates`); `TOKEN_KEEPER_RESOLVE` tells token-keeper
//! where that name is, which changes where its connections go, never which host a token is
//! meant for. The clients never resolve it: they ask the proxy for it by name.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use testkit::assert_success;
use testkit::ci::CiJob;
use testkit::fake_github::{APP_ID, FakeGitHub, app_inputs};
use testkit::git_server::GitServer;
use testkit::logs::{assert_no_part_shown, text};
use testkit::node::{npm_package, runner_node};
use testkit::proxy::Proxy;
use testkit::runner::{Job, LaterStep, StepRun, View, parse_file_command};
use testkit::tls::{TestCa, TlsFront};
use testkit::{act, engine};

const API_HOST: &str = "api.github.test";
const GIT_HOST: &str = "github.test";
/// The MCP server's release on the npm registry.
const MCP_SERVER_VERSION: &str = "2025.4.8";
/// Another host, which the proxy must tunnel untouched.
const ELSEWHERE: &str = "elsewhere.test";

/// A job outside Actions with a store for the fake behind `api.github.test` and its git server
/// behind `github.test`, both under one private CA, whose tokens live three seconds.
struct ProxyJob {
    github: FakeGitHub,
    front: TlsFront,
    git_front: TlsFront,
    _git: GitServer,
    job: CiJob,
    api: String,
    git: String,
}

impl ProxyJob {
    async fn start() -> Self {
        Self::serving(API_HOST).await
    }

    /// A job whose API is served as `api_host` (GitHub's own, `api.github.com`, for a client that
    /// knows no other).
    async fn serving(api_host: &str) -> Self {
        Self::serving_git(api_host, None).await
    }

    /// A job whose git server's name is served by `git_upstream` (a plain-HTTP server on
    /// loopback) instead of the git server.
    async fn serving_git(api_host: &str, git_upstream: Option<&str>) -> Self {
        let github = FakeGitHub::start().await;
        github.world().token_lifetime = Duration::from_secs(3);
        let git = GitServer::start(github.handle());
        git.create_repo("Octo-Org", "app");
        let ca = TestCa::new("token-keeper test CA");
        let front = TlsFront::named(&github.url(), api_host, &ca);
        let git_front = TlsFront::named(git_upstream.unwrap_or(&git.url()), GIT_HOST, &ca);
        // The API's port too, for a client that calls `api.github.com` on 443.
        let resolve = format!(
            "{api_host}=127.0.0.1:{},{GIT_HOST}=127.0.0.1,{ELSEWHERE}=127.0.0.1",
            front.port()
        );
        let job = CiJob::new(&[("CI_JOB_ID", "proxy"), ("TOKEN_KEEPER_RESOLVE", &resolve)]);
        Self {
            api: format!("https://{api_host}:{}", front.port()),
            git: format!("https://{GIT_HOST}:{}", git_front.port()),
            github,
            front,
            git_front,
            _git: git,
            job,
        }
    }

    /// `script` after `setup`, in one shell of the job, with `API`, `GIT` and `GITHUB_CA` set.
    fn run(&self, script: &str) -> std::process::Output {
        let ca = self.job.path("github-ca.pem");
        self.front.write_ca(std::path::Path::new(&ca));
        let setup = format!(
            "token-keeper setup --app-id {APP_ID} --private-key-file '{}' --api-url '{}' --git-server-url '{}' --ca-certificates '{ca}' --owner Octo-Org",
            self.job.key_file(),
            self.api,
            self.git
        );
        self.job.shell(
            &format!("eval \"$({setup})\"\n{script}\ntoken-keeper revoke >/dev/null 2>&1"),
            &[("API", &self.api), ("GIT", &self.git), ("GITHUB_CA", &ca)],
        )
    }
}

/// A client that reads `GH_TOKEN` once, calls the API, waits past the token's expiry and calls
/// again; it prints each answer's status. `$@` is curl's extra flags.
const CURL_CLIENT: &str = r#"
set -u
token=$GH_TOKEN
call() { curl -sS -o /dev/null -w '%{http_code}\n' -H "Authorization: Bearer $token" "$@" "$API/installation/repositories"; }
call "$@"
sleep 3.5
call "$@"
"#;

const PYTHON_CLIENT: &str = r#"
import os, time, urllib.request, urllib.error
token = os.environ["GH_TOKEN"]
def call():
    request = urllib.request.Request(os.environ["API"] + "/installation/repositories",
                                     headers={"Authorization": "Bearer " + token})
    try:
        return urllib.request.urlopen(request, timeout=10).status
    except urllib.error.HTTPError as answer:
        return answer.code
print(call())
time.sleep(3.5)
print(call())
"#;

/// Python's requests, which trusts certifi's roots unless told otherwise, the token read once.
const REQUESTS_CLIENT: &str = r#"
import os, time, requests
token = os.environ["GH_TOKEN"]
def call():
    return requests.get(os.environ["API"] + "/installation/repositories",
                        headers={"Authorization": "token " + token}, timeout=10).status_code
print(call())
time.sleep(3.5)
print(call())
"#;

fn client(job: &CiJob, name: &str, text: &str) -> String {
    let path = job.path(name);
    fs::write(&path, text).unwrap();
    path
}

/// git with the token it read once in its own header (`x-access-token` in `Basic`), no helper.
const GIT_CLIENT: &str = r#"
set -u
unset GIT_CONFIG_COUNT
header="Authorization: Basic $(printf 'x-access-token:%s' "$GH_TOKEN" | base64 -w0)"
call() { git -c credential.helper= -c "http.extraHeader=$header" ls-remote "$GIT/Octo-Org/app.git" >/dev/null && echo ok || echo refused; }
call
sleep 3.5
call
"#;

/// `gh`, Go's client, given the token it read once (on Enterprise Server, in
/// `GH_ENTERPRISE_TOKEN`).
const GH_CLIENT: &str = r#"
set -u
token=$GH_ENTERPRISE_TOKEN
host=${API#https://}
call() { GH_ENTERPRISE_TOKEN=$token GH_HOST=$host gh api /installation/repositories --silent && echo ok || echo refused; }
call
sleep 3.5
call
"#;

/// node's own fetch, the token read once.
const NODE_CLIENT: &str = r#"
const token = process.env.GH_TOKEN;
const call = async () => (await fetch(process.env.API + "/installation/repositories",
  { headers: { Authorization: `Bearer ${token}` } })).status;
(async () => {
  console.log(await call());
  await new Promise((done) => setTimeout(done, 3500));
  console.log(await call());
})();
"#;

#[tokio::test]
async fn git_gh_and_node_that_read_their_token_once_keep_working_past_its_expiry() {
    let px = ProxyJob::start().await;
    let git = client(&px.job, "git-client.sh", GIT_CLIENT);
    let gh = client(&px.job, "gh-client.sh", GH_CLIENT);
    let node_client = client(&px.job, "client.js", NODE_CLIENT);
    let node = runner_node();
    let run = px.run(&format!(
        "token-keeper exec --proxy -- bash '{git}'\ntoken-keeper exec --proxy -- bash '{gh}'\ntoken-keeper exec --proxy -- '{}' '{node_client}'",
        node.display()
    ));
    assert_success("exec --proxy", &run);
    assert_eq!(
        String::from_utf8_lossy(&run.stdout),
        "ok\nok\nok\nok\n200\n200\n",
        "{}",
        text(&run)
    );
    assert!(px.git_front.handshakes() > 0, "git went to the git server");
}

#[tokio::test]
async fn curl_and_pythons_clients_that_read_their_token_once_keep_working_past_its_expiry() {
    let px = ProxyJob::start().await;
    let curl = client(&px.job, "client.sh", CURL_CLIENT);
    let python = client(&px.job, "client.py", PYTHON_CLIENT);
    let requests = client(&px.job, "requests-client.py", REQUESTS_CLIENT);
    // With the proxy's diagnostics on: what it logs holds request lines, never a token.
    let run = px.run(&format!(
        "export TOKEN_KEEPER_LOG=1\ntoken-keeper exec --proxy -- bash '{curl}'\ntoken-keeper exec --proxy -- python3 '{python}'\ntoken-keeper exec --proxy -- python3 '{requests}'"
    ));
    assert_success("exec --proxy", &run);
    let out = String::from_utf8_lossy(&run.stdout);
    assert_eq!(out, "200\n200\n200\n200\n200\n200\n", "{}", text(&run));
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(
        log.contains("proxy: GET https://api.github.test/installation/repositories"),
        "{log}"
    );
    assert_no_part_shown("the proxy's log", &log, &px.github.tokens());
    // Each client's second call went out with a token minted after the one it read.
    assert!(px.github.mints() >= 3, "mints: {}", px.github.mints());
    assert!(
        px.github.world().live_tokens().is_empty(),
        "revoked at the end"
    );
}

/// The control: the same clients, given the token the same way but without the proxy (told
/// where the names are and which CA to trust), fail once it expired.
#[tokio::test]
async fn without_the_proxy_the_same_clients_fail_after_the_expiry() {
    let px = ProxyJob::start().await;
    let curl = client(&px.job, "client.sh", CURL_CLIENT);
    let git = client(&px.job, "git-client.sh", GIT_CLIENT);
    let (api_port, git_port) = (px.front.port(), px.git_front.port());
    let run = px.run(&format!(
        "token-keeper exec -- bash '{curl}' --cacert \"$GITHUB_CA\" --resolve {API_HOST}:{api_port}:127.0.0.1\n\
         GIT_SSL_CAINFO=\"$GITHUB_CA\" GIT_CONFIG_PARAMETERS=\"'http.curloptResolve={GIT_HOST}:{git_port}:127.0.0.1'\" token-keeper exec -- bash '{git}'"
    ));
    assert_success("exec", &run);
    assert_eq!(
        String::from_utf8_lossy(&run.stdout),
        "200\n401\nok\nrefused\n",
        "{}",
        text(&run)
    );
}

/// Who may use the proxy, and what it puts where: no secret, no entry; a foreign credential and
/// another host's traffic untouched; a request for another host inside GitHub's tunnel refused.
#[tokio::test]
async fn the_proxy_admits_its_own_and_keeps_its_tokens_to_the_hosts_it_serves() {
    let elsewhere = TcpListener::bind("127.0.0.1:0").unwrap();
    let elsewhere_port = elsewhere.local_addr().unwrap().port();
    let (seen, received) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        if let Ok((mut stream, _)) = elsewhere.accept() {
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut bytes = vec![0; 4096];
            let read = stream.read(&mut bytes).unwrap_or(0);
            bytes.truncate(read);
            let _ = seen.send(bytes);
        }
    });
    let px = ProxyJob::start().await;
    let script = format!(
        r#"
set -u
no_secret=$(printf '%s' "$HTTPS_PROXY" | sed 's#//[^@]*@#//#')
wrong=$(printf '%s' "$HTTPS_PROXY" | sed 's#:[^:@/]*@#:not-the-secret@#')
echo "no-secret $(curl -s -o /dev/null -w '%{{http_connect}}' --proxy "$no_secret" "$API/" || true)"
echo "wrong $(curl -s -o /dev/null -w '%{{http_connect}}' --proxy "$wrong" "$API/" || true)"
echo "foreign $(curl -s -o /dev/null -w '%{{http_code}}' -H 'Authorization: Bearer not-a-token-of-ours' "$API/installation/repositories")"
echo "misdirected $(curl -s -o /dev/null -w '%{{http_code}}' -H 'Host: evil.test' -H "Authorization: Bearer $GH_TOKEN" "$API/installation/repositories")"
port=${{API##*:}}
curl -s -k -o /dev/null --connect-to "evil.test:$port:{API_HOST}:$port" -H "Authorization: Bearer $GH_TOKEN" "https://evil.test:$port/installation/repositories"
echo "other-name $?"
curl -s -o /dev/null --max-time 3 -H "Authorization: Bearer $GH_TOKEN" https://{ELSEWHERE}:{elsewhere_port}/ || true
"#
    );
    let probe = client(&px.job, "probe.sh", &script);
    let run = px.run(&format!("token-keeper exec --proxy -- bash '{probe}'"));
    assert_success("exec --proxy", &run);
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(out.contains("no-secret 407\n"), "{out}\n{}", text(&run));
    assert!(out.contains("wrong 407\n"), "{out}");
    assert!(out.contains("foreign 401\n"), "{out}");
    assert!(out.contains("misdirected 421\n"), "{out}");
    // A TLS name that is not the CONNECT target, from a client that would take any certificate:
    // the connection ends, no request goes on.
    assert!(
        out.lines()
            .any(|l| l.starts_with("other-name ") && l != "other-name 0"),
        "{out}"
    );
    assert!(
        px.github.seen("GET", "/installation/repositories").len() == 1,
        "only the foreign call reached GitHub"
    );
    assert!(
        px.github
            .bearers()
            .iter()
            .any(|b| b == "not-a-token-of-ours"),
        "a foreign credential reaches GitHub as it was"
    );
    // The other host got the client's own TLS handshake, for its own name: a tunnel, not ours.
    let bytes = received
        .recv_timeout(Duration::from_secs(10))
        .expect("the other host was reached");
    assert_eq!(bytes.first(), Some(&0x16), "a TLS handshake record");
    assert!(
        bytes
            .windows(ELSEWHERE.len())
            .any(|w| w == ELSEWHERE.as_bytes()),
        "the client's own SNI"
    );
}

/// The MCP server an agent starts, `@modelcontextprotocol/server-github` from the npm registry:
/// it takes `GITHUB_PERSONAL_ACCESS_TOKEN` from its environment, which never changes, and calls
/// `api.github.com` with node's fetch. Driven over stdio, it answers a tool call after the first
/// token expired.
#[tokio::test]
async fn an_mcp_server_given_its_token_once_answers_a_tool_call_after_the_expiry() {
    let px = ProxyJob::serving("api.github.com").await;
    let package = "@modelcontextprotocol/server-github";
    let server = npm_package(package, MCP_SERVER_VERSION)
        .join("node_modules")
        .join(package)
        .join("dist/index.js");
    let node = runner_node();
    let call = |id: u32| {
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"search_repositories","arguments":{{"query":"app"}}}}}}"#
        )
    };
    let session = [
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2024-11-05","capabilities":{},"clientInfo":{"name":"test","version":"1"}}}"#.to_owned(),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_owned(),
        call(2),
    ];
    let script = format!(
        "{{ printf '%s\\n' '{}'; sleep 3.5; printf '%s\\n' '{}'; sleep 2; }} | token-keeper exec --proxy --token-env GITHUB_PERSONAL_ACCESS_TOKEN -- '{}' '{}'",
        session.join("' '"),
        call(3),
        node.display(),
        server.display()
    );
    let run = px.run(&script);
    assert_success("the MCP server", &run);
    let answers: Vec<serde_json::Value> = String::from_utf8_lossy(&run.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    for id in [2, 3] {
        let answer = answers
            .iter()
            .find(|a| a["id"] == id)
            .unwrap_or_else(|| panic!("no answer {id}: {}", text(&run)));
        assert!(
            answer["result"]["isError"] != true && answer["error"].is_null(),
            "call {id}: {answer}"
        );
        assert!(
            answer["result"]["content"][0]["text"]
                .as_str()
                .is_some_and(|t| t.contains("total_count")),
            "call {id}: {answer}"
        );
    }
    // The second call went out with a token minted after the one the server was given.
    assert!(px.github.mints() >= 2, "mints: {}", px.github.mints());
}

/// A user behind a proxy of their own: what ours sends on goes through it, to GitHub and to any
/// other host, and the client still gets the live token.
#[tokio::test]
async fn the_users_own_proxy_carries_what_ours_sends_on() {
    let elsewhere = TcpListener::bind("127.0.0.1:0").unwrap();
    let elsewhere_port = elsewhere.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let _ = elsewhere.accept();
    });
    let theirs = Proxy::finding(&[API_HOST, ELSEWHERE]);
    let px = ProxyJob::start().await;
    let curl = client(&px.job, "client.sh", CURL_CLIENT);
    let script = format!(
        "export https_proxy={}\n\
         token-keeper exec --proxy -- bash -c \"bash '{curl}'; curl -s -o /dev/null --max-time 3 https://{ELSEWHERE}:{elsewhere_port}/ || true\"",
        theirs.url
    );
    let run = px.run(&script);
    assert_success("exec --proxy behind a proxy", &run);
    assert_eq!(
        String::from_utf8_lossy(&run.stdout),
        "200\n200\n",
        "{}",
        text(&run)
    );
    let seen = theirs.seen();
    let api = format!("CONNECT {API_HOST}:{} HTTP/1.1", px.front.port());
    assert!(seen.contains(&api), "{seen:?}");
    let tunnel = format!("CONNECT {ELSEWHERE}:{elsewhere_port} HTTP/1.1");
    assert!(seen.contains(&tunnel), "{seen:?}");
}

/// Behind the user's own proxy, token-keeper's own calls in a shell that `proxy start` routed
/// through ours (a re-mint, the revocation) go past ours and through theirs, as before.
#[tokio::test]
async fn our_own_calls_after_proxy_start_still_go_through_the_users_proxy() {
    let theirs = Proxy::finding(&[API_HOST]);
    let px = ProxyJob::start().await;
    let script = format!(
        "export https_proxy={}\n\
         eval \"$(token-keeper proxy start)\"\n\
         case $https_proxy in http://token-keeper:*) ;; *) echo 'not routed through ours' >&2; exit 1;; esac\n\
         sleep 3.5\n\
         token-keeper token >/dev/null",
        theirs.url
    );
    let run = px.run(&script);
    assert_success("token after proxy start behind a proxy", &run);
    assert!(
        px.github.mints() >= 2,
        "the token re-minted:\n{}",
        text(&run)
    );
    let api = format!("CONNECT {API_HOST}:{} HTTP/1.1", px.front.port());
    let seen = theirs.seen();
    assert!(seen.contains(&api), "{seen:?}\n{}", text(&run));
}

/// A tool an agent starts in a container (`docker run -i --rm -e VAR image`): on the host's
/// network the proxy's loopback address is the container's too; the variables that route it
/// pass by name, and the authority comes in as a read-only file. node 24's fetch in the image
/// reaches GitHub past the token's expiry.
#[tokio::test]
async fn a_tool_in_a_container_on_the_hosts_network_reaches_github_through_the_proxy() {
    let Some(engine) = engine::engine() else {
        return;
    };
    let image = act::runner_image(&engine);
    let px = ProxyJob::start().await;
    let node_client = client(&px.job, "client.js", NODE_CLIENT);
    let run_container = format!(
        "{engine} run -i --rm --network=host -e HTTPS_PROXY -e https_proxy -e NODE_USE_ENV_PROXY -e GH_TOKEN -e API \
         -e NODE_EXTRA_CA_CERTS=/run/token-keeper/authority.pem -v \"$NODE_EXTRA_CA_CERTS:/run/token-keeper/authority.pem:ro\" \
         -v '{node_client}:/client.js:ro' {image} node /client.js"
    );
    let script = format!(
        "token-keeper exec --proxy -- sh -c '{}'",
        run_container.replace('\'', "'\\''")
    );
    let run = px.run(&script);
    assert_success("the container", &run);
    assert_eq!(
        String::from_utf8_lossy(&run.stdout),
        "200\n200\n",
        "{}",
        text(&run)
    );
}

/// `proxy start` after `setup`, in another CI: the shell's own clients, routed by the lines it
/// prints, reach GitHub past the token's expiry; a second start finds the same proxy; `revoke`
/// ends it with the store, and nothing of ours is left running.
#[tokio::test]
async fn proxy_start_serves_the_rest_of_the_job_and_revoke_ends_it() {
    let px = ProxyJob::start().await;
    let curl = client(&px.job, "client.sh", CURL_CLIENT);
    let noted = px.job.path("proxy-record");
    let script = format!(
        "eval \"$(token-keeper proxy start)\"\n\
         first=$HTTPS_PROXY\n\
         eval \"$(token-keeper proxy start)\"\n\
         [ \"$first\" = \"$HTTPS_PROXY\" ] || echo 'a second proxy'\n\
         bash '{curl}'\n\
         cp \"$TOKEN_KEEPER_STATE/proxy.json\" '{noted}'"
    );
    let run = px.run(&script);
    assert_success("proxy start", &run);
    assert_eq!(
        String::from_utf8_lossy(&run.stdout),
        "200\n200\n",
        "{}",
        text(&run)
    );
    let record: serde_json::Value = serde_json::from_slice(&fs::read(&noted).unwrap()).unwrap();
    let pid = record["pid"].as_u64().unwrap();
    // The proxy saw the store's end begin, and ended itself.
    let gone = std::time::Instant::now();
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(
            gone.elapsed() < Duration::from_secs(5),
            "the proxy {pid} outlived its store"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(px.github.world().live_tokens().is_empty());
    assert!(px.job.stores().is_empty(), "{:?}", px.job.stores());
}

/// An Actions job whose main step minted for the fake behind `api.github.test` (tokens that live
/// three seconds), and whose next step ran `proxy start --format github-env`.
struct ActionsProxy {
    github: FakeGitHub,
    _front: TlsFront,
    job: Job,
    api: String,
    ca_pem: String,
    main: StepRun,
    /// What `proxy start` gave `$GITHUB_ENV`.
    given: BTreeMap<String, String>,
}

impl ActionsProxy {
    async fn start() -> Self {
        let github = FakeGitHub::start().await;
        github.world().token_lifetime = Duration::from_secs(3);
        let ca = TestCa::new("token-keeper test CA");
        let front = TlsFront::named(&github.url(), API_HOST, &ca);
        let api = format!("https://{API_HOST}:{}", front.port());
        let mut job = Job::new(&api);
        job.extra_env.insert(
            "TOKEN_KEEPER_RESOLVE".into(),
            format!("{API_HOST}=127.0.0.1:{}", front.port()),
        );
        let ca_pem = front.ca_pem();
        let main = job.main(&actions_inputs(&ca_pem), View::Host);
        main.assert_ok();

        let mut step = LaterStep::after(&job, &main);
        step.env.insert("GITHUB_ACTIONS".into(), "true".into());
        step.env.extend(job.extra_env.clone());
        let started = step
            .command("token-keeper")
            .args(["proxy", "start", "--format", "github-env"])
            .output()
            .unwrap();
        assert_success("proxy start", &started);
        let given = parse_file_command(&String::from_utf8_lossy(&started.stdout));
        let names: Vec<&str> = given.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "TOKEN_KEEPER_PROXY",
                "TOKEN_KEEPER_PROXY_BUNDLE",
                "TOKEN_KEEPER_PROXY_CA"
            ]
        );
        // Its secret is masked on the step's stderr before anything holds it.
        let url = &given["TOKEN_KEEPER_PROXY"];
        let secret = url.split_once(':').unwrap().1.rsplit_once('@').unwrap().0;
        let secret = secret.rsplit_once(':').unwrap().1;
        assert!(
            String::from_utf8_lossy(&started.stderr).contains(&format!("::add-mask::{secret}")),
            "{}",
            text(&started)
        );
        Self {
            github,
            _front: front,
            job,
            api,
            ca_pem,
            main,
            given,
        }
    }

    fn inputs(&self) -> Vec<(&str, &str)> {
        actions_inputs(&self.ca_pem)
    }

    /// A later step that takes the main step's token once and calls GitHub through the proxy,
    /// opting in by its own `env:`: the answer's status.
    fn call_through_the_proxy(&self) -> String {
        let mut later = LaterStep::after(&self.job, &self.main);
        later.env.extend(self.given.clone());
        let called = later
            .command("bash")
            .args([
                "-c",
                &format!(
                    r#"HTTPS_PROXY=$TOKEN_KEEPER_PROXY CURL_CA_BUNDLE=$TOKEN_KEEPER_PROXY_BUNDLE curl -sS -o /dev/null -w '%{{http_code}}' -H "Authorization: Bearer {}" {}/installation/repositories"#,
                    self.main.outputs["token"], self.api
                ),
            ])
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&called.stdout),
            if called.status.success() {
                ""
            } else {
                " (curl failed)"
            }
        )
    }

    /// The job-wide proxy's pid, from its record in the store.
    fn proxy_pid(&self) -> u64 {
        let record: serde_json::Value = serde_json::from_slice(
            &fs::read(
                self.job
                    .temp
                    .join("token-keeper")
                    .read_dir()
                    .unwrap()
                    .flatten()
                    .map(|e| e.path().join("proxy.json"))
                    .find(|p| p.exists())
                    .expect("the proxy's record"),
            )
            .unwrap(),
        )
        .unwrap();
        record["pid"].as_u64().unwrap()
    }
}

/// The action's inputs for the fake behind `api.github.test`, whose CA is `ca_pem`.
fn actions_inputs(ca_pem: &str) -> Vec<(&str, &str)> {
    app_inputs(&[
        ("git-server-url", "https://github.test"),
        ("ca-certificates", ca_pem),
    ])
}

/// Wait for process `pid` to end, as it must within seconds.
#[track_caller]
fn assert_ends(pid: u64) {
    let gone = std::time::Instant::now();
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(
            gone.elapsed() < Duration::from_secs(5),
            "the proxy {pid} outlived the job"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// In Actions: `proxy start --format github-env` gives later steps where the proxy is and
/// nothing a tool reads by itself; a step that took the main step's token once opts in, by its
/// own `env:`, and reaches GitHub after the expiry; the post step ends the proxy with the store.
#[tokio::test]
async fn in_actions_a_step_opts_in_to_the_job_wide_proxy_and_the_post_step_ends_it() {
    let px = ActionsProxy::start().await;
    // An action that read its `github-token:` input once, called after the token expired.
    std::thread::sleep(Duration::from_millis(3500));
    assert_eq!(px.call_through_the_proxy(), "200");

    let pid = px.proxy_pid();
    let post = px.job.post(&px.inputs(), &px.main.state, View::Host);
    post.assert_ok();
    assert!(!post.log().contains("had stopped"), "{}", post.log());
    assert_ends(pid);
    assert!(px.github.world().live_tokens().is_empty());
}

/// A container action later in the job, given every variable the job's steps exported, still
/// mints its own token: what `proxy start` exported routes no client by itself (here the
/// container shares the host's network; on a runner's own network `127.0.0.1` would be the
/// container, which is why nothing routes there unasked). The opted-in step still reaches GitHub
/// after it, and the post steps end the proxy and revoke every token.
#[tokio::test]
async fn a_container_action_after_proxy_start_keeps_working() {
    let Some(image) = engine::image() else {
        return;
    };
    let mut px = ActionsProxy::start().await;
    px.job.extra_env.extend(px.given.clone());
    let view = View::Engine {
        image,
        runner_temp: true,
    };
    let inputs = px.inputs();
    let contained = px.job.main(&inputs, view);
    contained.assert_ok();
    assert_ne!(contained.outputs["token"], px.main.outputs["token"]);

    std::thread::sleep(Duration::from_millis(3500));
    assert_eq!(px.call_through_the_proxy(), "200");

    let pid = px.proxy_pid();
    px.job.post(&inputs, &contained.state, view).assert_ok();
    px.job.post(&inputs, &px.main.state, View::Host).assert_ok();
    assert_ends(pid);
    assert!(px.github.world().live_tokens().is_empty());
    assert!(
        px.github.mints() >= 2,
        "the container action minted its own"
    );
}

/// A job-wide proxy that stopped before the job's end is said to have stopped, by `revoke` as
/// by the post step.
#[tokio::test]
async fn the_end_says_when_the_job_wide_proxy_had_stopped() {
    let px = ProxyJob::start().await;
    let script = "eval \"$(token-keeper proxy start)\"\n\
        kill -9 \"$(sed 's/.*\"pid\":\\([0-9]*\\).*/\\1/' \"$TOKEN_KEEPER_STATE/proxy.json\")\"\n\
        sleep 0.2\n\
        token-keeper revoke";
    let run = px.run(script);
    assert_success("revoke", &run);
    assert!(
        text(&run).contains("had stopped before its end"),
        "{}",
        text(&run)
    );
}

/// GitHub's redirects are the client's to follow: one to another host reaches it through the
/// proxy as the client sent it, with none of our tokens (curl drops its own header there).
#[tokio::test]
async fn a_redirect_to_another_host_carries_none_of_our_tokens() {
    let elsewhere = TcpListener::bind("127.0.0.1:0").unwrap();
    let elsewhere_port = elsewhere.local_addr().unwrap().port();
    let (seen, received) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        if let Ok((mut stream, _)) = elsewhere.accept() {
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut bytes = vec![0; 8192];
            let read = stream.read(&mut bytes).unwrap_or(0);
            let _ = seen.send(String::from_utf8_lossy(&bytes[..read]).into_owned());
            let _ = std::io::Write::write_all(
                &mut stream,
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
            );
        }
    });
    let px = ProxyJob::start().await;
    let location = format!("http://{ELSEWHERE}:{elsewhere_port}/archive.tar.gz");
    px.github
        .answer_next("/installation/repositories", move |_| {
            wiremock::ResponseTemplate::new(302).insert_header("location", location.as_str())
        });
    let run = px.run(
        "token-keeper exec --proxy -- sh -c 'curl -sS -L -H \"Authorization: Bearer $GH_TOKEN\" \"$API/installation/repositories\"'",
    );
    assert_success("exec --proxy", &run);
    assert_eq!(String::from_utf8_lossy(&run.stdout), "ok", "{}", text(&run));
    let request = received
        .recv_timeout(Duration::from_secs(10))
        .expect("the redirect was followed");
    assert!(
        request.starts_with("GET /archive.tar.gz HTTP/1.1"),
        "{request}"
    );
    assert!(
        !request.to_ascii_lowercase().contains("authorization"),
        "{request}"
    );
    assert_no_part_shown("the other host's request", &request, &px.github.tokens());
}

/// An `Upgrade` on a host we serve is joined end to end: the client's bytes after `101` reach
/// the host, and the host's come back.
#[tokio::test]
async fn an_upgrade_is_joined_end_to_end() {
    let upgrading = TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = format!("http://{}", upgrading.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in upgrading.incoming().flatten() {
            std::thread::spawn(move || echo_after_upgrade(stream));
        }
    });
    let px = ProxyJob::serving_git(API_HOST, Some(&upstream)).await;
    let client = client(&px.job, "upgrade.py", UPGRADE_CLIENT);
    let run = px.run(&format!("token-keeper exec --proxy -- python3 '{client}'"));
    assert_success("exec --proxy", &run);
    assert_eq!(
        String::from_utf8_lossy(&run.stdout),
        "101\nping pong\n",
        "{}",
        text(&run)
    );
}

/// An event stream through the proxy arrives as it is sent: the first event before the second
/// was written, not once the answer ends.
#[tokio::test]
async fn server_sent_events_stream_through() {
    let streaming = TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = format!("http://{}", streaming.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in streaming.incoming().flatten() {
            std::thread::spawn(move || events(stream));
        }
    });
    let px = ProxyJob::serving_git(API_HOST, Some(&upstream)).await;
    let client = client(&px.job, "events.py", EVENTS_CLIENT);
    let run = px.run(&format!("token-keeper exec --proxy -- python3 '{client}'"));
    assert_success("exec --proxy", &run);
    assert_eq!(
        String::from_utf8_lossy(&run.stdout),
        "data: 1 early\ndata: 2\n",
        "{}",
        text(&run)
    );
}

/// Read a request's head from `stream`; what follows stays in the reader.
fn read_head(stream: &std::net::TcpStream) -> std::io::BufReader<std::net::TcpStream> {
    use std::io::BufRead;
    let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
        line.clear();
    }
    reader
}

/// Two events, chunked, two seconds apart.
fn events(stream: std::net::TcpStream) {
    use std::io::Write;
    let _reader = read_head(&stream);
    let mut out = stream;
    let chunk = |text: &str| format!("{:x}\r\n{text}\r\n", text.len());
    let _ = out.write_all(
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n{}",
            chunk("data: 1\n\n")
        )
        .as_bytes(),
    );
    std::thread::sleep(Duration::from_secs(2));
    let _ = out.write_all(format!("{}0\r\n\r\n", chunk("data: 2\n\n")).as_bytes());
}

const EVENTS_CLIENT: &str = r#"
import os, time, urllib.request
started = time.monotonic()
with urllib.request.urlopen(os.environ["GIT"] + "/events", timeout=10) as answer:
    first = answer.readline().decode().strip()
    print(first, "early" if time.monotonic() - started < 1.5 else "late")
    answer.readline()
    print(answer.readline().decode().strip())
"#;

/// Answer an `Upgrade: echo` request with `101`, then send back each line it gets, with ` pong`.
fn echo_after_upgrade(stream: std::net::TcpStream) {
    use std::io::{BufRead, Write};
    let mut reader = read_head(&stream);
    let mut out = stream;
    let _ = out.write_all(
        b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n",
    );
    let mut message = String::new();
    if reader.read_line(&mut message).is_ok() {
        let _ = out.write_all(format!("{} pong\n", message.trim_end()).as_bytes());
    }
}

/// Through the proxy by hand, as a websocket client would: `CONNECT`, TLS, `Upgrade`, then bytes.
const UPGRADE_CLIENT: &str = r#"
import base64, os, socket, ssl, urllib.parse
proxy = urllib.parse.urlsplit(os.environ["HTTPS_PROXY"])
git = urllib.parse.urlsplit(os.environ["GIT"])
target = f"{git.hostname}:{git.port}"
raw = socket.create_connection((proxy.hostname, proxy.port), timeout=10)
auth = base64.b64encode(f"{proxy.username}:{proxy.password}".encode()).decode()
raw.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: Basic {auth}\r\n\r\n".encode())
head = b""
while not head.endswith(b"\r\n\r\n"):
    head += raw.recv(1)
context = ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
tls = context.wrap_socket(raw, server_hostname=git.hostname)
tls.sendall(f"GET /socket HTTP/1.1\r\nHost: {target}\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n".encode())
answer = b""
while not answer.endswith(b"\r\n\r\n"):
    answer += tls.recv(1)
print(answer.split(b" ")[1].decode())
tls.sendall(b"ping\n")
reply = b""
while not reply.endswith(b"\n"):
    reply += tls.recv(1)
print(reply.decode().strip())
"#;
