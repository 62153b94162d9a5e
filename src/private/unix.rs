//! Private on Unix: 0600 and 0700, handed to the runner's user, never through a link.
//!
//! The main step runs as root in our container, and a later container action or `sudo git` may
//! too: whatever they write goes to the owner of the workspace, so the runner's user can read it
//! after them.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt, fchown};
use std::path::Path;

use tempfile::NamedTempFile;

use super::{FileError, NOT_OUR_FOLDER, at, refused};
use crate::env::Env;

/// Who owns what we write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Owner {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

impl Owner {
    /// This process's user and group: who owns what it writes for itself.
    pub(crate) fn me() -> Self {
        // SAFETY: geteuid and getegid have no preconditions and cannot fail.
        unsafe {
            Self {
                uid: libc::geteuid(),
                gid: libc::getegid(),
            }
        }
    }

    /// The owner of an existing path.
    pub(crate) fn of(path: &Path) -> io::Result<Self> {
        let meta = fs::metadata(path)?;
        Ok(Self {
            uid: meta.uid(),
            gid: meta.gid(),
        })
    }
}

/// Open or create a file 0600, handed to `owner` when new; never through a link. The no-follow
/// flag stops symbolic links only: a hard link an earlier step planted would have us write into,
/// and hand over, a file we do not own. So what we opened must be a plain file with one name,
/// ours or `owner`'s.
pub(crate) fn open_private(
    path: &Path,
    options: &mut OpenOptions,
    owner: Owner,
) -> Result<File, FileError> {
    let file = options
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(at("open", path))?;
    let meta = file.metadata().map_err(at("read", path))?;
    if !meta.is_file() || meta.nlink() != 1 {
        return Err(refused(
            path,
            "it is a hard link to another file, or not a plain file, so what we write could land elsewhere: remove it",
        ));
    }
    made_by_us_or(owner, path, &meta)?;
    give(&file, &meta, owner).map_err(at("hand over", path))?;
    Ok(file)
}

/// What we found at `path` must be this process's or `owner`'s: another user's file or folder
/// is theirs to read or replace.
fn made_by_us_or(owner: Owner, path: &Path, meta: &fs::Metadata) -> Result<(), FileError> {
    let uid = meta.uid();
    if uid == owner.uid || uid == Owner::me().uid {
        return Ok(());
    }
    Err(refused(
        path,
        format!(
            "it belongs to uid {uid}, not to the runner's user (uid {}): remove it",
            owner.uid
        ),
    ))
}

/// What we found at `path` (of metadata `meta`, not followed) must be this process's user's, but
/// for root, who ends any user's store.
pub(crate) fn check_mine(path: &Path, meta: &fs::Metadata) -> Result<(), FileError> {
    let me = Owner::me();
    if me.uid == 0 {
        return Ok(());
    }
    made_by_us_or(me, path, meta)
}

/// Create the folder `path` 0700, handed to `owner`. A folder that is already there must be a
/// folder, not a link, made by us or by `owner`; a loose mode is made private.
pub(crate) fn create_private_dir(path: &Path, owner: Owner) -> Result<(), FileError> {
    match DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(at("create", path)(e)),
    }
    let dir = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP | libc::ENOTDIR) => refused(path, NOT_OUR_FOLDER),
            _ => at("open", path)(e),
        })?;
    let meta = dir.metadata().map_err(at("read", path))?;
    made_by_us_or(owner, path, &meta)?;
    give(&dir, &meta, owner).map_err(at("hand over", path))?;
    if meta.mode() & 0o077 != 0 {
        dir.set_permissions(fs::Permissions::from_mode(0o700))
            .map_err(at("make private", path))?;
    }
    Ok(())
}

/// A new file in `dir`, named from `prefix`, of `mode` and handed to `owner`.
pub(super) fn temp_file(
    dir: &Path,
    prefix: &str,
    mode: u32,
    owner: Owner,
) -> Result<NamedTempFile, FileError> {
    let temp = tempfile::Builder::new()
        .prefix(prefix)
        .permissions(fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
        .map_err(at("create a file in", dir))?;
    let file = temp.as_file();
    file.metadata()
        .and_then(|meta| give(file, &meta, owner))
        .map_err(at("hand over", temp.path()))?;
    Ok(temp)
}

/// `fchown` `file` (of metadata `meta`) to `owner` when it is not already so; a non-root writer
/// cannot and need not.
fn give(file: &File, meta: &fs::Metadata, owner: Owner) -> io::Result<()> {
    if meta.uid() == owner.uid && meta.gid() == owner.gid {
        return Ok(());
    }
    match fchown(file, Some(owner.uid), Some(owner.gid)) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Ok(()),
        other => other,
    }
}

/// This user, as a folder of theirs is named apart from other users': the uid.
pub(crate) fn user_tag(_env: &Env) -> String {
    Owner::me().uid.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::private::write_atomic;

    #[test]
    fn a_loose_folder_of_ours_is_made_private_and_a_link_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let me = Owner::of(tmp.path()).unwrap();
        let loose = tmp.path().join("loose");
        fs::create_dir(&loose).unwrap();
        fs::set_permissions(&loose, fs::Permissions::from_mode(0o777)).unwrap();
        create_private_dir(&loose, me).unwrap();
        assert_eq!(fs::metadata(&loose).unwrap().mode() & 0o777, 0o700);

        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&loose, &link).unwrap();
        let err = create_private_dir(&link, me).unwrap_err().to_string();
        assert!(err.contains("is a link or a file"), "{err}");
    }

    #[test]
    fn a_planted_hard_link_is_not_written() {
        let tmp = tempfile::tempdir().unwrap();
        let me = Owner::of(tmp.path()).unwrap();
        let target = tmp.path().join("elsewhere");
        fs::write(&target, "untouched").unwrap();
        let link = tmp.path().join("ledger");
        fs::hard_link(&target, &link).unwrap();
        let opened = open_private(&link, OpenOptions::new().append(true), me);
        write_if_opened(&opened);
        assert_eq!(fs::read_to_string(&target).unwrap(), "untouched");
        let err = opened.unwrap_err().to_string();
        assert!(err.contains("hard link"), "{err}");
        assert!(open_private(&tmp.path().join("new"), OpenOptions::new().append(true), me).is_ok());
    }

    #[test]
    fn an_atomic_write_replaces_a_planted_link_not_its_target() {
        let tmp = tempfile::tempdir().unwrap();
        let me = Owner::of(tmp.path()).unwrap();
        let target = tmp.path().join("elsewhere");
        fs::write(&target, "untouched").unwrap();
        let link = tmp.path().join("state.json");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        write_atomic(&link, 0o600, me, |f| std::io::Write::write_all(f, b"new")).unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "untouched");
        assert_eq!(fs::read_to_string(&link).unwrap(), "new");
        assert_eq!(fs::metadata(&link).unwrap().mode() & 0o777, 0o600);
        assert_eq!(
            fs::read_dir(tmp.path()).unwrap().count(),
            2,
            "no temp file left"
        );
    }

    #[test]
    fn a_planted_link_is_not_opened() {
        let tmp = tempfile::tempdir().unwrap();
        let me = Owner::of(tmp.path()).unwrap();
        let target = tmp.path().join("elsewhere");
        fs::write(&target, "untouched").unwrap();
        let link = tmp.path().join("ledger");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let opened = open_private(&link, OpenOptions::new().append(true), me);
        write_if_opened(&opened);
        assert_eq!(fs::read_to_string(&target).unwrap(), "untouched");
        assert!(opened.is_err());
    }

    /// What a caller would do with a file `open_private` wrongly gave: write to it.
    fn write_if_opened(opened: &Result<File, FileError>) {
        if let Ok(mut file) = opened.as_ref() {
            std::io::Write::write_all(&mut file, b" and written").unwrap();
        }
    }
}
