//! `exec --proxy`: a child whose HTTP clients reach GitHub through a proxy of ours, which puts a
//! live token on every request in place of the one the child read when it started.
//!
//! Most long-running consumers of a token (MCP servers, agents, Terraform, Renovate, octokit
//! scripts) read it once and fail an hour later; all of them honour the proxy variables. So the
//! child gets the variables that route each kind of client here and make it trust the run's
//! authority (`route`), and the current real token in its token variables, so a tool that checks
//! a token's shape accepts it. The proxy listens on loopback for this run alone, behind a secret
//! of its own; the authority's key never leaves the process. A thread of ours asks the keeper for
//! a fresh token when the policy says so, and every token of the store stays ours to replace.

mod authority;
pub(crate) mod job;
mod onward;
mod route;
mod server;
mod swap;

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, mpsc};

use anyhow::{Context, Result, anyhow};
use ring::rand::{SecureRandom, SystemRandom};

use self::authority::Authority;
use super::{Asker, ExecFailure, serve};
use crate::clock::{LocalTime, unix_now};
use crate::github::client::{self, HttpEnv, our_proxy_url};
use crate::github::hosts;
use crate::keeper::store::{PROXY_PREFIX, State};
use crate::keeper::{self, Keeper, policy};
use crate::private::{Owner, create_private_dir, write_atomic};
use crate::report::Reporter;
use crate::secret::Secret;
use crate::{messages, process};

pub(crate) use self::job::Format;
pub(super) use self::job::{serve as serve_job, start as start_job};

/// What every connection of the proxy reads.
pub(super) struct Shared {
    secret: Secret,
    /// The GitHub hosts whose requests get the live token.
    hosts: Vec<String>,
    authority: Authority,
    /// How we check the GitHub hosts' certificates: as the keeper's own client does.
    upstream: Arc<rustls::ClientConfig>,
    http_env: HttpEnv,
    /// The user's own proxies, for what we send on.
    onwards: onward::Onwards,
    tokens: RwLock<Tokens>,
    /// To the keeper's thread, until the run ends.
    asks: Mutex<Option<mpsc::Sender<Ask>>>,
}

struct Tokens {
    live: Secret,
    /// When the policy would refresh the live token.
    due: LocalTime,
    /// Every token of the store: the live one, and each that came before it.
    ours: HashSet<String>,
}

/// A request's ask for a token the policy calls fresh, answered by the keeper's thread.
type Ask = tokio::sync::oneshot::Sender<()>;

impl Shared {
    fn serves(&self, host: &str) -> bool {
        self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
    }

    fn tokens(&self) -> RwLockReadGuard<'_, Tokens> {
        self.tokens.read().unwrap_or_else(|held| held.into_inner())
    }

    fn is_ours(&self, token: &str) -> bool {
        self.tokens().ours.contains(token)
    }

    /// The live token; when the policy would refresh it, the keeper's thread is asked first
    /// (it re-mints by the keeper's rules, single-flight with git's helper and the tools).
    async fn live(&self) -> Secret {
        if unix_now() >= self.tokens().due {
            let (ask, answered) = tokio::sync::oneshot::channel();
            let asks = self.asks.lock().ok().and_then(|asks| asks.clone());
            if asks.is_some_and(|asks| asks.send(ask).is_ok()) {
                let _ = answered.await;
            }
        }
        self.tokens().live.clone()
    }

    /// No more asks: the keeper's thread ends.
    fn close(&self) {
        if let Ok(mut asks) = self.asks.lock() {
            asks.take();
        }
    }

    fn renew(&self, token: &Secret, due: LocalTime) {
        let mut tokens = self.tokens.write().unwrap_or_else(|held| held.into_inner());
        tokens.ours.insert(token.expose().to_owned());
        tokens.live = token.clone();
        tokens.due = due;
    }
}

/// Run `child` with its clients routed through a proxy that keeps `state`'s token live for them,
/// and the token in its token variables and each of `token_variables`; its exit status becomes
/// ours.
pub(super) fn run(
    keeper: &Keeper,
    state: State,
    mut child: Command,
    token_variables: &[String],
    asker: &Asker,
) -> Result<ExitCode, ExecFailure> {
    let ran = with_proxy(keeper, state, token_variables, asker, |reach| {
        for (name, value) in route::variables(&reach.route(), asker.env) {
            match value {
                Some(value) => child.env(name, value),
                None => child.env_remove(name),
            };
        }
        let mut running = match process::spawn_forwarding(&mut child) {
            Ok(running) => running,
            Err(cannot) => return Ok(Err(cannot)),
        };
        let status = running.wait().context("cannot wait for the command")?;
        Ok(Ok(process::exit_code(status)))
    })?;
    Ok(ran?)
}

/// What reaches a running proxy, and what a client routed through it is given.
pub(super) struct Reach {
    /// `http://token-keeper:SECRET@127.0.0.1:PORT`.
    pub(super) url: String,
    pub(super) port: u16,
    /// What a client must present, the password in `url`.
    pub(super) secret: Secret,
    pub(super) hosts: Vec<String>,
    /// The system's roots, the user's CAs and the authority, for variables that replace roots.
    pub(super) bundle: PathBuf,
    /// The authority alone.
    pub(super) authority: PathBuf,
    pub(super) token: Secret,
    /// The token variables beyond `GH_TOKEN` and `GITHUB_TOKEN`.
    pub(super) token_variables: Vec<String>,
}

impl Reach {
    pub(super) fn route(&self) -> route::Route<'_> {
        route::Route {
            proxy_url: &self.url,
            hosts: &self.hosts,
            bundle: &self.bundle,
            authority: &self.authority,
            token: self.token.expose(),
            token_variables: &self.token_variables,
        }
    }
}

/// A proxy for `state`'s store, serving while `body` runs with what reaches it; its trust
/// files in the store are gone when it ends.
fn with_proxy<T>(
    keeper: &Keeper,
    state: State,
    token_variables: &[String],
    asker: &Asker,
    body: impl FnOnce(&Reach) -> Result<T>,
) -> Result<T> {
    for name in token_variables {
        route::check_variable_name(name).map_err(|why| anyhow!("`--token-env`: {why}"))?;
    }
    let config = &state.config;
    let mut token_variables = token_variables.to_vec();
    if config.is_enterprise_server() {
        token_variables
            .extend(["GH_ENTERPRISE_TOKEN", "GITHUB_ENTERPRISE_TOKEN"].map(str::to_owned));
    }
    // The authority vouches for names alone: a server known by its address is not served.
    let mut hosts = hosts::served(&config.api.url, &config.git_server);
    hosts.retain(|host| host.parse::<IpAddr>().is_err());
    let store_ca = config.api.ca_certificates.clone();
    let http_env = HttpEnv::from_env(asker.env)?;
    let due = policy::refresh_at(&state.token.lifetime, keeper::refresh_after(&state));
    let served = serve(keeper, state, asker)?;
    let roots = client::trusted_roots(store_ca.as_deref())?;
    let mut upstream = client::tls_config(roots)?;
    upstream.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut ours: HashSet<String> = keeper
        .dir()
        .ledger()?
        .entries
        .iter()
        .map(|entry| entry.token.expose().to_owned())
        .collect();
    ours.insert(served.token.expose().to_owned());
    let (asks, asked) = mpsc::channel();
    let shared = Arc::new(Shared {
        secret: random_secret()?,
        authority: Authority::new(&hosts, unix_now())?,
        hosts,
        upstream: Arc::new(upstream),
        http_env,
        onwards: onward::Onwards::from_env(asker.env).map_err(|why| anyhow!("{why}"))?,
        tokens: RwLock::new(Tokens {
            live: served.token,
            due,
            ours,
        }),
        asks: Mutex::new(Some(asks)),
    });
    let folder = keeper
        .dir()
        .path()
        .join(format!("{PROXY_PREFIX}{}", std::process::id()));
    create_private_dir(&folder, keeper.dir().owner())?;
    let result = std::thread::scope(|scope| {
        let supplier = shared.clone();
        scope.spawn(move || supply(keeper, &supplier, asked, asker.reporter));
        let result = serve_while(
            keeper,
            &shared,
            &folder,
            store_ca,
            token_variables,
            asker,
            body,
        );
        shared.close();
        result
    });
    let _ = std::fs::remove_dir_all(&folder);
    result
}

/// Write the trust files to `folder`, start the proxy, and run `body` while it serves.
fn serve_while<T>(
    keeper: &Keeper,
    shared: &Arc<Shared>,
    folder: &Path,
    store_ca: Option<String>,
    token_variables: Vec<String>,
    asker: &Asker,
    body: impl FnOnce(&Reach) -> Result<T>,
) -> Result<T> {
    let listener =
        std::net::TcpListener::bind(("127.0.0.1", 0)).context("cannot start the proxy")?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    let owner = keeper.dir().owner();
    let ca_pem = shared.authority.ca_pem();
    let authority = folder.join("authority.pem");
    write_file(&authority, owner, &ca_pem)?;
    let users: Vec<String> = route::users_bundles(asker.env)
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .chain(store_ca)
        .collect();
    let bundle = folder.join("bundle.pem");
    write_file(
        &bundle,
        owner,
        &route::bundle(&route::system_roots_pem(), &users, &ca_pem),
    )?;
    let reach = Reach {
        url: our_proxy_url(shared.secret.expose(), port),
        port,
        secret: shared.secret.clone(),
        hosts: shared.hosts.clone(),
        bundle,
        authority,
        token: shared.tokens().live.clone(),
        token_variables,
    };
    let proxy = start(listener, shared.clone())?;
    let result = body(&reach);
    drop(proxy);
    result
}

fn write_file(path: &Path, owner: Owner, text: &str) -> Result<()> {
    write_atomic(path, 0o600, owner, |file| {
        std::io::Write::write_all(file, text.as_bytes())
    })?;
    Ok(())
}

/// Answer the proxy's asks until they stop coming: the keeper's token, re-minted as its policy
/// says, becomes the live one. One ask at a time; those that waited meanwhile find it fresh.
fn supply(keeper: &Keeper, shared: &Shared, asks: mpsc::Receiver<Ask>, reporter: &dyn Reporter) {
    for ask in asks {
        if unix_now() < shared.tokens().due {
            let _ = ask.send(());
            continue;
        }
        let renewed = keeper
            .state()
            .map_err(anyhow::Error::from)
            .and_then(|state| keeper.serve(state, unix_now()))
            .and_then(|served| Ok((served, keeper.state()?)));
        match renewed {
            Ok((served, state)) => {
                if let Some(warning) = &served.warning {
                    reporter.warn(warning);
                }
                let due = policy::refresh_at(&state.token.lifetime, keeper::refresh_after(&state));
                shared.renew(&served.token, due);
            }
            Err(err) => reporter.warn(&format!(
                "cannot keep the proxy's token fresh: {}",
                messages::describe(&err)
            )),
        }
        let _ = ask.send(());
    }
}

/// The proxy, serving on a thread of its own until dropped.
struct Running {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Serve `listener` on a thread and runtime of its own. One thread is plenty: the work is
/// waiting on the network.
fn start(listener: std::net::TcpListener, shared: Arc<Shared>) -> Result<Running> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the proxy's runtime")?;
    let listener = {
        let _entered = runtime.enter();
        tokio::net::TcpListener::from_std(listener).context("cannot start the proxy")?
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("proxy".into())
        .spawn(move || {
            runtime.block_on(async {
                tokio::select! {
                    () = server::serve(listener, shared) => {}
                    _ = stopped => {}
                }
            });
            // Nothing is waited for, not even a DNS lookup stuck in the system's resolver.
            runtime.shutdown_background();
        })
        .context("cannot start the proxy's thread")?;
    Ok(Running {
        stop: Some(stop),
        thread: Some(thread),
    })
}

/// A certificate, DER, as a PEM block: base64 in lines of 64, as every bundle reader takes it.
pub(super) fn certificate_pem(der: &[u8]) -> String {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in encoded.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// The run's secret: 32 random hex digits, masked as it is made.
fn random_secret() -> Result<Secret> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow!("no randomness for the proxy's secret"))?;
    Ok(Secret::new(
        bytes.iter().map(|b| format!("{b:02x}")).collect(),
    ))
}
