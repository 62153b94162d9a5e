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
mod onward;
mod route;
mod server;
mod swap;

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, mpsc};

use anyhow::{Context, Result, anyhow};
use ring::rand::{SecureRandom, SystemRandom};
use url::Url;

use self::authority::Authority;
use super::{Asker, serve};
use crate::clock::unix_now;
use crate::github::client::{self, Knobs};
use crate::github::hosts;
use crate::keeper::state::State;
use crate::keeper::{self, Keeper, policy};
use crate::private::{Owner, create_private_dir, write_atomic};
use crate::report::Reporter;
use crate::secret::Secret;
use crate::{messages, process};

/// How the proxy's folders in the store start: its trust bundles, gone with the run (or with the
/// store, if we are killed).
const FOLDER_PREFIX: &str = "proxy-";
/// The user name in the proxy's URL; the password is the run's secret.
const PROXY_USER: &str = "token-keeper";

/// What every connection of the proxy reads.
pub(super) struct Shared {
    secret: Secret,
    /// The GitHub hosts whose requests get the live token.
    hosts: Vec<String>,
    authority: Authority,
    /// How we check the GitHub hosts' certificates: as the keeper's own client does.
    upstream: Arc<rustls::ClientConfig>,
    knobs: Knobs,
    /// The user's own proxies, for what we send on.
    onwards: onward::Onwards,
    tokens: RwLock<Tokens>,
    /// To the keeper's thread, until the run ends.
    asks: Mutex<Option<mpsc::Sender<Ask>>>,
}

struct Tokens {
    live: Secret,
    /// When the policy would refresh the live token (our clock).
    due: i64,
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

    fn renew(&self, token: &Secret, due: i64) {
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
) -> Result<ExitCode> {
    for name in token_variables {
        route::check_variable_name(name).map_err(|why| anyhow!("`--token-env`: {why}"))?;
    }
    let config = &state.config;
    let mut token_variables = token_variables.to_vec();
    if config.is_enterprise_server() {
        token_variables
            .extend(["GH_ENTERPRISE_TOKEN", "GITHUB_ENTERPRISE_TOKEN"].map(str::to_owned));
    }
    let api = Url::parse(&config.api.api_url).context("bad API URL in the store")?;
    let git = Url::parse(&config.git_server).context("bad git server in the store")?;
    // The authority vouches for names alone: a server known by its address is not served.
    let mut hosts = hosts::served(&api, &git);
    hosts.retain(|host| host.parse::<IpAddr>().is_err());
    let store_ca = config.api.ca_certificates.clone();
    let knobs = Knobs::from_env(asker.env)?;
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
    let shared = Shared {
        secret: random_secret()?,
        authority: Authority::new(&hosts, unix_now())?,
        hosts,
        upstream: Arc::new(upstream),
        knobs,
        onwards: onward::Onwards::from_env(asker.env).map_err(|why| anyhow!("{why}"))?,
        tokens: RwLock::new(Tokens {
            live: served.token,
            due,
            ours,
        }),
        asks: Mutex::new(Some(asks)),
    };
    let folder = keeper
        .dir()
        .path()
        .join(format!("{FOLDER_PREFIX}{}", std::process::id()));
    create_private_dir(&folder, keeper.dir().owner())?;
    let trust = Trust {
        folder: &folder,
        owner: keeper.dir().owner(),
        store_ca,
    };
    let result = std::thread::scope(|scope| {
        let shared = Arc::new(shared);
        let supplier = shared.clone();
        scope.spawn(move || supply(keeper, &supplier, asked, asker.reporter));
        let result = run_child(shared.clone(), &mut child, &token_variables, &trust, asker);
        shared.close();
        result
    });
    let _ = std::fs::remove_dir_all(&folder);
    result
}

/// Where the child's trust bundles go.
struct Trust<'a> {
    folder: &'a Path,
    owner: Owner,
    /// The store's own extra CA certificates, which the child keeps trusting.
    store_ca: Option<String>,
}

/// Start the proxy, then the child routed through it; the proxy ends when the child does.
fn run_child(
    shared: Arc<Shared>,
    child: &mut Command,
    token_variables: &[String],
    trust: &Trust,
    asker: &Asker,
) -> Result<ExitCode> {
    let listener =
        std::net::TcpListener::bind(("127.0.0.1", 0)).context("cannot start the proxy")?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    let proxy_url = format!(
        "http://{PROXY_USER}:{}@127.0.0.1:{port}",
        shared.secret.expose()
    );
    let ca_pem = shared.authority.ca_pem();
    let authority_file = trust.folder.join("authority.pem");
    write_file(&authority_file, trust.owner, &ca_pem)?;
    let users: Vec<String> = route::users_bundles(asker.env)
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .chain(trust.store_ca.clone())
        .collect();
    let bundle_file = trust.folder.join("bundle.pem");
    let bundle = route::bundle(&route::system_roots_pem(), &users, &ca_pem);
    write_file(&bundle_file, trust.owner, &bundle)?;
    let token = shared.tokens().live.clone();
    let routing = route::Route {
        proxy_url: &proxy_url,
        hosts: &shared.hosts,
        bundle: &bundle_file,
        authority: &authority_file,
        token: token.expose(),
        token_variables,
    };
    for (name, value) in route::variables(&routing, asker.env) {
        match value {
            Some(value) => child.env(name, value),
            None => child.env_remove(name),
        };
    }
    let proxy = start(listener, shared)?;
    let status = process::spawn_forwarding(child)?.wait();
    drop(proxy);
    Ok(process::exit_code(
        status.context("cannot wait for the command")?,
    ))
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
