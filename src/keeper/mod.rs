//! The token store shared by every process of a job: state on disk, locks, the refresh policy.
//!
//! `Keeper::serve` is the hot path of every git command: given the state file just read, it asks
//! the policy and answers, with no lock, no HTTP client and no async runtime. Only a re-mint
//! takes the lock, re-reads the state (another process may have re-minted meanwhile), and talks
//! to GitHub.

pub mod locate;
pub mod lock;
pub mod policy;
pub mod state;

use std::path::Path;
use std::time::{Duration, Instant};

use self::lock::{Guard, LockError};
use self::policy::Decision;
use self::state::{CachedToken, Failure, LedgerEntry, MintConfig, State, StateDir, StateError};
use crate::duration::parse_duration;
use crate::github::apps::{self, App};
use crate::github::client::{runtime, unix_now};
use crate::github::{
    GitHub, HttpOptions, Installation, MintedToken, PrivateKey, Secret, TokenRequest,
};

/// Git is waiting: a re-mint gives up after this.
pub const REMINT_DEADLINE: Duration = Duration::from_secs(20);
/// A whole call, lock wait and re-mint included, ends within this.
const CALL_BOUND: Duration = Duration::from_secs(28);
const LOCK_WAIT: Duration = Duration::from_secs(25);
/// After a failed re-mint, callers with a valid cached token leave GitHub alone this long.
const FAILURE_QUIET: i64 = 30;

#[derive(Debug, thiserror::Error)]
pub enum KeeperError {
    #[error(
        "no token-keeper state in `{0}`: the token-keeper step of this job did not run, or its post step already cleaned up"
    )]
    NoState(String),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("{0}")]
    NotFound(String),
    #[error("no valid token is left: re-minting failed: {0}")]
    NothingValid(String),
}

/// A token to hand out.
#[derive(Debug)]
pub struct Served {
    pub token: Secret,
    /// Expiry in our clock.
    pub expires_at: i64,
    /// Set when the token is served because a re-mint failed.
    pub warning: Option<String>,
}

/// One step's token store.
pub struct Keeper {
    dir: StateDir,
}

impl Keeper {
    pub fn open(path: &Path) -> Result<Self, KeeperError> {
        match StateDir::open(path) {
            Ok(dir) => Ok(Self { dir }),
            Err(err) if err.is_not_found() => Err(KeeperError::NoState(path.display().to_string())),
            Err(err) => Err(err.into()),
        }
    }

    /// End of the job: no re-mint may start (the key goes first), none may be half done (the
    /// lock), then `revoke` gets every token recorded and the directory goes.
    pub fn retire(
        dir: StateDir,
        lock_wait: Duration,
        revoke: impl FnOnce(Vec<LedgerEntry>),
    ) -> Result<(), KeeperError> {
        let key = dir.path().join(state::KEY);
        if let Err(err) = std::fs::remove_file(&key)
            && err.kind() != std::io::ErrorKind::NotFound
        {
            tracing::debug!("cannot remove `{}` yet: {err}", key.display());
        }
        // A stuck holder must not keep the tokens alive: revoke without the lock then.
        let guard = Guard::acquire(&dir, lock_wait, || {}).ok();
        // Whatever the ledger holds, the directory goes.
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

    /// Store the main step's token: the ledger first, then the key and the cache for re-mints.
    pub fn start(
        dir: &StateDir,
        config: MintConfig,
        token: CachedToken,
        key: Option<&PrivateKey>,
    ) -> Result<(), KeeperError> {
        let guard = Guard::acquire(dir, LOCK_WAIT, || {})?;
        guard.record(&token.ledger_entry())?;
        if let Some(key) = key {
            dir.write_atomic(state::KEY, key.to_pem().as_bytes())?;
            guard.write_state(&State::new(config, token))?;
        }
        Ok(())
    }

    pub fn dir(&self) -> &StateDir {
        &self.dir
    }

    pub fn state(&self) -> Result<State, KeeperError> {
        self.dir
            .state()?
            .ok_or_else(|| KeeperError::NoState(self.dir.path().display().to_string()))
    }

    /// A token that the policy calls fresh at `now` (our clock), from the state the caller has
    /// just read, re-minting if needed.
    pub fn serve(&self, state: State, now: i64) -> Result<Served, KeeperError> {
        match policy::decide(now, &state.facts(), refresh_after(&state)) {
            Decision::Fresh => Ok(served(&state, None)),
            Decision::Refresh(reason) => {
                tracing::debug!(?reason, "re-minting");
                self.refresh(now)
            }
        }
    }

    /// Git says `password` was refused: mark the state's token stale if the policy agrees.
    pub fn erase(&self, state: &State, password: &str, now: i64) -> Result<(), KeeperError> {
        if state.token.token.expose() != password
            || !policy::erase_counts(now, &state.facts(), state.last_erase_mint)
        {
            return Ok(());
        }
        let guard = Guard::acquire(&self.dir, LOCK_WAIT, || {})?;
        let mut state = self.state()?;
        if state.token.token.expose() == password {
            state.erased = true;
            guard.write_state(&state)?;
        }
        Ok(())
    }

    fn refresh(&self, waiting_since: i64) -> Result<Served, KeeperError> {
        let started = Instant::now();
        let guard = match Guard::acquire(&self.dir, LOCK_WAIT, || {
            tracing::debug!("waiting for another re-mint")
        }) {
            Ok(guard) => guard,
            // Stuck behind others' re-mints: the cached token, while it lasts.
            Err(LockError::Timeout(..)) => {
                return fallback(
                    &self.state()?,
                    unix_now(),
                    "another process is still re-minting",
                );
            }
            Err(err) => return Err(err.into()),
        };
        let now = unix_now();
        let mut state = self.state()?;
        if policy::decide(now, &state.facts(), refresh_after(&state)) == Decision::Fresh {
            return Ok(served(&state, None));
        }
        if let Some(failure) = &state.failure {
            // It failed while we waited, or just now: GitHub gets a rest, git gets the cache.
            let recent = now - failure.at < FAILURE_QUIET && state.facts().is_valid(now);
            if failure.at >= waiting_since || recent {
                return fallback(&state, now, &failure.message);
            }
        }
        let budget = CALL_BOUND
            .saturating_sub(started.elapsed())
            .min(REMINT_DEADLINE);
        let (minted, clock_offset) = match self.remint(&state, budget) {
            Ok(minted) => minted,
            Err(message) => {
                state.failure = Some(Failure {
                    at: unix_now(),
                    message: message.clone(),
                });
                // Best effort: without the record, the next caller just tries again.
                if let Err(err) = guard.write_state(&state) {
                    tracing::debug!("cannot record the failure: {err}");
                }
                return fallback(&state, now, &message);
            }
        };
        let token = CachedToken {
            token: minted.token,
            expires_at: minted.expires_at,
            minted_at: unix_now(),
            clock_offset,
        };
        let previous = state.clone();
        if state.erased {
            state.last_erase_mint = Some(now);
        }
        state.token = token;
        state.erased = false;
        state.failure = None;
        if let Err(err) = guard.record(&state.token.ledger_entry()) {
            // A full disk: unrecorded, the post step could never revoke it, so it goes now and
            // the old token serves while it lasts.
            let mut why = format!("cannot save the new token: {err}");
            if let Err(revoke) = revoke_unrecorded(&state) {
                why.push_str(&format!(
                    "; nor revoke it, so it stays valid until it expires: {revoke}"
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

    /// Mint a new token for the stored installation; the new clock offset comes with it.
    fn remint(&self, state: &State, deadline: Duration) -> Result<(MintedToken, i64), String> {
        let config = &state.config;
        let key_text = std::fs::read_to_string(self.dir.path().join(state::KEY)).map_err(|e| {
            format!(
                "cannot read the App's key in `{}`: {e}",
                self.dir.path().display()
            )
        })?;
        let key = PrivateKey::parse(&key_text).map_err(|e| e.to_string())?;
        let gh = client(state, deadline)?;
        let app = App {
            issuer: &config.issuer,
            key: &key,
        };
        let installation = Installation {
            id: config.installation_id,
            app_slug: String::new(),
            account: config.account.clone(),
        };
        let request = TokenRequest {
            repositories: config.repositories.clone(),
            permissions: config.permissions.clone(),
        };
        let started = Instant::now();
        let runtime = runtime().map_err(|e| e.to_string())?;
        let minted = runtime.block_on(async {
            let minted = apps::create_token(&gh, &app, &installation, &request)
                .await
                .map_err(|e| e.to_string())?;
            // GitHub can refuse a brand-new token briefly, and git would fail on it: wait for it,
            // within what is left of the budget. A check that fails says nothing about the token.
            // The check is a lookup every token may make, enterprise ones included.
            let left = deadline.saturating_sub(started.elapsed());
            let check = apps::bot_user(&gh, &minted.token, &config.app_slug);
            if let Ok(Err(err)) = tokio::time::timeout(left, check).await {
                tracing::debug!("the new token is not accepted yet: {err}");
            }
            Ok::<_, String>(minted)
        })?;
        Ok((minted, gh.clock().offset()))
    }
}

/// A client for the stored API, bounded by `deadline`.
fn client(state: &State, deadline: Duration) -> Result<GitHub, String> {
    let config = &state.config;
    let api =
        url::Url::parse(&config.api_url).map_err(|e| format!("bad API URL in the state: {e}"))?;
    let mut options = http_options(
        &|name| std::env::var(name).ok(),
        REMINT_DEADLINE,
        config.ca_certificates.clone(),
    )?;
    options.deadline = options.deadline.min(deadline);
    GitHub::new(api, options, state.token.clock_offset).map_err(|e| e.to_string())
}

/// How long revoking a token that could not be recorded may take.
const UNRECORDED_REVOKE: Duration = Duration::from_secs(5);

/// Revoke a token that could not be recorded.
fn revoke_unrecorded(state: &State) -> Result<(), String> {
    let gh = client(state, UNRECORDED_REVOKE)?;
    let runtime = runtime().map_err(|e| e.to_string())?;
    runtime
        .block_on(apps::revoke(&gh, &state.token.token))
        .map(drop)
        .map_err(|e| e.to_string())
}

fn refresh_after(state: &State) -> Duration {
    Duration::from_secs(state.config.refresh_after)
}

fn served(state: &State, warning: Option<String>) -> Served {
    Served {
        token: state.token.token.clone(),
        expires_at: state.facts().local_expiry(),
        warning,
    }
}

/// After a failed re-mint: the cached token while GitHub still accepts it, else an error.
fn fallback(state: &State, now: i64, message: &str) -> Result<Served, KeeperError> {
    if state.facts().is_valid(now) {
        let left = state.facts().local_expiry() - now;
        Ok(served(
            state,
            Some(format!(
                "re-minting failed ({message}); serving the cached token, valid for {left} more seconds"
            )),
        ))
    } else {
        Err(KeeperError::NothingValid(message.to_owned()))
    }
}

/// HTTP bounds; `TOKEN_KEEPER_*` variables shorten them (tests of hanging servers).
pub fn http_options(
    get: &dyn Fn(&str) -> Option<String>,
    deadline: Duration,
    extra_ca_pem: Option<String>,
) -> Result<HttpOptions, String> {
    let mut options = HttpOptions {
        deadline,
        extra_ca_pem,
        ..HttpOptions::default()
    };
    let knobs: [(&str, &mut Duration); 4] = [
        ("TOKEN_KEEPER_CONNECT_TIMEOUT", &mut options.connect_timeout),
        ("TOKEN_KEEPER_READ_TIMEOUT", &mut options.read_timeout),
        ("TOKEN_KEEPER_DEADLINE", &mut options.deadline),
        ("TOKEN_KEEPER_RETRY_BASE", &mut options.retry_base),
    ];
    for (name, slot) in knobs {
        if let Some(text) = get(name).filter(|v| !v.is_empty()) {
            *slot = parse_duration(&text)
                .map_err(|e| format!("`{name}`: {e}: use for example `5s` or `200ms`"))?;
        }
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knobs_shorten_the_bounds() {
        let get = |name: &str| (name == "TOKEN_KEEPER_DEADLINE").then(|| "3s".to_owned());
        assert_eq!(
            http_options(&get, REMINT_DEADLINE, None).unwrap().deadline,
            Duration::from_secs(3)
        );
        let bad = |name: &str| (name == "TOKEN_KEEPER_READ_TIMEOUT").then(|| "soon".to_owned());
        assert!(
            http_options(&bad, REMINT_DEADLINE, None)
                .unwrap_err()
                .contains("TOKEN_KEEPER_READ_TIMEOUT")
        );
    }

    #[test]
    fn fallback_serves_a_valid_token_and_refuses_an_expired_one() {
        let state = State::new(
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
            },
            CachedToken {
                token: Secret::new("t".into()),
                expires_at: 100,
                minted_at: 0,
                clock_offset: 0,
            },
        );
        let ok = fallback(&state, 50, "GitHub is down").unwrap();
        assert!(ok.warning.unwrap().contains("valid for 50 more seconds"));
        let err = fallback(&state, 100, "GitHub is down").unwrap_err();
        assert_eq!(
            err.to_string(),
            "no valid token is left: re-minting failed: GitHub is down"
        );
    }
}
