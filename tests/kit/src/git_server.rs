//! A git smart-HTTP server on loopback: git's own `git http-backend` behind HTTP Basic auth that
//! accepts only tokens the fake GitHub issued and still honours for the repository asked for.
//!
//! Deliberately small: one thread per connection, `Connection: close` after every response.
//! Requests are recorded with the token's fingerprint, never the token.

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::digest;
use tempfile::TempDir;

use crate::fake_github::World;

/// The realm of our `401` answers.
pub const REALM: &str = "token-keeper test";

/// Caps on what a client may send before the body, so a bad client cannot exhaust memory.
const MAX_LINE: u64 = 8 * 1024;
const MAX_HEADERS: usize = 100;
/// How much of a refused request we read before closing (see `refuse`).
const MAX_DRAIN: u64 = 16 * 1024 * 1024;

/// A request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    /// Without the query.
    pub path: String,
    pub query: String,
    pub status: u16,
    /// The fingerprint (see [`fingerprint`]) of the Basic password presented, if any.
    pub token: Option<String>,
    /// `Transfer-Encoding: chunked` (git's large pushes).
    pub chunked: bool,
    /// `Content-Encoding: gzip` (git's large fetch negotiations).
    pub gzipped: bool,
}

pub struct GitServer {
    addr: SocketAddr,
    root: TempDir,
    _home: TempDir,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

/// What every connection thread needs.
struct Shared {
    world: Arc<Mutex<World>>,
    root: PathBuf,
    home: PathBuf,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl GitServer {
    /// Serve an empty project root on `127.0.0.1:<random port>`; tokens are checked against `world`.
    pub fn start(world: Arc<Mutex<World>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the git server");
        let addr = listener.local_addr().expect("git server address");
        let root = tempdir("tk-git-root");
        let home = tempdir("tk-git-home");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared {
            world,
            root: root.path().to_owned(),
            home: home.path().to_owned(),
            seen: seen.clone(),
        });
        let stopping = stop.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let shared = shared.clone();
                thread::spawn(move || {
                    // A broken connection only ends its own thread.
                    let _ = serve(stream, &shared);
                });
            }
        });
        Self {
            addr,
            root,
            _home: home,
            seen,
            stop,
        }
    }

    /// `http://127.0.0.1:PORT`, without credentials.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Where `owner/repo` lives on disk (a bare repository).
    pub fn repo_dir(&self, owner: &str, repo: &str) -> PathBuf {
        self.root.path().join(owner).join(format!("{repo}.git"))
    }

    /// A bare repository with one commit (a README) on `main`, open to pushes.
    pub fn create_repo(&self, owner: &str, repo: &str) {
        let bare = self.repo_dir(owner, repo);
        fs::create_dir_all(&bare).expect("repository folder");
        run(git_command(&bare).args(["init", "--quiet", "--bare", "--initial-branch=main"]));
        // http-backend refuses pushes unless told (or REMOTE_USER is set); say so explicitly.
        run(git_command(&bare).args(["config", "http.receivepack", "true"]));
        let seed = tempdir("tk-git-seed");
        let work = seed.path();
        run(git_command(work).args(["init", "--quiet", "--initial-branch=main"]));
        fs::write(work.join("README.md"), format!("# {owner}/{repo}\n")).expect("README");
        run(git_command(work).args(["add", "README.md"]));
        run(git_command(work).args(["commit", "--quiet", "-m", "Initial commit"]));
        run(git_command(work)
            .args(["push", "--quiet"])
            .arg(&bare)
            .arg("main"));
    }

    /// Commit `files` (path, contents) on top of `owner/repo`'s `main`, straight into the
    /// repository on disk.
    pub fn add_files(&self, owner: &str, repo: &str, files: &[(&str, &str)]) {
        let bare = self.repo_dir(owner, repo);
        let seed = tempdir("tk-git-files");
        let work = seed.path();
        run(git_command(work)
            .arg("clone")
            .arg("--quiet")
            .arg(&bare)
            .arg("."));
        for (path, contents) in files {
            let path = work.join(path);
            fs::create_dir_all(path.parent().expect("a folder")).expect("folders");
            fs::write(&path, contents).expect("file");
        }
        run(git_command(work).args(["add", "."]));
        run(git_command(work).args(["commit", "--quiet", "-m", "Add files"]));
        run(git_command(work).args(["push", "--quiet", "origin", "main"]));
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Seen> {
        lock(&self.seen).clone()
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// A hermetic `git` run in `dir`: no system or global config, no prompts, a fixed identity.
/// Callers add arguments and environment.
pub fn git_command(dir: &Path) -> Command {
    let home = std::env::temp_dir().join("token-keeper-git-home");
    let _ = fs::create_dir_all(&home);
    let mut command = Command::new("git");
    command
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .args(["-c", "user.name=Token Keeper Test"])
        .args(["-c", "user.email=token-keeper-test@example.invalid"]);
    command
}

/// `git args...` in `dir`, hermetic (see [`git_command`]).
pub fn git(dir: &Path, args: &[&str]) -> Output {
    git_command(dir).args(args).output().expect("run git")
}

/// `sha256:` and the first 12 hex digits of the SHA-256 of `token`, as the action prints it.
pub fn fingerprint(token: &str) -> String {
    let hash = digest::digest(&digest::SHA256, token.as_bytes());
    let hex: String = hash.as_ref()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

fn tempdir(prefix: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("tempdir")
}

/// Run a setup command (no secrets in it) and insist that it succeeds.
fn run(command: &mut Command) {
    let output = command.output().expect("run git");
    crate::assert_success(&format!("{command:?}"), &output);
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A request line and headers.
struct Head {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// How the body is framed.
    fn body(&self) -> io::Result<Body> {
        if self
            .header("transfer-encoding")
            .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"))
        {
            return Ok(Body::Chunked);
        }
        match self.header("content-length") {
            None => Ok(Body::Length(0)),
            Some(n) => n
                .trim()
                .parse()
                .map(Body::Length)
                .map_err(|_| invalid("bad Content-Length")),
        }
    }

    /// `(user, password)` from `Authorization: Basic ...`.
    fn basic(&self) -> Option<(String, String)> {
        let value = self.header("authorization")?;
        let (scheme, encoded) = value.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
        let (user, password) = decoded.split_once(':')?;
        Some((user.to_owned(), password.to_owned()))
    }
}

#[derive(Clone, Copy)]
enum Body {
    Length(u64),
    Chunked,
}

/// `/<owner>/<repo>[.git]/<rest>`.
struct Target {
    owner: String,
    repo: String,
    rest: String,
}

impl Target {
    fn parse(path: &str) -> Option<Self> {
        let (owner, after) = path.strip_prefix('/')?.split_once('/')?;
        let (repo, rest) = after.split_once('/')?;
        let repo = repo.strip_suffix(".git").unwrap_or(repo);
        // No way out of the project root, and no empty names.
        let clean = path[1..]
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..");
        (clean && !repo.is_empty()).then(|| Self {
            owner: owner.to_owned(),
            repo: repo.to_owned(),
            rest: format!("/{rest}"),
        })
    }

    /// The same target with the owner and repository spelled as on disk, if they exist.
    fn on_disk(self, root: &Path) -> Option<Self> {
        let find = |dir: &Path, name: &str| -> Option<String> {
            fs::read_dir(dir).ok()?.flatten().find_map(|e| {
                let found = e.file_name().into_string().ok()?;
                found.eq_ignore_ascii_case(name).then_some(found)
            })
        };
        let owner = find(root, &self.owner)?;
        let repo = find(&root.join(&owner), &format!("{}.git", self.repo))?;
        let repo = repo.strip_suffix(".git")?.to_owned();
        Some(Self {
            owner,
            repo,
            rest: self.rest,
        })
    }

    fn path_info(&self) -> String {
        format!("/{}/{}.git{}", self.owner, self.repo, self.rest)
    }
}

fn serve(stream: TcpStream, shared: &Shared) -> io::Result<()> {
    // A client that stalls must not pin a thread forever.
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut out = stream.try_clone()?;
    let peer = stream.peer_addr()?;
    let mut reader = BufReader::new(stream);
    let head = match read_head(&mut reader) {
        Ok(Some(head)) => head,
        Ok(None) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            return refuse(reader, out, 400, "", "bad request\n");
        }
        Err(e) => return Err(e),
    };
    let credentials = head.basic();
    let record = |status: u16| {
        lock(&shared.seen).push(Seen {
            method: head.method.clone(),
            path: head.path.clone(),
            query: head.query.clone(),
            status,
            token: credentials.as_ref().map(|(_, p)| fingerprint(p)),
            chunked: matches!(head.body(), Ok(Body::Chunked)),
            gzipped: head
                .header("content-encoding")
                .is_some_and(|e| e.contains("gzip")),
        });
    };
    let Ok(body) = head.body() else {
        record(400);
        return refuse(reader, out, 400, "", "bad request body framing\n");
    };
    let Some(target) = Target::parse(&head.path) else {
        record(404);
        return refuse(reader, out, 404, "", "not a repository path\n");
    };
    let authorized = credentials.as_ref().is_some_and(|(_, token)| {
        lock(&shared.world).authorizes(token, &target.owner, &target.repo)
    });
    if !authorized {
        record(401);
        let challenge = format!("WWW-Authenticate: Basic realm=\"{REALM}\"\r\n");
        return refuse(reader, out, 401, &challenge, "authentication required\n");
    }
    // Names are case-insensitive, as on GitHub: use the spelling on disk.
    let Some(target) = target.on_disk(&shared.root) else {
        record(404);
        return refuse(reader, out, 404, "", "repository not found\n");
    };
    let user = credentials
        .as_ref()
        .map(|(user, _)| user.as_str())
        .unwrap_or_default();
    let mut cgi = Command::new("git");
    cgi.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &shared.home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_PROJECT_ROOT", &shared.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", target.path_info())
        .env("REQUEST_METHOD", &head.method)
        .env("QUERY_STRING", &head.query)
        .env("REMOTE_USER", user)
        .env("REMOTE_ADDR", peer.ip().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    // Unset rather than empty: http-backend tests these for presence.
    for (header, var) in [
        ("content-type", "CONTENT_TYPE"),
        // git gzips large fetch negotiations; http-backend inflates them when told.
        ("content-encoding", "HTTP_CONTENT_ENCODING"),
        // Without it http-backend speaks protocol v0 even to a v2 client.
        ("git-protocol", "HTTP_GIT_PROTOCOL"),
    ] {
        if let Some(value) = head.header(header) {
            cgi.env(var, value);
        }
    }
    // A chunked body has no length: http-backend then reads to EOF.
    if let Body::Length(n) = body {
        cgi.env("CONTENT_LENGTH", n.to_string());
    }
    if head
        .header("expect")
        .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
    {
        out.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let mut child = match cgi.spawn() {
        Ok(child) => child,
        Err(_) => {
            record(500);
            return refuse(reader, out, 500, "", "could not start git http-backend\n");
        }
    };
    // Feed the body from its own thread: the CGI may answer while it still reads.
    let stdin = child.stdin.take();
    let feeder = thread::spawn(move || -> io::Result<()> {
        let Some(mut stdin) = stdin else {
            return Ok(());
        };
        copy_body(&mut reader, body, &mut stdin)
    });
    let relayed = relay(&mut child, &mut out, record);
    if relayed.is_err() {
        let _ = child.kill();
    }
    let _ = child.wait();
    // Also unblocks the feeder if the client still holds back part of its body.
    let _ = out.shutdown(Shutdown::Both);
    let _ = feeder.join();
    relayed
}

/// Read the CGI's headers, answer with them, then stream the rest of its output.
fn relay(child: &mut Child, out: &mut TcpStream, record: impl Fn(u16)) -> io::Result<()> {
    let stdout = child.stdout.take().ok_or_else(|| invalid("no stdout"))?;
    let mut stdout = BufReader::new(stdout);
    let mut status = 200;
    let mut reason = String::from("OK");
    let mut headers = String::new();
    loop {
        let line = read_line(&mut stdout)?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid("bad CGI header"))?;
        // The CGI's `Status:` becomes our status line; it sends none for 200.
        if name.eq_ignore_ascii_case("status") {
            let value = value.trim();
            let (code, text) = value.split_once(' ').unwrap_or((value, ""));
            status = code.parse().map_err(|_| invalid("bad CGI status"))?;
            reason = text.to_owned();
        } else {
            headers.push_str(&format!("{name}:{value}\r\n"));
        }
    }
    record(status);
    write!(
        out,
        "HTTP/1.1 {status} {reason}\r\n{headers}Connection: close\r\n\r\n"
    )?;
    // No Content-Length: the body ends when we close the connection.
    io::copy(&mut stdout, out)?;
    out.flush()
}

/// Answer without running the CGI, then close gently: read what the client still sends (up to
/// a limit), as closing a socket with unread data sends a reset that can destroy our answer
/// before the client reads it.
fn refuse(
    reader: BufReader<TcpStream>,
    mut out: TcpStream,
    status: u16,
    headers: &str,
    text: &str,
) -> io::Result<()> {
    let reason = match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        _ => "Internal Server Error",
    };
    write!(
        out,
        "HTTP/1.1 {status} {reason}\r\n{headers}Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    )?;
    out.flush()?;
    out.shutdown(Shutdown::Write)?;
    reader
        .get_ref()
        .set_read_timeout(Some(Duration::from_secs(1)))?;
    let _ = io::copy(&mut reader.take(MAX_DRAIN), &mut io::sink());
    Ok(())
}

/// The request line and headers; `None` if the client closed without sending anything.
fn read_head(reader: &mut impl BufRead) -> io::Result<Option<Head>> {
    if reader.fill_buf()?.is_empty() {
        return Ok(None);
    }
    let request_line = read_line(reader)?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("bad request line"));
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() || !target.starts_with('/') {
        return Err(invalid("bad request line"));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers = Vec::new();
    loop {
        let line = read_line(reader)?;
        if line.is_empty() {
            break;
        }
        if headers.len() == MAX_HEADERS {
            return Err(invalid("too many headers"));
        }
        let (name, value) = line.split_once(':').ok_or_else(|| invalid("bad header"))?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    Ok(Some(Head {
        method: method.to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        headers,
    }))
}

/// Copy a request body of the given framing to `to`, de-chunking if need be.
fn copy_body(from: &mut impl BufRead, body: Body, to: &mut impl Write) -> io::Result<()> {
    match body {
        Body::Length(n) => {
            if io::copy(&mut from.by_ref().take(n), to)? != n {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        Body::Chunked => loop {
            let line = read_line(from)?;
            let size = line.split(';').next().unwrap_or_default().trim();
            let size = u64::from_str_radix(size, 16).map_err(|_| invalid("bad chunk size"))?;
            if size == 0 {
                // Trailers, if any, up to the blank line.
                while !read_line(from)?.is_empty() {}
                break;
            }
            if io::copy(&mut from.by_ref().take(size), to)? != size {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            if !read_line(from)?.is_empty() {
                return Err(invalid("chunk longer than its size"));
            }
        },
    }
    to.flush()
}

/// One line without its `\n` or `\r\n`, at most `MAX_LINE` bytes.
fn read_line(reader: &mut impl BufRead) -> io::Result<String> {
    let mut line = Vec::new();
    reader
        .by_ref()
        .take(MAX_LINE)
        .read_until(b'\n', &mut line)?;
    if line.pop() != Some(b'\n') {
        return Err(if line.is_empty() {
            io::ErrorKind::UnexpectedEof.into()
        } else {
            invalid("line too long or unterminated")
        });
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| invalid("not UTF-8"))
}

fn invalid(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_owned())
}
