//! The core both front doors stand on: a job's token store, shared by every process of the job.
//! What it needs (its settings, which both doors build), how a job's keeper begins and ends
//! (`job`), where its tokens come from, the store on disk with its lock and how it is found
//! (`store`), the refresh policy; the job's first token and every re-mint.
//!
//! `Keeper::serve` is the hot path of every git command: given the state file just read, it asks
//! the policy and answers, with no lock, no HTTP client and no async runtime. Only a re-mint
//! takes the lock, re-reads the state (another process may have re-minted meanwhile), and talks
//! to GitHub. Time comes in as `now`, and the HTTP bounds as `HttpEnv`, from the caller.

pub(crate) mod job;
pub(crate) mod policy;
pub(crate) mod proxied;
pub(crate) mod settings;
pub(crate) mod source;
pub(crate) mod store;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};

use self::policy::Decision;
use self::source::{Minter, Origin, TokenSource};
use self::store::lock::{Guard, LockError};
use self::store::{CachedToken, Failure, Ledger, LedgerEntry, MintConfig, State, StateDir};
use crate::clock::{LocalTime, Offset, ServerTime};
use crate::env::Env;
use crate::github::apps::{self, BotUser, MintError, Revoked};
use crate::github::client::{self, ApiError, HttpEnv, Runtime};
use crate::github::exchange::{ExchangeError, IdentityRequest};
use crate::github::{GitHub, MintedToken, PrivateKey, Signer, Target, TokenRequest};
use crate::messages;
use crate::private;
use crate::report::Reporter;
use crate::secret::Secret;

/// Git is waiting: a re-mint gives up after this.
const REMINT_DEADLINE: Duration = Duration::from_secs(20);
/// A whole call, lock wait and re-mint included, ends within this.
const CALL_BOUND: Duration = Duration::from_secs(28);
const LOCK_WAIT: Duration = Duration::from_secs(25);
/// After a failed re-mint, callers with a valid cached token leave GitHub alone this long.
const FAILURE_QUIET: i64 = 30;

/// A token to hand out.
#[derive(Debug)]
pub(crate) struct Served {
    pub(crate) token: Secret,
    pub(crate) expires_at: LocalTime,
    /// Set when the token is served because a re-mint failed.
    pub(crate) warning: Option<String>,
}

/// What the process that asks brings to a re-mint: its HTTP bounds and, for a keyless store,
/// what its environment offers to get the job's identity: the Actions runner's identity request
/// (or why it has none), and its variables.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) http_env: HttpEnv,
    pub(crate) actions: Result<IdentityRequest, NoIdentityRequest>,
    pub(crate) env: Env,
}

/// Why a process has no identity request of the Actions runner's, in the words of its door.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NoIdentityRequest {
    /// The action's job lacks the `id-token: write` permission.
    #[error(
        "keyless mode needs the job's identity, and `ACTIONS_ID_TOKEN_REQUEST_URL` is not set: add `permissions: id-token: write` to the job"
    )]
    NoPermission,
    /// `setup` runs in a CI that is not Actions, and was told of no other identity.
    #[error(
        "keyless mode without `--identity-env` or `--identity-command` asks the Actions runner for the job's identity, and `ACTIONS_ID_TOKEN_REQUEST_URL` is not set: name where this CI keeps the job's identity token"
    )]
    NotActions,
    /// A tool runs where the step's variables did not reach.
    #[error(
        "this step cannot ask for the job's identity: `ACTIONS_ID_TOKEN_REQUEST_URL` and `ACTIONS_ID_TOKEN_REQUEST_TOKEN` are not set here (a container step, or a tool that clears its environment); run it as an ordinary step, or pass the two variables on"
    )]
    NotPassedOn,
    #[cfg(test)]
    #[error("no identity in tests")]
    InTests,
}

impl Caller {
    /// A process with `env`: its `TOKEN_KEEPER_*` bounds, and the runner's identity request, or
    /// `no_request` to say why there is none.
    pub(crate) fn new(env: &Env, no_request: NoIdentityRequest) -> Result<Self> {
        Ok(Self {
            http_env: HttpEnv::from_env(env)?,
            actions: source::runner_identity_request(env).ok_or(no_request),
            env: env.clone(),
        })
    }
}

#[cfg(test)]
impl Default for Caller {
    fn default() -> Self {
        Self {
            http_env: HttpEnv::default(),
            actions: Err(NoIdentityRequest::InTests),
            env: Env::default(),
        }
    }
}

/// A token minted and recorded, and how its first use went.
pub(crate) struct Minted {
    pub(crate) token: MintedToken,
    /// The App's bot user (for an App) from the check that GitHub accepts the new token, or why
    /// that check failed.
    pub(crate) accepted: Result<Option<BotUser>, ApiError>,
}

/// Why no usable token came of a mint.
#[derive(Debug)]
pub(crate) enum Unminted {
    /// The source refused, or could not be reached.
    Mint(MintFailure),
    /// A token was minted but could not be recorded: why, and that it was revoked (or, in the
    /// message, that it could not be).
    Record(String),
}

/// Why no token came from the source: GitHub's App API, the exchange service, or what comes
/// before either (the job's identity, the signer, the lock, the state). The roles match on it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MintFailure {
    #[error(transparent)]
    App(#[from] MintError),
    #[error(transparent)]
    Exchange(#[from] ExchangeError),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// What becomes of the tokens an end of a store could not revoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unended {
    /// They stay in its ledger for a later end (`token-keeper revoke`, run again).
    Kept,
    /// They go with the store: nothing would end them later (the post step, whose folder the
    /// runner removes), and each was warned of.
    Dropped,
}

/// One step's token store.
pub(crate) struct Keeper {
    dir: StateDir,
    caller: Caller,
    /// Told once when a re-mint has to wait for another process's, when a person is waiting.
    on_wait: Option<&'static dyn Reporter>,
}

impl Keeper {
    /// The store in `path`, for re-mints on behalf of `caller`.
    pub(crate) fn open(path: &Path, caller: Caller) -> Result<Self, Unfound> {
        match StateDir::open(path) {
            Ok(dir) => Ok(Self {
                dir,
                caller,
                on_wait: None,
            }),
            Err(err) if err.is_not_found() => Err(no_state(path)),
            Err(err) => Err(anyhow::Error::from(err).into()),
        }
    }

    /// Tell a person through `reporter` when a re-mint waits for another process's.
    pub(crate) fn announcing_waits(mut self, reporter: &'static dyn Reporter) -> Self {
        self.on_wait = Some(reporter);
        self
    }

    /// What is done once when a re-mint has to wait for another process's.
    fn waiting(&self) -> impl FnOnce() + '_ {
        move || match self.on_wait {
            Some(reporter) => {
                reporter.say("waiting for another process of this job to finish re-minting")
            }
            None => tracing::debug!("waiting for another re-mint"),
        }
    }

    /// End a store. Its end begins (`RETIRING`: from then on no process mints or serves from it),
    /// and its secrets go at once: the App's key and the cached token. The lock, waited for at
    /// most `lock_wait`, lets a re-mint in progress finish (one that sees the end has begun
    /// revokes what it minted). Then `revoke` is given where to revoke and every live token the
    /// ledger lists, and says which it ended; the store goes once none is left. Tokens still
    /// live are as `unended` says: kept in the ledger, with what revoking them needs, for a
    /// later end to finish, and the error says so; or let go with the store.
    pub(crate) fn retire(
        dir: StateDir,
        lock_wait: Duration,
        unended: Unended,
        revoke: impl FnOnce(&Ledger) -> Vec<bool>,
    ) -> Result<()> {
        dir.begin_retiring()?;
        dir.forget_secrets();
        // A stuck holder must not keep the tokens alive: revoke without the lock then.
        let guard = Guard::acquire(&dir, lock_wait, || {}).ok();
        let mut ledger = dir.ledger()?;
        let now = crate::clock::unix_now();
        ledger.entries.retain(|e| e.is_live(now));
        if !ledger.entries.is_empty() {
            let ended = revoke(&ledger);
            let mut ended = ended.into_iter();
            ledger.entries.retain(|_| !ended.next().unwrap_or(false));
        }
        if unended == Unended::Dropped {
            dir.remove(guard)?;
            return Ok(());
        }
        let path = dir.path().display().to_string();
        let Some(guard) = guard else {
            // Another process may still append to the ledger: it stays whole.
            bail!(
                "another process held the lock of `{}`, so the store stays: run `token-keeper revoke` again to end it",
                messages::short(&path)
            );
        };
        if !ledger.entries.is_empty() {
            guard.write_ledger(&ledger)?;
            bail!(
                "{} token(s) of `{}` are still live: they stay in its ledger; run `token-keeper revoke` again to revoke them",
                ledger.entries.len(),
                messages::short(&path)
            );
        }
        dir.remove(Some(guard))?;
        Ok(())
    }

    /// The job's first token, from `origin` settled (an App's installation looked up for
    /// `target`), through `gh`: recorded in `dir`'s ledger before anything uses it, as every
    /// re-mint's is. With it comes the source later re-mints use.
    pub(crate) fn first(
        dir: &StateDir,
        origin: &Origin,
        target: &Target,
        request: &TokenRequest,
        minter: &Minter,
        (gh, runtime): (&GitHub, &Runtime),
    ) -> Result<(TokenSource, Minted), Unminted> {
        let guard = Guard::acquire(dir, LOCK_WAIT, || {})
            .map_err(|e| Unminted::Mint(anyhow::Error::from(e).into()))?;
        let deadline = Instant::now() + gh.deadline();
        let source = runtime
            .block_on(origin.settle(gh, minter, target))
            .map_err(Unminted::Mint)?;
        let minted = mint_recorded(&guard, (gh, runtime), &source, request, minter, deadline)?;
        Ok((source, minted))
    }

    /// Keep what later steps need to re-mint: the App's key, if the signer is one, then the
    /// state.
    pub(crate) fn keep(
        dir: &StateDir,
        config: MintConfig,
        token: CachedToken,
        signer: Option<&Signer>,
    ) -> Result<()> {
        let guard = Guard::acquire(dir, LOCK_WAIT, || {})?;
        if let Some(key) = signer.and_then(Signer::key) {
            dir.write_atomic(store::KEY, key.to_pem().as_bytes())?;
        }
        guard.write_state(&State::new(config, token))?;
        Ok(())
    }

    pub(crate) fn dir(&self) -> &StateDir {
        &self.dir
    }

    pub(crate) fn state(&self) -> Result<State, Unfound> {
        self.dir
            .state()
            .map_err(anyhow::Error::from)?
            .ok_or_else(|| no_state(self.dir.path()))
    }

    /// A token that the policy calls fresh at `now` (our clock), from the state the caller has
    /// just read, re-minting if needed.
    pub(crate) fn serve(&self, state: State, now: LocalTime) -> Result<Served> {
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
    pub(crate) fn erase(&self, state: &State, password: &str, now: LocalTime) -> Result<()> {
        if state.token.token.expose() != password
            || !policy::erase_counts(now, &state.token.lifetime, state.last_erase_mint)
        {
            return Ok(());
        }
        let guard = Guard::acquire(&self.dir, LOCK_WAIT, self.waiting())?;
        let mut state = self.state()?;
        if state.token.token.expose() == password {
            state.erased = true;
            guard.write_state(&state)?;
        }
        Ok(())
    }

    /// Re-mint under the lock, unless another process did, or just failed to.
    fn refresh(&self, now: LocalTime) -> Result<Served> {
        let started = Instant::now();
        let guard = match Guard::acquire(&self.dir, LOCK_WAIT, self.waiting()) {
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
        let minted = self.remint(&guard, &mut state, budget);
        // The store's end began meanwhile: nothing is served from it, not even the cached token.
        if guard.retiring() {
            return Err(match minted {
                Err(Unminted::Mint(err)) => err.into(),
                _ => anyhow!(store::ENDING),
            });
        }
        let (minted, clock_offset) = match minted {
            Ok(minted) => minted,
            // A full disk: the unrecorded token is revoked, and the old one serves while it
            // lasts.
            Err(Unminted::Record(why)) => {
                return fallback(&state, now, &format!("cannot save the new token: {why}"));
            }
            Err(Unminted::Mint(err)) => {
                // Stored for other processes to show: scrubbed of our secrets here, which they
                // do not hold.
                let message = messages::describe(&err.into());
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
        state.renew(
            minted.token.token,
            minted.token.expires_at,
            clock_offset,
            now,
        );
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

    /// A new token from the stored source, recorded; the new clock offset comes with it.
    fn remint(
        &self,
        guard: &Guard,
        state: &mut State,
        budget: Duration,
    ) -> Result<(Minted, Offset), Unminted> {
        // Every input is read before the clock starts.
        let signer = match &state.config.source {
            TokenSource::App { signer, .. } => Some(
                signer
                    .signer(|| self.read_key())
                    .map_err(|err| Unminted::Mint(err.into()))?,
            ),
            TokenSource::Exchange { .. } => None,
        };
        let minter = Minter {
            signer: signer.as_ref(),
            caller: &self.caller,
        };
        let (gh, runtime) = client::connect(
            &state.config.api,
            budget,
            state.token.lifetime.clock_offset,
            &self.caller.http_env,
        )
        .map_err(|err| Unminted::Mint(anyhow::Error::from(err).into()))?;
        let deadline = Instant::now() + budget;
        let config = &state.config;
        let minted = mint_recorded(
            guard,
            (&gh, &runtime),
            &config.source,
            &config.request,
            &minter,
            deadline,
        )?;
        // A check that fails says nothing about the token: GitHub will take it soon. The error
        // holds the server's text.
        if let Err(err) = &minted.accepted {
            tracing::debug!("the new token is not accepted yet: {}", err.shown());
        }
        Ok((minted, gh.clock().offset()))
    }

    /// The App's key, stored by the main step.
    fn read_key(&self) -> Result<PrivateKey> {
        let path = self.dir.path().join(store::KEY);
        let text =
            std::fs::read_to_string(&path).map_err(private::at("read the App's key", &path))?;
        Ok(PrivateKey::parse(&text)?)
    }
}

/// Why a token was not revoked.
#[derive(Debug)]
pub(crate) enum Unrevoked {
    Refused(ApiError),
    /// Its revocation did not finish.
    Stopped,
}

/// Revoke every one of `live` at once, all within the client's deadline, and say how each went,
/// in their order.
pub(crate) fn revoke_all(
    gh: GitHub,
    runtime: &Runtime,
    live: &[LedgerEntry],
) -> Vec<Result<Revoked, Unrevoked>> {
    let gh = Arc::new(gh);
    runtime.block_on(async {
        let mut revocations = tokio::task::JoinSet::new();
        for (at, entry) in live.iter().enumerate() {
            let (gh, token) = (gh.clone(), entry.token.clone());
            revocations.spawn(async move { (at, apps::revoke(&gh, &token).await) });
        }
        let mut outcomes: Vec<Result<Revoked, Unrevoked>> =
            live.iter().map(|_| Err(Unrevoked::Stopped)).collect();
        while let Some(joined) = revocations.join_next().await {
            if let Ok((at, outcome)) = joined {
                outcomes[at] = outcome.map_err(Unrevoked::Refused);
            }
        }
        outcomes
    })
}

/// Revoke every one of `live` as `revoke_all` does, and tell `reporter` how each went, with
/// what can be done about a refusal. Which are gone, in their order: revoked now, or already
/// (GitHub's 401).
pub(crate) fn revoke_and_tell(
    gh: GitHub,
    runtime: &Runtime,
    live: &[LedgerEntry],
    reporter: &dyn Reporter,
) -> Vec<bool> {
    let outcomes = revoke_all(gh, runtime, live);
    live.iter()
        .zip(outcomes)
        .map(|(entry, outcome)| {
            let shown = entry.token.fingerprint();
            match outcome {
                Ok(Revoked::Now) => reporter.say(&format!("revoked {shown}")),
                Ok(Revoked::AlreadyGone) => reporter.warn(&format!(
                    "{shown} was not revoked: GitHub answered 401, so it was revoked already or has expired"
                )),
                Err(Unrevoked::Refused(err)) => {
                    match job::fix_for(&err, reporter.door()) {
                        Some(fix) => reporter.warn(&format!("could not revoke {shown}: {err}: {fix}")),
                        None => reporter.warn(&format!("could not revoke {shown}: {err}")),
                    }
                    return false;
                }
                Err(Unrevoked::Stopped) => {
                    reporter.warn(&format!("could not revoke {shown}: the revocation stopped"));
                    return false;
                }
            }
            true
        })
        .collect()
}

/// For tests of long jobs, which cannot wait an hour: the store at `path` as if the job had run
/// `secs` longer (its cached token, a failed re-mint and the last erase that long ago), and
/// with `expired` its token past its expiry too. It goes through the store's own lock and
/// types, as a re-mint writes.
pub fn backdate_cached_token(path: &Path, secs: i64, expired: bool) -> Result<()> {
    let dir = StateDir::open(path)?;
    let guard = Guard::acquire(&dir, LOCK_WAIT, || {})?;
    let mut state = dir.state()?.ok_or_else(|| no_state(path))?;
    if let Some(failure) = &mut state.failure {
        failure.at = failure.at - secs;
    }
    if let Some(at) = &mut state.last_erase_mint {
        *at = *at - secs;
    }
    let lifetime = &mut state.token.lifetime;
    lifetime.minted_at = lifetime.minted_at - secs;
    if expired {
        lifetime.expires_at = lifetime.clock_offset.theirs(crate::clock::unix_now() - 1);
    }
    guard.write_state(&state)?;
    Ok(())
}

/// For tests of jobs killed long ago: every token the store at `path` lists as if it had
/// expired `secs` earlier, through the store's own lock and types.
pub fn backdate_ledger(path: &Path, secs: i64) -> Result<()> {
    let dir = StateDir::open(path)?;
    let guard = Guard::acquire(&dir, LOCK_WAIT, || {})?;
    let mut ledger = dir.ledger()?;
    for entry in &mut ledger.entries {
        entry.expires_at = ServerTime(entry.expires_at.0 - secs);
    }
    guard.write_ledger(&ledger)?;
    Ok(())
}

/// Mint from `source`, and record the token in the ledger before anything uses it: one that
/// cannot be recorded is revoked at once, as the post step could never find it. Then check the
/// answer (`apps::accept`, which revokes a token it refuses; recorded, it is revoked by the post
/// step if that fails), and that GitHub accepts the token, by `deadline`. The first mint and every
/// re-mint come this way.
fn mint_recorded(
    guard: &Guard,
    (gh, runtime): (&GitHub, &Runtime),
    source: &TokenSource,
    request: &TokenRequest,
    minter: &Minter,
    deadline: Instant,
) -> Result<Minted, Unminted> {
    let token = runtime
        .block_on(source.mint(gh, minter, request))
        .map_err(Unminted::Mint)?;
    let entry = LedgerEntry {
        token: token.token.clone(),
        expires_at: token.expires_at,
        clock_offset: gh.clock().offset(),
    };
    if let Err(err) = guard.record(&entry) {
        let mut why = err.to_string();
        if let Err(revoke) = runtime.block_on(apps::revoke(gh, &token.token)) {
            why.push_str(&format!(
                "; nor revoke it, so it stays valid until it expires: {revoke}"
            ));
        }
        return Err(Unminted::Record(why));
    }
    // The store's end began while this mint was on its way: what it made goes too.
    if guard.retiring() {
        let what = match runtime.block_on(apps::revoke(gh, &token.token)) {
            Ok(_) => "the token just minted was revoked",
            Err(_) => "the token just minted is in its ledger, for the end to revoke",
        };
        return Err(Unminted::Mint(anyhow!("{}: {what}", store::ENDING).into()));
    }
    let token = runtime
        .block_on(apps::accept(gh, token))
        .map_err(|err| Unminted::Mint(MintError::from(err).into()))?;
    let left = deadline.saturating_duration_since(Instant::now());
    let accepted = runtime
        .block_on(async { tokio::time::timeout(left, source.check(gh, &token)).await })
        .unwrap_or_else(|_| Err(ApiError::Setup("no answer before the deadline".to_owned())));
    Ok(Minted { token, accepted })
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

fn plan(now: LocalTime, state: &State) -> Plan {
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

/// No store is at a path a caller named: the fact, for the caller to advise on.
#[derive(Debug, thiserror::Error)]
#[error("no token-keeper state in `{0}`")]
pub(crate) struct NoState(String);

fn no_state(path: &Path) -> Unfound {
    NoState(messages::short(&path.to_string_lossy())).into()
}

/// Why there is no store to serve from: none where stores are looked for, none at the path
/// named, or another failure on the way. The tools advise on the first two.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Unfound {
    #[error(transparent)]
    NoStore(#[from] store::locate::NoStore),
    #[error(transparent)]
    NoState(#[from] NoState),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// The age at which the store's token is re-minted.
pub(crate) fn refresh_after(state: &State) -> Duration {
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
fn fallback(state: &State, now: LocalTime, message: &str) -> Result<Served> {
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
    use crate::clock::{LocalTime, Offset, ServerTime};

    fn state(minted_at: i64, failure: Option<i64>) -> State {
        let mut state = State::new(
            MintConfig::example(&[]),
            CachedToken {
                token: Secret::new("t".into()),
                lifetime: Lifetime {
                    minted_at: LocalTime(minted_at),
                    expires_at: ServerTime(minted_at + 3600),
                    clock_offset: Offset(0),
                },
            },
        );
        state.failure = failure.map(|at| Failure {
            at: LocalTime(at),
            message: "GitHub is down".into(),
        });
        state
    }

    #[test]
    fn a_callers_variables_are_never_shown() {
        let caller = Caller {
            env: Env::from_pairs([("APP_PRIVATE_KEY", "MIIEsecret")]),
            ..Caller::default()
        };
        let shown = format!("{caller:?}");
        assert!(!shown.contains("MIIEsecret"), "{shown}");
    }

    #[test]
    fn under_the_lock_a_fresh_state_is_served_and_a_stale_one_reminted() {
        assert_eq!(
            plan(LocalTime(1000), &state(900, None)),
            Plan::Serve,
            "another process re-minted"
        );
        assert_eq!(plan(LocalTime(4000), &state(900, None)), Plan::Remint);
        assert_eq!(
            plan(LocalTime(4000), &state(900, Some(3000))),
            Plan::Remint,
            "an old failure"
        );
    }

    #[test]
    fn a_recent_failure_gives_github_a_rest_while_the_cache_is_valid() {
        let failed = |at| plan(LocalTime(4000), &state(900, Some(at)));
        assert_eq!(failed(3990), Plan::Fallback("GitHub is down".into()));
        assert_eq!(
            failed(4000),
            Plan::Fallback("GitHub is down".into()),
            "while we waited"
        );
        // Expired by now: a recent failure is no reason not to try.
        assert_eq!(plan(LocalTime(4600), &state(900, Some(4590))), Plan::Remint);
    }

    #[test]
    fn fallback_serves_a_valid_token_and_refuses_an_expired_one() {
        let state = state(-3500, None);
        let ok = fallback(&state, LocalTime(50), "GitHub is down").unwrap();
        assert!(ok.warning.unwrap().contains("valid for 50 more seconds"));
        let err = fallback(&state, LocalTime(100), "GitHub is down").unwrap_err();
        assert_eq!(
            err.to_string(),
            "no valid token is left: re-minting failed: GitHub is down"
        );
    }
}
