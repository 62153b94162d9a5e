//! The scoped git configuration in the user's global git config, for CIs whose steps share no
//! environment (Jenkins `sh` steps, Azure tasks): the entries go into a file of ours, and one
//! `include.path` entry in the global config names it, so that `revoke` takes out exactly what
//! `setup` added and nothing else.
//!
//! The included file lives in `token-keeper/` of the user's configuration folder (private to the
//! user, in the home), never in a temporary folder: a global config that still names it after
//! the job (the job killed, git's lock held at the end) names a file that only the user can
//! create, and git skips an included file that is gone. The global config is the file
//! `git config --global` writes (`GIT_CONFIG_GLOBAL`, else `~/.gitconfig`, else the XDG one when
//! only it exists), edited under git's own lock (`<file>.lock`): our entry is appended, and a
//! record beside the included file says what was added, so that the end restores the file byte
//! for byte (or removes it, when setup made it), or takes out only our entry when someone else
//! changed the file meanwhile.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ring::digest;
use serde::{Deserialize, Serialize};

use crate::env::Env;
use crate::keeper::store::StateDir;
use crate::messages;
use crate::private::{Owner, check_mine, create_private_dir, write_atomic};

/// How long an edit waits for git's lock on the global config.
const LOCK_PATIENCE: Duration = Duration::from_secs(2);

/// What setup added to the global config for a store, kept beside the included file.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    /// The store whose helper the entries run.
    store: PathBuf,
    /// The global config, links resolved, as setup edited it.
    config: PathBuf,
    /// Whether it existed before setup.
    existed: bool,
    /// The bytes setup appended.
    added: String,
    /// The keys of the included file, to tell two jobs' helpers apart.
    keys: Vec<String>,
}

/// Write `entries` (git's helper for the store `store`) to a file of ours, and name it in the
/// global config. Another live store's helper for any of the same URLs is refused: the last
/// included file's helper would answer for both jobs. An entry whose store is gone is taken
/// out first.
pub(crate) fn install(store: &Path, entries: &[(String, String)], env: &Env) -> Result<()> {
    install_with(env, store, entries)
        .context("cannot add token-keeper's entries to the global git config")
}

fn install_with(env: &Env, store: &Path, entries: &[(String, String)]) -> Result<()> {
    let folder = folder(env)?;
    let keys: Vec<String> = entries.iter().map(|(key, _)| key.clone()).collect();
    for (other, record) in records(&folder) {
        if record.store == store {
            continue;
        }
        if !is_live(&record.store) {
            let _ = take_out(&folder, &other, &record);
        } else if let Some(key) = keys.iter().find(|key| record.keys.contains(key)) {
            bail!(
                "the global git config already has token-keeper's entry `{}` for the store `{}`, of another job of this user: two jobs that share a home take each other's helper; give each its own `HOME` or `GIT_CONFIG_GLOBAL`, or use `--git-config env`",
                messages::short(key),
                messages::short(&record.store.to_string_lossy())
            );
        }
    }
    let id = id_of(store);
    let included = folder.join(format!("{id}.gitconfig"));
    let path = included.to_string_lossy().into_owned();
    let _ = fs::remove_file(&included);
    for (key, value) in entries {
        git(&["config", "--file", &path, "--add", key, value])?;
    }
    let block = format!("[include]\n\tpath = {}\n", quoted(&path)?);
    let config = global_config(env)?;
    edit(&config, |target, current| {
        let separator = match current {
            Some(text) if !text.is_empty() && !text.ends_with(b"\n") => "\n",
            _ => "",
        };
        let record = Record {
            store: store.to_owned(),
            config: target.to_owned(),
            existed: current.is_some(),
            added: format!("{separator}{block}"),
            keys,
        };
        // Kept before the config changes: a setup killed meanwhile leaves what undoes it.
        write_record(&folder, &id, &record)?;
        let mut text = current.unwrap_or_default().to_vec();
        text.extend_from_slice(record.added.as_bytes());
        Ok(Edit::Write(text))
    })?;
    Ok(())
}

/// Take the store's entry out of the global config, where setup put it, whether the store is
/// still there or not: whether there was one. When the entry cannot be taken out, its included
/// file goes all the same, which leaves the entry harmless, and the error says what to do.
pub(crate) fn remove(store: &Path, env: &Env) -> Result<bool> {
    let Some(folder) = existing_folder(env) else {
        return Ok(false);
    };
    let id = id_of(store);
    let Some(record) = read_record(&folder, &id) else {
        return Ok(false);
    };
    take_out(&folder, &id, &record)?;
    Ok(true)
}

/// Take out every entry whose store is gone or being ended (its job was killed, or its end could
/// not take it out): how many went. Another job's live helper is left alone.
pub(crate) fn remove_stale(env: &Env) -> Result<usize> {
    let Some(folder) = existing_folder(env) else {
        return Ok(0);
    };
    let mut removed = 0;
    for (id, record) in records(&folder) {
        if !is_live(&record.store) {
            take_out(&folder, &id, &record)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// The store's entries gone from the global config, then their files.
fn take_out(folder: &Path, id: &str, record: &Record) -> Result<()> {
    let included = folder.join(format!("{id}.gitconfig"));
    let _ = fs::remove_file(&included);
    let path = included.to_string_lossy().into_owned();
    let added = record.added.as_bytes();
    let undone = edit(&record.config, |_, current| {
        let Some(text) = current else {
            return Ok(Edit::Keep);
        };
        if text == added && !record.existed {
            return Ok(Edit::Delete);
        }
        // Ours is last unless someone appended after it: then only ours goes.
        let at = if text.ends_with(added) {
            Some(text.len() - added.len())
        } else {
            text.windows(added.len().max(1)).position(|w| w == added)
        };
        Ok(match at {
            Some(at) => {
                let mut kept = text[..at].to_vec();
                kept.extend_from_slice(&text[at + added.len()..]);
                Edit::Write(kept)
            }
            None => Edit::Unset,
        })
    });
    let undone = undone.and_then(|edit| match edit {
        Edit::Unset => unset(&record.config, &path),
        _ => Ok(()),
    });
    if let Err(err) = undone {
        bail!(
            "cannot take token-keeper's entry out of the global git config `{}` ({err:#}): its file is gone, so it is harmless; remove the line `path = {}` by hand, or run `token-keeper revoke` again",
            messages::short(&record.config.to_string_lossy()),
            messages::short(&path)
        );
    }
    let _ = fs::remove_file(folder.join(format!("{id}.json")));
    // Setup made the file: to later entries it was there before them, but it was not before us.
    if !record.existed {
        for (other, mut later) in records(folder) {
            if later.config == record.config && later.existed {
                later.existed = false;
                write_record(folder, &other, &later)?;
            }
        }
    }
    Ok(())
}

/// Whether the store `store` may still serve a job: there, ours, and not being ended.
fn is_live(store: &Path) -> bool {
    matches!(StateDir::open_store(store), Ok(Some(dir)) if !dir.is_retiring())
}

/// What an edit of the global config does with the file it found.
enum Edit {
    Write(Vec<u8>),
    Delete,
    Keep,
    /// Our bytes are not in it as we wrote them: git takes the entry out, once the lock is off.
    Unset,
}

/// Edit `config` under git's lock: `change` is given the file's path (links resolved) and its
/// bytes (`None` when there is none), and says what becomes of it. The file keeps its mode.
fn edit(config: &Path, change: impl FnOnce(&Path, Option<&[u8]>) -> Result<Edit>) -> Result<Edit> {
    // As git does: a linked config (dotfiles) is edited where it lives, the link kept.
    let target = fs::canonicalize(config).unwrap_or_else(|_| config.to_owned());
    let mut lock_path = target.clone().into_os_string();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let started = Instant::now();
    let mut lock = loop {
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&lock_path)
        {
            Ok(file) => break file,
            Err(e)
                if e.kind() == io::ErrorKind::AlreadyExists
                    && started.elapsed() < LOCK_PATIENCE =>
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => bail!(
                "git's lock `{}` is held (another git is writing the config, or one was killed: then remove the lock)",
                messages::short(&lock_path.to_string_lossy())
            ),
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "cannot lock `{}`",
                        messages::short(&target.to_string_lossy())
                    )
                });
            }
        }
    };
    let done = (|| {
        let current = match fs::read(&target) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "cannot read `{}`",
                        messages::short(&target.to_string_lossy())
                    )
                });
            }
        };
        let edit = change(&target, current.as_deref())?;
        match &edit {
            Edit::Write(bytes) => {
                lock.write_all(bytes)?;
                if let Ok(meta) = fs::metadata(&target) {
                    lock.set_permissions(meta.permissions())?;
                }
                lock.sync_all()?;
                fs::rename(&lock_path, &target)?;
            }
            Edit::Delete => fs::remove_file(&target)?,
            Edit::Keep | Edit::Unset => {}
        }
        Ok(edit)
    })();
    let _ = fs::remove_file(&lock_path);
    done
}

/// git takes `include.path = path` out of `config`: for a config someone rewrote.
fn unset(config: &Path, path: &str) -> Result<()> {
    let status = Command::new("git")
        .arg("config")
        .arg("--file")
        .arg(config)
        .args(["--fixed-value", "--unset-all", "include.path", path])
        .status()
        .context("cannot run git")?;
    // Exit code 5: the entry is gone already.
    if !status.success() && status.code() != Some(5) {
        bail!("`git config --unset-all include.path` failed ({status})");
    }
    Ok(())
}

/// The file `git config --global` edits: `GIT_CONFIG_GLOBAL`, else `~/.gitconfig`, unless only
/// the XDG file (`$XDG_CONFIG_HOME/git/config`, or `~/.config/git/config`) exists.
fn global_config(env: &Env) -> Result<PathBuf> {
    if let Some(file) = env.given("GIT_CONFIG_GLOBAL") {
        return Ok(PathBuf::from(file));
    }
    let home = home(env)?;
    let user = home.join(".gitconfig");
    let xdg = config_home(env, &home).join("git").join("config");
    Ok(if !user.exists() && xdg.exists() {
        xdg
    } else {
        user
    })
}

/// Our folder in the user's configuration folder, private to the user.
fn folder(env: &Env) -> Result<PathBuf> {
    let home = home(env)?;
    if !home.is_dir() {
        bail!(
            "the home folder `{}` is not there, so there is no global git config: set `HOME`, or use `--git-config env`",
            messages::short(&home.to_string_lossy())
        );
    }
    let parent = config_home(env, &home);
    fs::create_dir_all(&parent).with_context(|| {
        format!(
            "cannot create `{}`",
            messages::short(&parent.to_string_lossy())
        )
    })?;
    let folder = parent.join("token-keeper");
    create_private_dir(&folder, Owner::me())?;
    Ok(folder)
}

/// Our folder, when setup made one: an end creates nothing.
fn existing_folder(env: &Env) -> Option<PathBuf> {
    let home = home(env).ok()?;
    let folder = config_home(env, &home).join("token-keeper");
    let meta = fs::symlink_metadata(&folder).ok()?;
    (meta.is_dir() && check_mine(&folder, &meta).is_ok()).then_some(folder)
}

fn home(env: &Env) -> Result<PathBuf> {
    let home = env.given("HOME").or_else(|| env.given("USERPROFILE"));
    match home {
        Some(home) => Ok(PathBuf::from(home)),
        None => bail!(
            "`HOME` is not set, so there is no global git config: set it, or use `--git-config env`"
        ),
    }
}

fn config_home(env: &Env, home: &Path) -> PathBuf {
    env.given("XDG_CONFIG_HOME")
        .map_or_else(|| home.join(".config"), PathBuf::from)
}

/// A store's name among our files: its path's SHA-256, short.
fn id_of(store: &Path) -> String {
    let hash = digest::digest(&digest::SHA256, store.to_string_lossy().as_bytes());
    hash.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn write_record(folder: &Path, id: &str, record: &Record) -> Result<()> {
    let bytes = serde_json::to_vec(record)?;
    write_atomic(
        &folder.join(format!("{id}.json")),
        0o600,
        Owner::me(),
        |file| file.write_all(&bytes),
    )?;
    Ok(())
}

fn read_record(folder: &Path, id: &str) -> Option<Record> {
    let bytes = fs::read(folder.join(format!("{id}.json"))).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Every record in our folder, by id.
fn records(folder: &Path) -> Vec<(String, Record)> {
    let Ok(entries) = fs::read_dir(folder) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let id = name.strip_suffix(".json")?.to_owned();
            let record = read_record(folder, &id)?;
            Some((id, record))
        })
        .collect()
}

/// `value` as a git config value: quoted, its backslashes and quotes escaped.
fn quoted(value: &str) -> Result<String> {
    if value.contains(['\n', '\r']) {
        bail!("the path `{}` holds a line break", messages::short(value));
    }
    Ok(format!(
        "\"{}\"",
        value.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

fn git(args: &[&str]) -> Result<()> {
    let out = Command::new("git")
        .args(args)
        .output()
        .context("cannot run git, which `--git-config global` needs")?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr);
        bail!(
            "`git {}` failed: {}",
            args[..2].join(" "),
            messages::foreign(said.lines().next().unwrap_or_default())
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &Path)]) -> Env {
        Env::from_pairs(pairs.iter().map(|(k, v)| (*k, v.to_string_lossy())))
    }

    #[test]
    fn the_global_config_is_the_one_git_writes() {
        let home = tempfile::tempdir().unwrap();
        let h = home.path();
        let var = vars(&[("HOME", h)]);
        assert_eq!(global_config(&var).unwrap(), h.join(".gitconfig"));
        fs::create_dir_all(h.join(".config/git")).unwrap();
        fs::write(h.join(".config/git/config"), "").unwrap();
        assert_eq!(global_config(&var).unwrap(), h.join(".config/git/config"));
        fs::write(h.join(".gitconfig"), "").unwrap();
        assert_eq!(global_config(&var).unwrap(), h.join(".gitconfig"));
        let chosen = h.join("chosen");
        let var = vars(&[("HOME", h), ("GIT_CONFIG_GLOBAL", &chosen)]);
        assert_eq!(global_config(&var).unwrap(), chosen);
    }

    #[test]
    fn values_are_quoted_for_git() {
        assert_eq!(quoted(r#"C:\a "b""#).unwrap(), r#""C:\\a \"b\"""#);
        assert!(quoted("a\nb").is_err());
    }

    #[test]
    fn an_edit_takes_gits_lock_and_waits_for_it_no_longer_than_its_patience() {
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("config");
        fs::write(&config, "[user]\n").unwrap();
        fs::write(tmp.path().join("config.lock"), "").unwrap();
        let started = Instant::now();
        let err = edit(&config, |_, _| Ok(Edit::Delete)).err().unwrap();
        assert!(started.elapsed() >= LOCK_PATIENCE);
        assert!(err.to_string().contains("lock"), "{err}");
        assert!(config.exists(), "untouched while the lock is held");
        fs::remove_file(tmp.path().join("config.lock")).unwrap();
        edit(&config, |_, current| {
            assert_eq!(current, Some(&b"[user]\n"[..]));
            Ok(Edit::Write(b"[user]\n\tname = x\n".to_vec()))
        })
        .unwrap();
        assert_eq!(fs::read_to_string(&config).unwrap(), "[user]\n\tname = x\n");
        assert!(
            !tmp.path().join("config.lock").exists(),
            "the lock is let go"
        );
    }
}
