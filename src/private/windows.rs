//! Private on Windows: where the folder's ACL keeps other users out, never through a link.
//!
//! Windows has no mode to set and no owner to hand a file to. Our folders sit in the runner's
//! `RUNNER_TEMP` or the user's profile, whose ACLs admit only that user (and administrators),
//! and what we create there inherits them. A link where our folder or file goes (a symbolic
//! link, a junction: any reparse point) is refused, as on Unix.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::windows::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use tempfile::NamedTempFile;

use super::{FileError, NOT_OUR_FOLDER, at, refused, unfit};

/// Open the reparse point itself rather than what it points to, so that a link is seen, not
/// followed.
const FILE_FLAG_OPEN_REPARSE_POINT: u32 = 0x0020_0000;

/// Who owns what we write: on Windows, the user who writes it, with nobody to hand it to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Owner;

impl Owner {
    /// This process's user.
    pub(crate) fn me() -> Self {
        Owner
    }

    /// Whoever wrote an existing path; an error when there is none, as on Unix.
    pub(crate) fn of(path: &Path) -> io::Result<Self> {
        fs::metadata(path).map(|_| Owner)
    }
}

/// What we found at `path`: on Windows, the ACL of the folder it is in decides who made it.
pub(crate) fn check_mine(_path: &Path, _meta: &fs::Metadata) -> Result<(), FileError> {
    Ok(())
}

/// Open or create a file; never through a link. The link itself is opened, and refused before
/// anything is written.
pub(crate) fn open_private(
    path: &Path,
    options: &mut OpenOptions,
    _owner: Owner,
) -> Result<File, FileError> {
    let file = options
        .create(true)
        .custom_flags(FILE_FLAG_OPEN_REPARSE_POINT)
        .open(path)
        .map_err(at("open", path))?;
    let meta = file.metadata().map_err(at("read", path))?;
    if unfit(meta.file_attributes(), false) {
        return Err(refused(
            path,
            "it is a link, or not a plain file, so what we write could land elsewhere: remove it",
        ));
    }
    Ok(file)
}

/// Create the folder `path`. A folder that is already there must be a folder, not a link.
pub(crate) fn create_private_dir(path: &Path, _owner: Owner) -> Result<(), FileError> {
    match fs::create_dir(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(at("create", path)(e)),
    }
    let meta = fs::symlink_metadata(path).map_err(at("read", path))?;
    if unfit(meta.file_attributes(), true) {
        return Err(refused(path, NOT_OUR_FOLDER));
    }
    Ok(())
}

/// A new file in `dir`, named from `prefix`; it takes the folder's ACL, as Windows has no mode.
pub(super) fn temp_file(
    dir: &Path,
    prefix: &str,
    _mode: u32,
    _owner: Owner,
) -> Result<NamedTempFile, FileError> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempfile_in(dir)
        .map_err(at("create a file in", dir))
}

/// This user, as a folder of theirs is named apart from other users': the account's name.
pub(crate) fn user_tag() -> String {
    std::env::var("USERNAME").unwrap_or_else(|_| "user".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Creating symbolic links needs Developer Mode or an administrator, as on hosted runners.
    #[test]
    fn a_planted_link_is_refused_where_our_file_or_folder_goes() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("elsewhere");
        fs::write(&target, "untouched").unwrap();
        let link = tmp.path().join("ledger");
        std::os::windows::fs::symlink_file(&target, &link).unwrap();
        let opened = open_private(&link, OpenOptions::new().append(true), Owner);
        // What a caller would do with a file wrongly given: write to it.
        if let Ok(mut file) = opened.as_ref() {
            std::io::Write::write_all(&mut file, b" and written").unwrap();
        }
        assert_eq!(fs::read_to_string(&target).unwrap(), "untouched");
        let err = opened.unwrap_err().to_string();
        assert!(err.contains("is a link"), "{err}");

        let folder = tmp.path().join("folder");
        fs::create_dir(&folder).unwrap();
        let folder_link = tmp.path().join("state");
        std::os::windows::fs::symlink_dir(&folder, &folder_link).unwrap();
        let err = create_private_dir(&folder_link, Owner)
            .unwrap_err()
            .to_string();
        assert!(err.contains("is a link or a file"), "{err}");
        assert!(create_private_dir(&folder, Owner).is_ok());
        assert!(open_private(&folder.join("new"), OpenOptions::new().append(true), Owner).is_ok());
    }
}
