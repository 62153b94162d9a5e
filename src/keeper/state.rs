//! A step's state directory on disk: the ledger of every token minted, and the files beside it.
//!
//! Files and folders are private to the runner's user (`crate::private`). The state file and the
//! key are replaced whole, by rename; the ledger only grows, a line at a time.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::policy::Lifetime;
use super::source::TokenSource;
use crate::github::{TokenRequest, hosts};
use crate::messages::json_error;
use crate::private::{FileError, Owner, at, create_private_dir, open_private, write_atomic};
use crate::secret::Secret;

/// Every token the store minted, a line each, so that each is revoked.
pub(crate) const LEDGER: &str = "ledger";
/// The cached token and what re-minting needs, replaced whole on every change.
pub(crate) const STATE: &str = "state.json";
/// The App's private key, for re-mints.
pub(crate) const KEY: &str = "key.pem";
/// The format of `state.json`; a state of another is refused, not misread.
const STATE_VERSION: u32 = 2;

/// One minted token, as the post step needs it to revoke.
#[derive(Debug, Clone)]
pub(crate) struct LedgerEntry {
    pub(crate) token: Secret,
    /// Expiry in GitHub's clock, unix seconds.
    pub(crate) expires_at: i64,
    /// GitHub's clock minus ours when it was minted, seconds.
    pub(crate) clock_offset: i64,
}

impl LedgerEntry {
    /// Whether it may still be live at `now` (our clock).
    pub(crate) fn is_live(&self, now: i64) -> bool {
        self.expires_at > now + self.clock_offset
    }
}

#[derive(Serialize, Deserialize)]
struct LedgerLine {
    token: String,
    expires_at: i64,
    clock_offset: i64,
}

/// What re-minting needs, fixed by the main step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MintConfig {
    pub(crate) api_url: String,
    /// The git server the token is for (`https://github.com`).
    pub(crate) git_server: String,
    pub(crate) source: TokenSource,
    /// The owner whose repositories the tokens reach, as GitHub spells it.
    pub(crate) account: String,
    /// The repositories and permissions asked for.
    pub(crate) request: TokenRequest,
    /// Seconds.
    pub(crate) refresh_after: u64,
    pub(crate) ca_certificates: Option<String>,
}

impl MintConfig {
    /// GitHub Enterprise Server, where `gh` reads `GH_ENTERPRISE_TOKEN`.
    pub(crate) fn is_enterprise_server(&self) -> bool {
        url::Url::parse(&self.git_server)
            .ok()
            .and_then(|u| u.host_str().map(|host| !hosts::is_cloud(host)))
            .unwrap_or(false)
    }
}

#[cfg(test)]
impl MintConfig {
    /// A store of `Octo-Org`'s App installation on github.com, for `repositories`.
    pub(crate) fn example(repositories: &[&str]) -> Self {
        Self {
            api_url: "https://api.github.com".into(),
            git_server: "https://github.com".into(),
            source: TokenSource::App {
                issuer: "1".into(),
                installation: Some(crate::github::Installation {
                    id: 1,
                    app_slug: "keeper".into(),
                    account: "Octo-Org".into(),
                }),
            },
            account: "Octo-Org".into(),
            request: TokenRequest {
                repositories: repositories.iter().map(|r| (*r).to_owned()).collect(),
                permissions: Default::default(),
            },
            refresh_after: 3000,
            ca_certificates: None,
        }
    }
}

/// The token now served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CachedToken {
    pub(crate) token: Secret,
    #[serde(flatten)]
    pub(crate) lifetime: Lifetime,
}

impl CachedToken {
    /// A token just minted, received at `now` (our clock) while GitHub's ran `clock_offset`
    /// ahead.
    pub(crate) fn received(
        minted: &crate::github::MintedToken,
        clock_offset: i64,
        now: i64,
    ) -> Self {
        Self {
            token: minted.token.clone(),
            lifetime: Lifetime {
                minted_at: now,
                expires_at: minted.expires_at,
                clock_offset,
            },
        }
    }
}

/// A re-mint that failed, so processes queued behind it do not each retry for the full bound.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Failure {
    /// Our clock.
    pub(crate) at: i64,
    pub(crate) message: String,
}

/// The contents of `state.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct State {
    pub(crate) version: u32,
    pub(crate) config: MintConfig,
    pub(crate) token: CachedToken,
    /// Git erased the current token.
    #[serde(default)]
    pub(crate) erased: bool,
    /// When an erase last caused a re-mint, our clock.
    #[serde(default)]
    pub(crate) last_erase_mint: Option<i64>,
    #[serde(default)]
    pub(crate) failure: Option<Failure>,
}

impl State {
    pub(crate) fn new(config: MintConfig, token: CachedToken) -> Self {
        Self {
            version: STATE_VERSION,
            config,
            token,
            erased: false,
            last_erase_mint: None,
            failure: None,
        }
    }

    /// A new token replaces the cached one at `now`: the erase and any failure are over.
    pub(crate) fn renew(&mut self, token: Secret, expires_at: i64, clock_offset: i64, now: i64) {
        if self.erased {
            self.last_erase_mint = Some(now);
        }
        self.token = CachedToken {
            token,
            lifetime: Lifetime {
                minted_at: now,
                expires_at,
                clock_offset,
            },
        };
        self.erased = false;
        self.failure = None;
    }
}

/// A step's state directory.
#[derive(Debug, Clone)]
pub(crate) struct StateDir {
    path: PathBuf,
    owner: Owner,
}

impl StateDir {
    /// Create the job's folder `job` and the step's folder `name` in it, each 0700 and owned by
    /// `owner`; `job`'s own parent must exist.
    pub(crate) fn create(job: &Path, name: &str, owner: Owner) -> Result<Self, FileError> {
        let path = job.join(name);
        create_private_dir(job, owner)?;
        create_private_dir(&path, owner)?;
        Ok(Self { path, owner })
    }

    /// Create the folder `path` alone, 0700 and `owner`'s; its parent must exist.
    pub(crate) fn create_at(path: &Path, owner: Owner) -> Result<Self, FileError> {
        create_private_dir(path, owner)?;
        Ok(Self {
            path: path.to_owned(),
            owner,
        })
    }

    /// An existing directory; what we write in it goes to the directory's owner.
    pub(crate) fn open(path: &Path) -> Result<Self, FileError> {
        let owner = Owner::of(path).map_err(at("open", path))?;
        Ok(Self {
            path: path.to_owned(),
            owner,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn owner(&self) -> Owner {
        self.owner
    }

    /// Replace `name` whole (`private::write_atomic`): readers see the old or the new file.
    pub(super) fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<(), FileError> {
        write_atomic(&self.path.join(name), 0o600, self.owner, |file| {
            file.write_all(bytes)
        })
    }

    /// Add a minted token to the ledger, durably, before anything else uses it.
    pub(super) fn record(&self, entry: &LedgerEntry) -> Result<(), FileError> {
        let line = LedgerLine {
            token: entry.token.expose().to_owned(),
            expires_at: entry.expires_at,
            clock_offset: entry.clock_offset,
        };
        let mut text = serde_json::to_string(&line)
            .map_err(|e| at("write a line for", &self.path.join(LEDGER))(io::Error::other(e)))?;
        text.push('\n');
        let path = self.path.join(LEDGER);
        let file = open_private(
            &path,
            OpenOptions::new().read(true).append(true),
            self.owner,
        )?;
        if !ends_with_newline(&file).map_err(at("read", &path))? {
            // A line cut off by a full disk or a kill must not swallow this one.
            text.insert(0, '\n');
        }
        (&file)
            .write_all(text.as_bytes())
            .map_err(at("append to", &path))?;
        file.sync_all().map_err(at("sync", &path))
    }

    /// The cached token and configuration; `None` when the main step stored none.
    pub(crate) fn state(&self) -> Result<Option<State>, FileError> {
        let path = self.path.join(STATE);
        match fs::read(&path) {
            Ok(bytes) => read_state(&bytes)
                .map(Some)
                .map_err(|why| at("parse", &path)(io::Error::new(io::ErrorKind::InvalidData, why))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(at("read", &path)(e)),
        }
    }

    /// Every token recorded. A line that does not read (cut off by a crash, damaged on disk) is
    /// skipped: one bad byte must not keep the other tokens from being revoked.
    pub(crate) fn ledger(&self) -> Result<Vec<LedgerEntry>, FileError> {
        let path = self.path.join(LEDGER);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(at("read", &path)(e)),
        };
        Ok(bytes
            .split(|b| *b == b'\n')
            .filter_map(|line| serde_json::from_slice::<LedgerLine>(line).ok())
            .filter_map(|l| {
                Some(LedgerEntry {
                    token: Secret::checked(l.token).ok()?,
                    expires_at: l.expires_at,
                    clock_offset: l.clock_offset,
                })
            })
            .collect())
    }

    /// Remove the directory and all in it.
    pub(crate) fn remove(&self) -> Result<(), FileError> {
        match fs::remove_dir_all(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(at("remove", &self.path)(e)),
            _ => Ok(()),
        }
    }
}

/// The state in `bytes`, of this format only: another version of token-keeper wrote any other.
fn read_state(bytes: &[u8]) -> Result<State, String> {
    #[derive(Deserialize)]
    struct Versioned {
        version: u32,
    }
    // serde's message can quote a value of the file, a token among them: only where.
    let unreadable = |err: serde_json::Error| format!("it {}", json_error(&err));
    let other_format = |version: u32| {
        format!(
            "it is of format {version}, and this token-keeper reads format {STATE_VERSION}: run the tools of the token-keeper step that wrote it"
        )
    };
    match serde_json::from_slice::<State>(bytes) {
        Ok(state) if state.version == STATE_VERSION => Ok(state),
        Ok(state) => Err(other_format(state.version)),
        // Read again only to word the error: another format need not read as this one.
        Err(err) => match serde_json::from_slice::<Versioned>(bytes) {
            Ok(versioned) if versioned.version != STATE_VERSION => {
                Err(other_format(versioned.version))
            }
            Ok(_) => Err(unreadable(err)),
            Err(probe) => Err(unreadable(probe)),
        },
    }
}

/// Whether a file is empty or ends with a newline. Moving the file's cursor is harmless: it is
/// open for appending, and every write goes to its end.
fn ends_with_newline(mut file: &File) -> io::Result<bool> {
    if file.metadata()?.len() == 0 {
        return Ok(true);
    }
    let mut last = [0u8; 1];
    file.seek(SeekFrom::End(-1))?;
    file.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me(dir: &Path) -> Owner {
        Owner::of(dir).unwrap()
    }

    fn entry(token: &str, expires_at: i64) -> LedgerEntry {
        LedgerEntry {
            token: Secret::new(token.into()),
            expires_at,
            clock_offset: 0,
        }
    }

    fn tokens(dir: &StateDir) -> Vec<String> {
        dir.ledger()
            .unwrap()
            .iter()
            .map(|e| e.token.expose().to_owned())
            .collect()
    }

    /// Bytes added to the ledger behind the keeper's back.
    fn append(dir: &StateDir, bytes: &[u8]) {
        let mut ledger = OpenOptions::new()
            .append(true)
            .open(dir.path().join(LEDGER))
            .unwrap();
        ledger.write_all(bytes).unwrap();
    }

    #[test]
    fn ledger_round_trips_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::create(&tmp.path().join("a"), "b", me(tmp.path())).unwrap();
        dir.record(&entry("one", 10)).unwrap();
        dir.record(&entry("two", 20)).unwrap();
        assert_eq!(tokens(&dir), ["one", "two"]);
    }

    #[test]
    fn a_cut_off_last_line_is_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::create(tmp.path(), "s", me(tmp.path())).unwrap();
        dir.record(&entry("one", 10)).unwrap();
        append(&dir, br#"{"token":"tw"#);
        assert_eq!(dir.ledger().unwrap().len(), 1);
        // The next entry starts on a line of its own.
        dir.record(&entry("three", 30)).unwrap();
        assert_eq!(tokens(&dir), ["one", "three"]);
    }

    #[test]
    fn damaged_lines_are_skipped_and_the_rest_read() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::create(tmp.path(), "s", me(tmp.path())).unwrap();
        dir.record(&entry("one", 10)).unwrap();
        append(&dir, b"\xff\xfe not a line\n");
        append(
            &dir,
            b"{\"token\":\"t\\nx\",\"expires_at\":1,\"clock_offset\":0}\n",
        );
        dir.record(&entry("two", 20)).unwrap();
        assert_eq!(tokens(&dir), ["one", "two"]);
    }

    #[cfg(unix)]
    #[test]
    fn files_and_directories_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("job/state");
        let dir = StateDir::create(&tmp.path().join("job"), "state", me(tmp.path())).unwrap();
        dir.record(&entry("one", 10)).unwrap();
        dir.write_atomic("cache", b"x").unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o700);
        assert_eq!(mode(&path.join(LEDGER)), 0o600);
        assert_eq!(mode(&path.join("cache")), 0o600);
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::create(tmp.path(), "s", me(tmp.path())).unwrap();
        dir.write_atomic("cache", b"old").unwrap();
        dir.write_atomic("cache", b"new").unwrap();
        assert_eq!(fs::read(dir.path().join("cache")).unwrap(), b"new");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_renewed_state_forgets_the_erase_and_the_failure() {
        let mut state = State::new(
            MintConfig::example(&[]),
            CachedToken {
                token: Secret::new("old".into()),
                lifetime: Lifetime {
                    minted_at: 0,
                    expires_at: 3600,
                    clock_offset: 0,
                },
            },
        );
        state.erased = true;
        state.failure = Some(Failure {
            at: 10,
            message: "down".into(),
        });
        state.renew(Secret::new("new".into()), 7300, 5, 3700);
        assert_eq!(state.token.token.expose(), "new");
        assert_eq!(
            (
                state.token.lifetime.minted_at,
                state.token.lifetime.clock_offset
            ),
            (3700, 5)
        );
        assert!(!state.erased && state.failure.is_none());
        assert_eq!(state.last_erase_mint, Some(3700));
    }

    #[test]
    fn a_state_round_trips_and_one_of_another_format_is_refused() {
        let state = State::new(
            MintConfig::example(&["app"]),
            CachedToken {
                token: Secret::new("ghs_round-trip".into()),
                lifetime: Lifetime {
                    minted_at: 1,
                    expires_at: 3601,
                    clock_offset: 0,
                },
            },
        );
        let bytes = serde_json::to_vec(&state).unwrap();
        assert_eq!(read_state(&bytes).unwrap(), state);
        let mut older: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        older["version"] = 1.into();
        let err = read_state(&serde_json::to_vec(&older).unwrap()).unwrap_err();
        assert!(err.contains("format 1"), "{err}");
        let damaged = read_state(br#"{"version": "ghs_quoted"}"#).unwrap_err();
        assert!(!damaged.contains("ghs_"), "{damaged}");
    }

    #[test]
    fn liveness_uses_the_recorded_clock_offset() {
        let mut e = entry("t", 1000);
        assert!(e.is_live(999));
        assert!(!e.is_live(1000));
        e.clock_offset = 300; // GitHub five minutes ahead of us
        assert!(!e.is_live(800));
        assert!(e.is_live(600));
    }

    #[test]
    fn remove_deletes_everything_and_tolerates_absence() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("s");
        let dir = StateDir::create(tmp.path(), "s", me(tmp.path())).unwrap();
        dir.record(&entry("one", 10)).unwrap();
        dir.remove().unwrap();
        assert!(!path.exists());
        dir.remove().unwrap();
    }
}
