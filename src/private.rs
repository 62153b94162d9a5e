//! Files and folders only the runner's user can read, never reached through a link.
//!
//! An earlier step of the job could have planted a link or a loose folder where we write;
//! neither is followed nor kept. How a file is kept private is the platform's (`unix`,
//! `windows`); writing one whole, by rename, is the same on both.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as platform;
#[cfg(windows)]
pub(crate) mod acl;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as platform;

pub(crate) use platform::{Owner, check_mine, create_private_dir, open_private, user_tag};

/// What a folder of ours found to be a link, or a file, is refused with.
const NOT_OUR_FOLDER: &str = "it is a link or a file where our folder goes, so what we write could land elsewhere: remove it";

/// A file operation that failed, with the path it was about. The cause is part of the message,
/// not a source of its own, so that a chain of errors does not print it twice.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} `{}`: {cause}", crate::messages::short(&.path.to_string_lossy()))]
pub(crate) struct FileError {
    action: &'static str,
    path: PathBuf,
    cause: io::Error,
}

impl FileError {
    pub(crate) fn is_not_found(&self) -> bool {
        self.cause.kind() == io::ErrorKind::NotFound
    }
}

/// The error of `action` on `path`, for `map_err`.
pub(crate) fn at(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> FileError {
    let path = path.to_owned();
    move |cause| FileError {
        action,
        path,
        cause,
    }
}

/// `path` refused for `why`.
fn refused(path: &Path, why: impl Into<String>) -> FileError {
    at("use", path)(io::Error::other(why.into()))
}

/// Replace `target` whole with what `write` puts in a new file beside it: private (on Unix of
/// `mode`, handed to `owner`), synced, then renamed over `target`, so a reader sees the old file
/// or the new one, never half of one; the rename replaces a link planted there, never its
/// target.
pub(crate) fn write_atomic(
    target: &Path,
    mode: u32,
    owner: Owner,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<(), FileError> {
    let dir = target.parent().unwrap_or(Path::new("."));
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut temp = platform::temp_file(dir, &format!(".{name}."), mode, owner)?;
    write(temp.as_file_mut()).map_err(at("write", temp.path()))?;
    temp.as_file().sync_all().map_err(at("sync", temp.path()))?;
    // `keep` makes it an ordinary file (tempfile marks it temporary on Windows); std's rename,
    // unlike tempfile's `persist`, replaces on Windows a file that a reader has open.
    let temp = temp
        .into_temp_path()
        .keep()
        .map_err(|e| at("keep", &e.path)(e.error))?;
    std::fs::rename(&temp, target).map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        at("replace", target)(e)
    })
}

/// Whether Windows file attributes make a path unfit for our folder (`folder`) or file: any
/// reparse point (a symbolic link, a junction, a mount point) could send what we write
/// elsewhere, and so could the other kind of entry.
#[cfg(any(windows, test))]
fn unfit(attributes: u32, folder: bool) -> bool {
    const FILE_ATTRIBUTE_DIRECTORY: u32 = 0x10;
    const FILE_ATTRIBUTE_REPARSE_POINT: u32 = 0x400;
    attributes & FILE_ATTRIBUTE_REPARSE_POINT != 0
        || (attributes & FILE_ATTRIBUTE_DIRECTORY != 0) != folder
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_refuses_any_reparse_point_and_the_wrong_kind() {
        const READONLY: u32 = 0x1;
        const DIRECTORY: u32 = 0x10;
        const ARCHIVE: u32 = 0x20;
        const REPARSE_POINT: u32 = 0x400;
        assert!(!unfit(DIRECTORY, true), "a plain folder");
        assert!(!unfit(ARCHIVE, false), "a plain file");
        assert!(
            !unfit(ARCHIVE | READONLY, false),
            "other attributes do not matter"
        );
        assert!(
            unfit(DIRECTORY | REPARSE_POINT, true),
            "a junction or a folder link"
        );
        assert!(unfit(ARCHIVE | REPARSE_POINT, false), "a file link");
        assert!(unfit(REPARSE_POINT, false), "a dangling link");
        assert!(unfit(ARCHIVE, true), "a file where our folder goes");
        assert!(unfit(DIRECTORY, false), "a folder where our file goes");
    }
}
