//! The token store shared by every process of a job: state on disk, locks, the refresh policy.
//!
//! `Keeper::serve` is the hot path of every git command: given the state file just read, it asks
//! the policy and answers, with no lock, no HTTP client and no async runtime. Only a re-mint
//! takes the lock, re-reads the state (another process may have re-minted meanwhile), and talks
//! to GitHub. Time comes in as `now`, and the HTTP bounds as `Knobs`, from the caller.

pub(crate) mod locate;
pub(crate) mod lock;
pub(crate) mod policy;
pub(crate) mod state;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use self::lock::{Guard, LockError};
use self::policy::Decision;
use self::state::{CachedToken, ExchangeConfig, Failure, LedgerEntry, MintConfig, State, StateDir};
use crate::github::apps::{self, App};
use crate::github::client::{self, Knobs};
use crate::github::exchange::{self, Exchange, IdentityRequest};
use crate::github::{GitHub, Installation, MintedToken, PrivateKey, TokenRequest};
use crate::messages;
use crate::secret::Secret;

/// Git is waiting: a re-mint gives up after this.
pub(crate) const REMINT_DEADLINE: Duration = Duration::from_secs(20);
/// A whole call, lock wait and re-mint included, ends within this.
const CALL_BOUND: Duration = Duration::from_secs(28);
const LOCK_WAIT: Duration = Duration::from_secs(25);
/// After a failed re-mint, callers with a valid cached token leave GitHub alone this long.
const FAILURE_QUIET: i64 = 30;
/// How long revoking a token that could not be recorded may take.
const UNRECORDED_REVOKE: Duration = Duration::from_secs(5);

/// A token to hand out.
#[derive(Debug)]
pub(crate) struct Served {
    pub(crate) token: Secret,
    /// Expiry in our clock.
    pub(crate) expires_at: i64,
    /// Set when the token is served because a re-mint failed.
    pub(crate) warning: Option<String>,
}

/// What the process that asks brings to a re-mint: its HTTP bounds and, for a keyless store,
/// its step's means to ask for the job's identity.
#[derive(Debug, Clone, Default)]
pub(crate) struct Caller {
    pub(crate) knobs: Knobs,
    pub(crate) identity: Option<IdentityRequest>,
}

impl Caller {
    /// From the process environment, read through `get`.
    pub(crate) fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        Ok(Self {
            knobs: Knobs::from_env(&get)?,
            identity: IdentityRequest::from_env(&get),
        })
    }
}

/// One step's token store.
pub(crate) struct Keeper {
    dir: StateDir,
    caller: Caller,
    /// Called once when a re-mint has to wait for another process's.
    on_wait: fn(),
}

impl Keeper {
    /// The store in `path`, for re-mints on behalf of `caller`.
    pub(crate) fn open(path: &Path, caller: Caller) -> Result<Self> {
        match StateDir::open(path) {
            Ok(dir) => Ok(Self {
                dir,
                caller,
                on_wait: || tracing::debug!("waiting for another re-mint"),
            }),
            Err(err) if err.is_not_found() => Err(no_state(path)),
            Err(err) => Err(err.into()),
        }
    }

    /// Tell a person when a re-mint waits for another process's, as `notice` does.
    pub(crate) fn announcing_waits(mut self, notice: fn()) -> Self {
        self.on_wait = notice;
        self
    }

    /// End of the job: no re-mint may start (the key goes first), none may be half done (the
    /// lock, for at most `lock_wait`), then `revoke` gets every token recorded and the directory
    /// goes, whatever the ledger holds.
    pub(crate) fn retire(
        dir: StateDir,
        lock_wait: Duration,
        revoke: impl FnOnce(Vec<LedgerEntry>),
    ) -> Result<()> {
        let key = dir.path().join(state::KEY);
        if let Err(err) = std::fs::remove_file(&key)
            && err.kind() != std::io::ErrorKind::NotFound
        {
            tracing::debug!("cannot remove `{}` yet: {err}", key.display());
        }
        // A stuck holder must not keep the tokens alive: revoke without the lock then.
        let guard = Guard::acquire(&dir, lock_wait, || {}).ok();
        let ledger = dir.ledger();
        if let Ok(entries) = &ledger {
            revoke(entries.clone());
        }
        let removed = dir.remove();
        drop(guard);
        ledger?;
        removed?;
        Ok(())
    }

    /// Store the main step's token: the ledger first; then, when later steps re-mint (`config`),
    /// the App's key if there is one, and the cache.
    pub(crate) fn start(
        dir: &StateDir,
        token: CachedToken,
        config: Option<MintConfig>,
        key: Option<&PrivateKey>,
    ) -> Result<()> {
        let guard = Guard::acquire(dir, LOCK_WAIT, || {})?;
        guard.record(&token.ledger_entry())?;
        if let Some(config) = config {
            if let Some(key) = key {
                dir.write_atomic(state::KEY, key.to_pem().as_bytes())?;
            }
            guard.write_state(&State::new(config, token))?;
        }
        Ok(())
    }

    pub(crate) fn dir(&self) -> &StateDir {
        &self.dir
    }

    pub(crate) fn state(&self) -> Result<State> {
        self.dir.state()?.ok_or_else(|| no_state(self.dir.path()))
    }

    /// A token that the policy calls fresh at `now` (our clock), from the state the caller has
    /// just read, re-minting if needed.
    pub(crate) fn serve(&self, state: State, now: i64) -> Result<Served> {
        match policy::decide(
            now,
            &state.token.lifetime,
            state.erased,
            refresh_after(&state),
        ) {
            Decision::Fresh => Ok(served(&state, None)),
            Decision::Refresh(reason) => {
                tracing::debug!(?reason, "re-minting");
                self.refresh(now)
            }
        }
    }

    /// Git says `password` was refused: mark the state's token stale if the policy agrees.
    pub(crate) fn erase(&self, state: &State, password: &str, now: i64) -> Result<()> {
        if state.token.token.expose() != password
            || !policy::erase_counts(now, &state.token.lifetime, state.last_erase_mint)
        {
            return Ok(());
        }
        let guard = Guard::acquire(&self.dir, LOCK_WAIT, self.on_wait)?;
        let mut state = self.state()?;
        if state.token.token.expose() == password {
            state.erased = true;
            guard.write_state(&state)?;
        }
        Ok(())
    }

    /// Re-mint under the lock, unless another process did, or just failed to.
    fn refresh(&self, now: i64) -> Result<Served> {
        let started = Instant::now();
        let guard = match Guard::acquire(&self.dir, LOCK_WAIT, self.on_wait) {
            Ok(guard) => guard,
            // Stuck behind others' re-mints: the cached token, while it lasts.
            Err(LockError::Timeout(..)) => {
                return fallback(&self.state()?, now, "another process is still re-minting");
            }
            Err(err) => return Err(err.into()),
        };
        let mut state = self.state()?;
        match plan(now, &state) {
            Plan::Serve => return Ok(served(&state, None)),
            Plan::Fallback(message) => return fallback(&state, now, &message),
            Plan::Remint => {}
        }
        let budget = CALL_BOUND
            .saturating_sub(started.elapsed())
            .min(REMINT_DEADLINE);
        let (minted, clock_offset) = match self.remint(&state, budget) {
            Ok(minted) => minted,
            Err(err) => {
                // Stored for other processes to show: scrubbed of our secrets here, which they
                // do not hold.
                let message = messages::describe(&err);
                state.failure = Some(Failure {
                    at: now,
                    message: message.clone(),
                });
                // Best effort: without the record, the next caller just tries again.
                if let Err(err) = guard.write_state(&state) {
                    tracing::debug!("cannot record the failure: {err}");
                }
                return fallback(&state, now, &message);
            }
        };
        let previous = state.clone();
        state.renew(minted.token, minted.expires_at, clock_offset, now);
        if let Err(err) = guard.record(&state.token.ledger_entry()) {
            // A full disk: unrecorded, the post step could never revoke it, so it goes now and
            // the old token serves while it lasts.
            let mut why = format!("cannot save the new token: {err}");
            if let Err(revoke) = self.revoke_unrecorded(&state) {
                why.push_str(&format!(
                    "; nor revoke it, so it stays valid until it expires: {revoke:#}"
                ));
            }
            return fallback(&previous, now, &why);
        }
        match guard.write_state(&state) {
            Ok(()) => Ok(served(&state, None)),
            // Recorded, so the post step revokes it: hand it out all the same.
            Err(err) => Ok(served(
                &state,
                Some(format!(
                    "cannot save the new token as the cached one: {err}"
                )),
            )),
        }
    }

    /// Mint a new token for the stored installation, or exchange the job's identity for one;
    /// the new clock offset comes with it.
    fn remint(&self, state: &State, deadline: Duration) -> Result<(MintedToken, i64)> {
        let config = &state.config;
        // Keyless or not, every input is read before the clock starts.
        let source = match &config.exchange {
            Some(stored) => Source::Exchange(Box::new(self.exchange(stored)?)),
            None => Source::App(self.read_key()?),
        };
        let (gh, runtime) = self.connect(state, deadline)?;
        let started = Instant::now();
        let minted = runtime.block_on(async {
            let minted = match &source {
                Source::Exchange(means) => exchange::mint(&gh, &means.0, &means.1).await?,
                Source::App(key) => {
                    let app = App {
                        issuer: &config.issuer,
                        key,
                    };
                    let installation = Installation {
                        id: config.installation_id,
                        app_slug: config.app_slug.clone(),
                        account: config.account.clone(),
                    };
                    let request = TokenRequest {
                        repositories: config.repositories.clone(),
                        permissions: config.permissions.clone(),
                    };
                    apps::create_token(&gh, &app, &installation, &request).await?
                }
            };
            // GitHub can refuse a brand-new token briefly, and git would fail on it: wait for it,
            // within what is left of the budget. A check that fails says nothing about the token.
            let left = deadline.saturating_sub(started.elapsed());
            let check = apps::check_new(&gh, &minted.token, &config.app_slug);
            if let Ok(Err(err)) = tokio::time::timeout(left, check).await {
                tracing::debug!("the new token is not accepted yet: {err}");
            }
            Ok::<_, anyhow::Error>(minted)
        })?;
        Ok((minted, gh.clock().offset()))
    }

    /// The App's key, stored by the main step.
    fn read_key(&self) -> Result<PrivateKey> {
        let path = self.dir.path().join(state::KEY);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read the App's key `{}`", path.display()))?;
        Ok(PrivateKey::parse(&text)?)
    }

    /// A keyless re-mint's means: the identity of the step that asks, and the stored exchange.
    fn exchange(&self, stored: &ExchangeConfig) -> Result<(IdentityRequest, Exchange)> {
        let Some(identity) = &self.caller.identity else {
            bail!(
                "this step cannot ask for the job's identity: `ACTIONS_ID_TOKEN_REQUEST_URL` and `ACTIONS_ID_TOKEN_REQUEST_TOKEN` are not set here (a container step, or a tool that clears its environment); run it as an ordinary step, or pass the two variables on"
            );
        };
        let service = url::Url::parse(&stored.service)
            .with_context(|| format!("bad exchange URL `{}` in the state", stored.service))?;
        let wanted = Exchange {
            service,
            scope: stored.scope.clone(),
            identity: stored.identity.clone(),
        };
        Ok((identity.clone(), wanted))
    }

    /// Revoke a token that could not be recorded.
    fn revoke_unrecorded(&self, state: &State) -> Result<()> {
        let (gh, runtime) = self.connect(state, UNRECORDED_REVOKE)?;
        runtime.block_on(apps::revoke(&gh, &state.token.token))?;
        Ok(())
    }

    /// A client for the stored API, bounded by `deadline`.
    fn connect(&self, state: &State, deadline: Duration) -> Result<(GitHub, client::Runtime)> {
        let config = &state.config;
        let api = url::Url::parse(&config.api_url)
            .with_context(|| format!("bad API URL `{}` in the state", config.api_url))?;
        let connected = client::connect(
            api,
            deadline,
            config.ca_certificates.clone(),
            state.token.lifetime.clock_offset,
            &self.caller.knobs,
        )?;
        Ok(connected)
    }
}

/// Where a re-mint's token comes from.
enum Source {
    App(PrivateKey),
    Exchange(Box<(IdentityRequest, Exchange)>),
}

/// What a process that holds the lock does with the state it has just re-read.
#[derive(Debug, PartialEq, Eq)]
enum Plan {
    /// Another process re-minted meanwhile.
    Serve,
    /// A re-mint failed while we waited, or just now: GitHub gets a rest, git gets the cache.
    Fallback(String),
    Remint,
}

fn plan(now: i64, state: &State) -> Plan {
    if policy::decide(
        now,
        &state.token.lifetime,
        state.erased,
        refresh_after(state),
    ) == Decision::Fresh
    {
        return Plan::Serve;
    }
    match &state.failure {
        Some(failure)
            if failure.at >= now
                || (now - failure.at < FAILURE_QUIET && state.token.lifetime.is_valid(now)) =>
        {
            Plan::Fallback(failure.message.clone())
        }
        _ => Plan::Remint,
    }
}

fn no_state(path: &Path) -> anyhow::Error {
    anyhow!(
        "no token-keeper state in `{}`: the token-keeper step of this job did not run, or its post step already cleaned up",
        path.display()
    )
}

fn refresh_after(state: &State) -> Duration {
    Duration::from_secs(state.config.refresh_after)
}

fn served(state: &State, warning: Option<String>) -> Served {
    Served {
        token: state.token.token.clone(),
        expires_at: state.token.lifetime.local_expiry(),
        warning,
    }
}

/// After a failed re-mint: the cached token while GitHub still accepts it, else an error.
fn fallback(state: &State, now: i64, message: &str) -> Result<Served> {
    if state.token.lifetime.is_valid(now) {
        let left = state.token.lifetime.local_expiry() - now;
        Ok(served(
            state,
            Some(format!(
                "re-minting failed ({message}); serving the cached token, valid for {left} more seconds"
            )),
        ))
    } else {
        Err(anyhow!(
            "no valid token is left: re-minting failed: {message}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::policy::Lifetime;
    use super::*;

    fn state(minted_at: i64, failure: Option<i64>) -> State {
        let mut state = State::new(
            MintConfig {
                api_url: "http://127.0.0.1:1".into(),
                git_server: "https://github.com".into(),
                issuer: "1".into(),
                installation_id: 1,
                app_slug: "keeper".into(),
                account: "o".into(),
                repositories: vec![],
                permissions: Default::default(),
                refresh_after: 3000,
                ca_certificates: None,
                exchange: None,
            },
            CachedToken {
                token: Secret::new("t".into()),
                lifetime: Lifetime {
                    minted_at,
                    expires_at: minted_at + 3600,
                    clock_offset: 0,
                },
            },
        );
        state.failure = failure.map(|at| Failure {
            at,
            message: "GitHub is down".into(),
        });
        state
    }

    #[test]
    fn under_the_lock_a_fresh_state_is_served_and_a_stale_one_reminted() {
        assert_eq!(
            plan(1000, &state(900, None)),
            Plan::Serve,
            "another process re-minted"
        );
        assert_eq!(plan(4000, &state(900, None)), Plan::Remint);
        assert_eq!(
            plan(4000, &state(900, Some(3000))),
            Plan::Remint,
            "an old failure"
        );
    }

    #[test]
    fn a_recent_failure_gives_github_a_rest_while_the_cache_is_valid() {
        let failed = |at| plan(4000, &state(900, Some(at)));
        assert_eq!(failed(3990), Plan::Fallback("GitHub is down".into()));
        assert_eq!(
            failed(4000),
            Plan::Fallback("GitHub is down".into()),
            "while we waited"
        );
        // Expired by now: a recent failure is no reason not to try.
        assert_eq!(plan(4600, &state(900, Some(4590))), Plan::Remint);
    }

    #[test]
    fn fallback_serves_a_valid_token_and_refuses_an_expired_one() {
        let state = state(-3500, None);
        let ok = fallback(&state, 50, "GitHub is down").unwrap();
        assert!(ok.warning.unwrap().contains("valid for 50 more seconds"));
        let err = fallback(&state, 100, "GitHub is down").unwrap_err();
        assert_eq!(
            err.to_string(),
            "no valid token is left: re-minting failed: GitHub is down"
        );
    }
}
