//! The scoped git configuration in the user's global git config, for CIs whose steps share no
//! environment (Jenkins `sh` steps, Azure tasks): the entries go into a file of the store's own,
//! and one `include.path` entry in the global config names it, so that `revoke` removes exactly
//! what `setup` added and nothing else.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The file of entries, in the store.
const FILE: &str = "gitconfig";

fn file(store: &Path) -> PathBuf {
    store.join(FILE)
}

/// Write `entries` to the store's file, then name it in the global config.
pub(crate) fn install(store: &Path, entries: &[(String, String)]) -> Result<()> {
    let file = file(store);
    let path = file.to_string_lossy().into_owned();
    for (key, value) in entries {
        git(&["config", "--file", &path, "--add", key, value])?;
    }
    git(&["config", "--global", "--add", "include.path", &path])
        .context("cannot add token-keeper's entries to the global git config")
}

/// Whether setup wrote the store's file, and so named it in the global config.
pub(crate) fn installed(store: &Path) -> bool {
    file(store).exists()
}

/// Take the store's file out of the global config, where setup put it; nothing when it did not.
pub(crate) fn remove(store: &Path) -> Result<()> {
    if !installed(store) {
        return Ok(());
    }
    unset(store)?;
    let file = file(store);
    std::fs::remove_file(&file).with_context(|| format!("cannot remove `{}`", file.display()))
}

/// Take the global config's entry that names the store's file out, the file gone or not.
pub(crate) fn unset(store: &Path) -> Result<()> {
    let path = file(store).to_string_lossy().into_owned();
    let status = Command::new("git")
        .args([
            "config",
            "--global",
            "--fixed-value",
            "--unset-all",
            "include.path",
        ])
        .arg(&path)
        .status()
        .context("cannot run git")?;
    // Exit code 5: the entry is gone already.
    if !status.success() && status.code() != Some(5) {
        bail!("`git config --global --unset-all include.path {path}` failed ({status})");
    }
    Ok(())
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
            said.lines().next().unwrap_or_default()
        );
    }
    Ok(())
}
