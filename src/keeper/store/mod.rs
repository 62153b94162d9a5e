//! A store on disk: a folder marked as ours, the ledger of every token minted, and the files
//! beside it; where a job's stores are and how a later step finds one (`locate`, `layout` for
//! the action's), and its lock (`lock`).
//!
//! Files and folders are private to the runner's user (`crate::private`). The state file and the
//! key are replaced whole, by rename; the ledger grows a line at a time, and starts with what
//! revoking its tokens needs, so that they can be revoked whatever became of the rest. Only a
//! folder that bears our mark is ended, and then only the files we write in it go.

pub(crate) mod layout;
pub(crate) mod locate;
pub(crate) mod lock;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use url::Url;

use crate::clock::{LocalTime, Offset, ServerTime};

use self::lock::Guard;
use crate::github::client::Server;
use crate::github::{TokenRequest, hosts};
use crate::keeper::policy::Lifetime;
use crate::keeper::source::TokenSource;
use crate::messages::json_error;
use crate::private::{FileError, Owner, at, create_private_dir, open_private, write_atomic};
use crate::secret::Secret;

/// What makes a folder a store: written when it is made, looked for before it is ended.
pub(crate) const MARK: &str = "token-keeper-store";
const MARK_TEXT: &[u8] = b"a token-keeper store: token-keeper revoke ends it\n";
/// Every token the store minted, a line each, so that each is revoked.
pub(crate) const LEDGER: &str = "ledger";
/// The cached token and what re-minting needs, replaced whole on every change.
pub(crate) const STATE: &str = "state.json";
/// The App's private key, for re-mints.
pub(crate) const KEY: &str = "key.pem";
/// Made when the store's end begins: from then on nothing is minted or served from it.
pub(crate) const RETIRING: &str = "retiring";
/// What a process that meets a store's end in progress, or done, is told.
pub(crate) const ENDING: &str =
    "the store is being ended (by `token-keeper revoke` or the post step)";
pub(crate) const ENDED: &str =
    "the store has been ended (by `token-keeper revoke` or the post step), so it serves no token";
/// The folders `exec --keep-fresh` gives its children as `GH_CONFIG_DIR`, named from this.
pub(crate) const GH_CONFIG_PREFIX: &str = "gh-config-";
/// The folders of a proxy's trust files (`exec --proxy`, `proxy start`), named from this.
pub(crate) const PROXY_PREFIX: &str = "proxy-";
/// Where the proxy `proxy start` left for the job's later steps is (`ProxyRecord`).
pub(crate) const PROXY_RECORD: &str = "proxy.json";
/// How long after its last token expired a store of another job is taken to be one that a
/// killed job left behind: a running job may sit for hours between two git commands, and
/// re-mints then with the key the store holds.
pub(crate) const ABANDONED_AFTER: i64 = 24 * 3600;
/// The format of `state.json`; a state of another is refused, not misread.
const STATE_VERSION: u32 = 2;

/// One minted token, as the post step needs it to revoke.
#[derive(Debug, Clone)]
pub(crate) struct LedgerEntry {
    pub(crate) token: Secret,
    /// Expiry in GitHub's clock.
    pub(crate) expires_at: ServerTime,
    /// How far GitHub's clock ran ahead of ours when it was minted.
    pub(crate) clock_offset: Offset,
}

impl LedgerEntry {
    /// Whether it may still be live at `now` (our clock).
    pub(crate) fn is_live(&self, now: LocalTime) -> bool {
        self.expires_at > self.clock_offset.theirs(now)
    }
}

#[derive(Serialize, Deserialize)]
struct LedgerLine {
    token: String,
    expires_at: ServerTime,
    clock_offset: Offset,
}

/// Every token a store recorded, and where to revoke them (`None` in a ledger whose first line
/// is lost).
#[derive(Debug, Clone, Default)]
pub(crate) struct Ledger {
    pub(crate) api: Option<Server>,
    pub(crate) entries: Vec<LedgerEntry>,
}

impl Ledger {
    /// The ledger as its file holds it, `api` first.
    fn to_bytes(&self) -> Result<Vec<u8>, serde_json::Error> {
        let mut bytes = Vec::new();
        if let Some(api) = &self.api {
            serde_json::to_writer(&mut bytes, api)?;
            bytes.push(b'\n');
        }
        for entry in &self.entries {
            serde_json::to_writer(&mut bytes, &entry.line())?;
            bytes.push(b'\n');
        }
        Ok(bytes)
    }
}

impl LedgerEntry {
    fn line(&self) -> LedgerLine {
        LedgerLine {
            token: self.token.expose().to_owned(),
            expires_at: self.expires_at,
            clock_offset: self.clock_offset,
        }
    }
}

/// What re-minting needs, fixed by the main step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MintConfig {
    /// The API the tokens come from, and so are revoked at.
    #[serde(flatten)]
    pub(crate) api: Server,
    /// The git server the token is for (`https://github.com`).
    pub(crate) git_server: Url,
    pub(crate) source: TokenSource,
    /// The owner whose repositories the tokens reach, as GitHub spells it.
    pub(crate) account: String,
    /// The repositories and permissions asked for.
    pub(crate) request: TokenRequest,
    /// Seconds.
    pub(crate) refresh_after: u64,
}

impl MintConfig {
    /// GitHub Enterprise Server, where `gh` reads `GH_ENTERPRISE_TOKEN`.
    pub(crate) fn is_enterprise_server(&self) -> bool {
        self.git_server
            .host_str()
            .is_some_and(|host| !hosts::is_cloud(host))
    }
}

#[cfg(test)]
impl Server {
    pub(crate) fn example() -> Self {
        Self {
            url: Url::parse("https://api.github.com").unwrap(),
            ca_certificates: None,
        }
    }
}

#[cfg(test)]
impl StateDir {
    /// A store `s` in the folder `tmp`, of `tmp`'s owner, for tokens of GitHub.com.
    pub(crate) fn example(tmp: &Path) -> Self {
        let owner = Owner::of(tmp).expect("the folder's owner");
        Self::create(tmp, "s", owner, &Server::example()).expect("a store")
    }
}

#[cfg(test)]
impl MintConfig {
    /// A store of `Octo-Org`'s App installation on github.com, for `repositories`.
    pub(crate) fn example(repositories: &[&str]) -> Self {
        Self {
            api: Server::example(),
            git_server: Url::parse("https://github.com").unwrap(),
            source: TokenSource::App {
                issuer: "1".into(),
                installation: crate::github::Installation {
                    id: 1,
                    app_slug: "keeper".into(),
                    account: "Octo-Org".into(),
                },
                signer: Default::default(),
            },
            account: "Octo-Org".into(),
            request: TokenRequest {
                repositories: repositories.iter().map(|r| (*r).to_owned()).collect(),
                permissions: Default::default(),
            },
            refresh_after: 3000,
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
        clock_offset: Offset,
        now: LocalTime,
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
    pub(crate) at: LocalTime,
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
    pub(crate) last_erase_mint: Option<LocalTime>,
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
    pub(crate) fn renew(
        &mut self,
        token: Secret,
        expires_at: ServerTime,
        clock_offset: Offset,
        now: LocalTime,
    ) {
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
    /// Where its tokens come from, for the ledger's first line, when it was just made.
    api: Option<Server>,
}

impl StateDir {
    /// Create the job's folder `job` and the step's store `name` in it, each 0700 and owned by
    /// `owner`, for tokens from `api`; `job`'s own parent must exist. The step's folder may be
    /// there already (the runner runs a step again under the same name).
    pub(crate) fn create(
        job: &Path,
        name: &str,
        owner: Owner,
        api: &Server,
    ) -> Result<Self, FileError> {
        let path = job.join(name);
        create_private_dir(job, owner)?;
        create_private_dir(&path, owner)?;
        Self::mark(path, owner, api)
    }

    /// Create the store `path` alone, 0700 and `owner`'s, for tokens from `api`: a new folder, or
    /// an empty one, as `mktemp -d` makes; its parent must exist.
    pub(crate) fn create_at(path: &Path, owner: Owner, api: &Server) -> Result<Self, FileError> {
        create_private_dir(path, owner)?;
        let used = fs::read_dir(path)
            .map_err(at("read", path))?
            .next()
            .is_some();
        if used {
            return Err(at("use", path)(io::Error::other(
                "it holds files already: name a folder that does not exist yet, or an empty one",
            )));
        }
        Self::mark(path.to_owned(), owner, api)
    }

    /// Mark the folder `path` as a store of tokens from `api`.
    fn mark(path: PathBuf, owner: Owner, api: &Server) -> Result<Self, FileError> {
        let dir = Self {
            path,
            owner,
            api: Some(api.clone()),
        };
        dir.write_atomic(MARK, MARK_TEXT)?;
        Ok(dir)
    }

    /// An existing directory; what we write in it goes to the directory's owner.
    pub(crate) fn open(path: &Path) -> Result<Self, FileError> {
        let owner = Owner::of(path).map_err(at("open", path))?;
        Ok(Self {
            path: path.to_owned(),
            owner,
            api: None,
        })
    }

    /// An existing store, to be ended: `None` when nothing is at `path`. A link, a folder of
    /// another user's, or one that bears no mark of ours is refused: ending it would remove what
    /// is not ours.
    pub(crate) fn open_store(path: &Path) -> Result<Option<Self>, FileError> {
        let meta = match fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(at("read", path)(e)),
        };
        if !meta.is_dir() {
            return Err(at("use", path)(io::Error::other(
                "it is a link or a file, not a token-keeper store",
            )));
        }
        // One of someone else's is theirs.
        crate::private::check_mine(path, &meta)?;
        let dir = Self::open(path)?;
        let marked = fs::symlink_metadata(path.join(MARK)).is_ok_and(|m| m.is_file());
        if !marked {
            return Err(at("end", path)(io::Error::other(format!(
                "it is not a token-keeper store (setup marks its stores with a `{MARK}` file), so nothing in it was touched: check `--state` or `{}`",
                self::locate::STATE_VARIABLE
            ))));
        }
        Ok(Some(dir))
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

    /// Add a minted token to the ledger, durably, before anything else uses it; the first one
    /// after where its tokens come from, for a store just made.
    pub(super) fn record(&self, entry: &LedgerEntry) -> Result<(), FileError> {
        let path = self.path.join(LEDGER);
        let unwritable = |e: serde_json::Error| at("write a line for", &path)(io::Error::other(e));
        let mut text = serde_json::to_string(&entry.line()).map_err(unwritable)?;
        text.push('\n');
        let file = open_private(
            &path,
            OpenOptions::new().read(true).append(true),
            self.owner,
        )?;
        let length = file.metadata().map_err(at("read", &path))?.len();
        if let Some(api) = self.api.as_ref().filter(|_| length == 0) {
            let head = serde_json::to_string(api).map_err(unwritable)?;
            text.insert_str(0, &format!("{head}\n"));
        }
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
            Err(e) if e.kind() == io::ErrorKind::NotFound && self.is_retiring() => {
                Err(at("read", &path)(io::Error::other(ENDED)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(at("read", &path)(e)),
        }
    }

    /// Every token recorded, and where to revoke them. A line that does not read (cut off by a
    /// crash, damaged on disk) is skipped: one bad byte must not keep the other tokens from being
    /// revoked.
    pub(crate) fn ledger(&self) -> Result<Ledger, FileError> {
        let path = self.path.join(LEDGER);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Ledger::default()),
            Err(e) => return Err(at("read", &path)(e)),
        };
        let mut ledger = Ledger::default();
        for line in bytes.split(|b| *b == b'\n') {
            if let Ok(l) = serde_json::from_slice::<LedgerLine>(line) {
                if let Ok(token) = Secret::checked(l.token) {
                    ledger.entries.push(LedgerEntry {
                        token,
                        expires_at: l.expires_at,
                        clock_offset: l.clock_offset,
                    });
                }
            } else if let Ok(api) = serde_json::from_slice::<Server>(line) {
                ledger.api.get_or_insert(api);
            }
        }
        Ok(ledger)
    }

    /// Replace the ledger whole with `ledger`.
    pub(super) fn write_ledger(&self, ledger: &Ledger) -> Result<(), FileError> {
        let path = self.path.join(LEDGER);
        let bytes = ledger
            .to_bytes()
            .map_err(|e| at("write", &path)(io::Error::other(e)))?;
        self.write_atomic(LEDGER, &bytes)
    }

    /// Whether, at `now` (our clock), the store is one that a killed job left behind: every
    /// token it lists expired `ABANDONED_AFTER` ago or more; a store that lists none, made that
    /// long ago.
    pub(crate) fn is_abandoned(&self, now: LocalTime) -> bool {
        let Ok(ledger) = self.ledger() else {
            return false;
        };
        let last = match ledger
            .entries
            .iter()
            .map(|e| e.clock_offset.ours(e.expires_at))
            .max()
        {
            Some(expired) => expired,
            None => {
                let made = fs::metadata(self.path.join(MARK)).and_then(|m| m.modified());
                match made.map(|at| at.duration_since(std::time::UNIX_EPOCH)) {
                    Ok(Ok(since)) => LocalTime(i64::try_from(since.as_secs()).unwrap_or(i64::MAX)),
                    _ => return false,
                }
            }
        };
        now - last >= ABANDONED_AFTER
    }

    /// Whether the store's end has begun.
    pub(crate) fn is_retiring(&self) -> bool {
        fs::symlink_metadata(self.path.join(RETIRING)).is_ok()
    }

    /// Begin the store's end: nothing is minted or served from it after this.
    pub(super) fn begin_retiring(&self) -> Result<(), FileError> {
        self.write_atomic(RETIRING, b"")
    }

    /// Take the store's secrets out at once: the App's key and the cached token.
    pub(super) fn forget_secrets(&self) {
        for name in [KEY, STATE] {
            let path = self.path.join(name);
            if let Err(err) = fs::remove_file(&path)
                && err.kind() != io::ErrorKind::NotFound
            {
                tracing::debug!("cannot remove `{}` yet: {err}", path.display());
            }
        }
    }

    /// Remove the store: the files we write in it, while `lock` is held if it is given; then,
    /// once it is let go, the lock's file, the end's mark and the store's own mark, in that order,
    /// and the folder. (On Windows a file still open stays until it is closed, and keeps its
    /// folder.) A file of anyone else's keeps the folder, which is said; no link is followed.
    pub(crate) fn remove(&self, lock: Option<Guard<'_>>) -> Result<(), FileError> {
        let entries = match fs::read_dir(&self.path) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(at("read", &self.path)(e)),
        };
        let mut foreign = Vec::new();
        // The marks go last: a store cut short of its end is still one, and still ending.
        let last = [self::lock::LOCK, RETIRING, MARK];
        for entry in entries {
            let entry = entry.map_err(at("read", &self.path))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            let kind = entry.file_type().map_err(at("read", &path))?;
            let removed = if last.contains(&name.as_str()) {
                continue;
            } else if kind.is_dir()
                && (name.starts_with(GH_CONFIG_PREFIX) || name.starts_with(PROXY_PREFIX))
            {
                // std removes a tree without following the links in it.
                fs::remove_dir_all(&path)
            } else if !kind.is_dir() && is_ours(&name) {
                fs::remove_file(&path)
            } else {
                foreign.push(name);
                continue;
            };
            match removed {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(at("remove", &path)(e));
                }
                _ => {}
            }
        }
        if !foreign.is_empty() {
            // Their names are anyone's: shown as foreign text, and a few of them.
            let shown: Vec<String> = foreign
                .iter()
                .take(5)
                .map(|name| crate::messages::foreign(name))
                .collect();
            return Err(at("remove", &self.path)(io::Error::other(format!(
                "it holds {} file(s) token-keeper did not write ({}), so it was left in place",
                foreign.len(),
                crate::messages::quoted_list(&shown)
            ))));
        }
        drop(lock);
        for name in last {
            match fs::remove_file(self.path.join(name)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(at("remove", &self.path.join(name))(e));
                }
                _ => {}
            }
        }
        match fs::remove_dir(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(at("remove", &self.path)(e)),
            _ => Ok(()),
        }
    }
}

/// The names of the files a store holds: ours, and what an atomic write of one leaves when it is
/// cut short (`.NAME.` and tempfile's letters).
fn is_ours(name: &str) -> bool {
    const OURS: [&str; 7] = [
        LEDGER,
        STATE,
        KEY,
        RETIRING,
        MARK,
        PROXY_RECORD,
        self::lock::LOCK,
    ];
    OURS.contains(&name)
        || name.strip_prefix('.').is_some_and(|rest| {
            OURS.iter().any(|of| {
                rest.strip_prefix(of)
                    .is_some_and(|tail| tail.starts_with('.'))
            })
        })
}

/// Why a state file does not read as this token-keeper's state.
#[derive(Debug, thiserror::Error)]
enum UnreadState {
    /// Not a state at all: the detail says where (serde's message can quote a value of the
    /// file, a token among them).
    #[error("it {0}")]
    Unreadable(String),
    #[error(
        "it is of format {0}, and this token-keeper reads format {STATE_VERSION}: run the tools of the token-keeper step that wrote it"
    )]
    OtherFormat(u32),
}

impl UnreadState {
    fn unreadable(err: &serde_json::Error) -> Self {
        Self::Unreadable(json_error(err))
    }
}

/// The state in `bytes`, of this format only: another version of token-keeper wrote any other.
fn read_state(bytes: &[u8]) -> Result<State, UnreadState> {
    #[derive(Deserialize)]
    struct Versioned {
        version: u32,
    }
    match serde_json::from_slice::<State>(bytes) {
        Ok(state) if state.version == STATE_VERSION => Ok(state),
        Ok(state) => Err(UnreadState::OtherFormat(state.version)),
        // Read again only to word the error: another format need not read as this one.
        Err(err) => match serde_json::from_slice::<Versioned>(bytes) {
            Ok(versioned) if versioned.version != STATE_VERSION => {
                Err(UnreadState::OtherFormat(versioned.version))
            }
            Ok(_) => Err(UnreadState::unreadable(&err)),
            Err(probe) => Err(UnreadState::unreadable(&probe)),
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
    use crate::clock::{Offset, ServerTime};

    fn me(dir: &Path) -> Owner {
        Owner::of(dir).unwrap()
    }

    fn entry(token: &str, expires_at: i64) -> LedgerEntry {
        LedgerEntry {
            token: Secret::new(token.into()),
            expires_at: ServerTime(expires_at),
            clock_offset: Offset(0),
        }
    }

    fn tokens(dir: &StateDir) -> Vec<String> {
        dir.ledger()
            .unwrap()
            .entries
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
        let dir = StateDir::create(
            &tmp.path().join("a"),
            "b",
            me(tmp.path()),
            &Server::example(),
        )
        .unwrap();
        dir.record(&entry("one", 10)).unwrap();
        dir.record(&entry("two", 20)).unwrap();
        assert_eq!(tokens(&dir), ["one", "two"]);
    }

    #[test]
    fn a_cut_off_last_line_is_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::example(tmp.path());
        dir.record(&entry("one", 10)).unwrap();
        append(&dir, br#"{"token":"tw"#);
        assert_eq!(dir.ledger().unwrap().entries.len(), 1);
        // The next entry starts on a line of its own.
        dir.record(&entry("three", 30)).unwrap();
        assert_eq!(tokens(&dir), ["one", "three"]);
    }

    #[test]
    fn damaged_lines_are_skipped_and_the_rest_read() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::example(tmp.path());
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
        let dir = StateDir::create(
            &tmp.path().join("job"),
            "state",
            me(tmp.path()),
            &Server::example(),
        )
        .unwrap();
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
        let dir = StateDir::example(tmp.path());
        dir.write_atomic("cache", b"old").unwrap();
        dir.write_atomic("cache", b"new").unwrap();
        assert_eq!(fs::read(dir.path().join("cache")).unwrap(), b"new");
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!names.iter().any(|n| n.starts_with('.')), "{names:?}");
    }

    #[test]
    fn a_store_is_born_marked_with_where_to_revoke_and_ends_only_what_is_ours() {
        let tmp = tempfile::tempdir().unwrap();
        let api = Server {
            url: Url::parse("https://ghes.example/api/v3").unwrap(),
            ca_certificates: Some("-----BEGIN CERTIFICATE-----".into()),
        };
        let path = tmp.path().join("store");
        let dir = StateDir::create_at(&path, me(tmp.path()), &api).unwrap();
        assert!(
            !path.join(LEDGER).exists(),
            "no ledger before the first token"
        );
        dir.record(&entry("one", 10)).unwrap();
        dir.record(&entry("two", 20)).unwrap();
        let ledger = dir.ledger().unwrap();
        assert_eq!(ledger.api, Some(api.clone()));
        assert_eq!(tokens(&dir), ["one", "two"]);
        // Read back whole and written again, as an end that leaves some does.
        dir.write_ledger(&ledger).unwrap();
        assert_eq!(dir.ledger().unwrap().api, Some(api.clone()));
        assert_eq!(tokens(&dir), ["one", "two"]);
        assert!(StateDir::open_store(&path).unwrap().is_some());

        // What is not ours keeps the folder; what is goes.
        fs::write(path.join("notes.txt"), "mine").unwrap();
        fs::write(path.join(".state.json.Xa1b2c"), "cut short").unwrap();
        let err = dir.remove(None).unwrap_err().to_string();
        assert!(
            err.contains("`notes.txt`") && err.contains("left in place"),
            "{err}"
        );
        assert_eq!(fs::read_to_string(path.join("notes.txt")).unwrap(), "mine");
        assert!(!path.join(LEDGER).exists() && !path.join(".state.json.Xa1b2c").exists());
        assert!(path.join(MARK).exists(), "still a store, to end again");
        fs::remove_file(path.join("notes.txt")).unwrap();
        dir.remove(None).unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn a_folder_that_is_not_a_store_is_refused_and_left_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let project = tmp.path().join("project");
        fs::create_dir(&project).unwrap();
        fs::write(project.join("ledger"), "not ours").unwrap();
        let err = StateDir::open_store(&project).unwrap_err().to_string();
        assert!(err.contains("is not a token-keeper store"), "{err}");
        assert!(
            StateDir::open_store(&tmp.path().join("gone"))
                .unwrap()
                .is_none()
        );
        let err = StateDir::create_at(&project, me(tmp.path()), &Server::example())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("holds files already"), "{err}");
        assert_eq!(
            fs::read_to_string(project.join("ledger")).unwrap(),
            "not ours"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_link_to_a_store_is_not_ended() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("store");
        StateDir::create_at(&path, me(tmp.path()), &Server::example()).unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(StateDir::open_store(&link).is_err());
        assert!(path.join(MARK).exists());
    }

    #[test]
    fn a_store_is_abandoned_a_day_after_its_last_token_expired() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::example(tmp.path());
        dir.record(&entry("one", 1000)).unwrap();
        dir.record(&entry("two", 5000)).unwrap();
        assert!(!dir.is_abandoned(LocalTime(5000 + ABANDONED_AFTER - 1)));
        assert!(dir.is_abandoned(LocalTime(5000 + ABANDONED_AFTER)));
        // Listing none, by when it was made.
        let empty = StateDir::create(tmp.path(), "e", me(tmp.path()), &Server::example()).unwrap();
        assert!(!empty.is_abandoned(crate::clock::unix_now()));
        assert!(empty.is_abandoned(crate::clock::unix_now() + ABANDONED_AFTER + 5));
    }

    #[test]
    fn a_renewed_state_forgets_the_erase_and_the_failure() {
        let mut state = State::new(
            MintConfig::example(&[]),
            CachedToken {
                token: Secret::new("old".into()),
                lifetime: Lifetime {
                    minted_at: LocalTime(0),
                    expires_at: ServerTime(3600),
                    clock_offset: Offset(0),
                },
            },
        );
        state.erased = true;
        state.failure = Some(Failure {
            at: LocalTime(10),
            message: "down".into(),
        });
        state.renew(
            Secret::new("new".into()),
            ServerTime(7300),
            Offset(5),
            LocalTime(3700),
        );
        assert_eq!(state.token.token.expose(), "new");
        assert_eq!(
            (
                state.token.lifetime.minted_at,
                state.token.lifetime.clock_offset
            ),
            (LocalTime(3700), Offset(5))
        );
        assert!(!state.erased && state.failure.is_none());
        assert_eq!(state.last_erase_mint, Some(LocalTime(3700)));
    }

    #[test]
    fn a_state_round_trips_and_one_of_another_format_is_refused() {
        let state = State::new(
            MintConfig::example(&["app"]),
            CachedToken {
                token: Secret::new("ghs_round-trip".into()),
                lifetime: Lifetime {
                    minted_at: LocalTime(1),
                    expires_at: ServerTime(3601),
                    clock_offset: Offset(0),
                },
            },
        );
        let bytes = serde_json::to_vec(&state).unwrap();
        assert_eq!(read_state(&bytes).unwrap(), state);
        let mut older: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        older["version"] = 1.into();
        let err = read_state(&serde_json::to_vec(&older).unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("format 1"), "{err}");
        let damaged = read_state(br#"{"version": "ghs_quoted"}"#)
            .unwrap_err()
            .to_string();
        assert!(!damaged.contains("ghs_"), "{damaged}");
    }

    #[test]
    fn liveness_uses_the_recorded_clock_offset() {
        let mut e = entry("t", 1000);
        assert!(e.is_live(LocalTime(999)));
        assert!(!e.is_live(LocalTime(1000)));
        e.clock_offset = Offset(300); // GitHub five minutes ahead of us
        assert!(!e.is_live(LocalTime(800)));
        assert!(e.is_live(LocalTime(600)));
    }

    #[test]
    fn remove_deletes_everything_and_tolerates_absence() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("s");
        let dir = StateDir::example(tmp.path());
        dir.record(&entry("one", 10)).unwrap();
        // What a killed `exec --keep-fresh`, `exec --proxy` or `proxy start` left goes too.
        for folder in [GH_CONFIG_PREFIX, PROXY_PREFIX] {
            fs::create_dir(path.join(format!("{folder}4242"))).unwrap();
            fs::write(path.join(format!("{folder}4242/file.pem")), "x").unwrap();
        }
        dir.write_atomic(PROXY_RECORD, b"{}").unwrap();
        dir.remove(None).unwrap();
        assert!(!path.exists());
        dir.remove(None).unwrap();
    }
}
