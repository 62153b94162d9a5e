//! Private on Windows: folders whose DACL admits this user alone, never reached through a link.
//!
//! Windows has no mode to set and no owner to hand a file to. Each folder of ours gets a DACL
//! of one entry, this user's, that takes nothing from the folder above (`acl`); what we create
//! in it inherits that entry. A link where our folder or file goes (a symbolic link, a
//! junction: any reparse point) is refused, as on Unix.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::windows::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use tempfile::NamedTempFile;

use windows_sys::Win32::Storage::FileSystem::{
    FILE_FLAG_BACKUP_SEMANTICS, FILE_FLAG_OPEN_REPARSE_POINT, FILE_READ_ATTRIBUTES, READ_CONTROL,
    WRITE_DAC,
};

use super::acl;
use super::{FileError, NOT_OUR_FOLDER, at, refused, unfit};
use crate::env::Env;

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

/// Create the folder `path` with our DACL. A folder that is already there must be a folder, not
/// a link, and gets our DACL in place of its own.
pub(crate) fn create_private_dir(path: &Path, _owner: Owner) -> Result<(), FileError> {
    let created = match acl::create_dir(path) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
        Err(e) => return Err(at("create", path)(e)),
    };
    // The folder itself, not what a link there points to: checked and changed through one
    // handle.
    let folder = OpenOptions::new()
        .access_mode(READ_CONTROL | WRITE_DAC | FILE_READ_ATTRIBUTES)
        .custom_flags(FILE_FLAG_BACKUP_SEMANTICS | FILE_FLAG_OPEN_REPARSE_POINT)
        .open(path)
        .map_err(at("open", path))?;
    let meta = folder.metadata().map_err(at("read", path))?;
    if unfit(meta.file_attributes(), true) {
        return Err(refused(path, NOT_OUR_FOLDER));
    }
    if !created {
        acl::restrict(&folder).map_err(at("make private", path))?;
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

/// This user, as a folder of theirs is named apart from other users': the account's name, as
/// the process's `USERNAME` gives it.
pub(crate) fn user_tag(env: &Env) -> String {
    env.given("USERNAME").unwrap_or("user").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A link named `ledger` to a file that says "untouched", in a new folder.
    fn planted_file_link() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("elsewhere");
        fs::write(&target, "untouched").unwrap();
        let link = tmp.path().join("ledger");
        std::os::windows::fs::symlink_file(&target, &link).unwrap();
        (tmp, target, link)
    }

    // Creating symbolic links needs Developer Mode or an administrator, as on hosted runners.
    #[test]
    #[cfg_attr(
        wine,
        ignore = "wine 10.0 makes no links (`wine_makes_no_links` shows it): Windows' runners run it"
    )]
    fn a_planted_link_is_refused_where_our_file_or_folder_goes() {
        let (tmp, target, link) = planted_file_link();
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

    /// What keeps the test above from running under wine 10.0: its CreateSymbolicLinkW is a
    /// stub that returns TRUE and makes nothing (dlls/kernelbase/file.c). Once wine makes links,
    /// this fails, and the test above should run there too.
    #[cfg(wine)]
    #[test]
    fn wine_makes_no_links() {
        let (_tmp, _target, link) = planted_file_link();
        assert!(fs::symlink_metadata(&link).is_err(), "wine made a link");
    }

    #[test]
    fn our_folders_admit_this_user_alone_and_take_nothing_from_above() {
        let tmp = tempfile::tempdir().unwrap();
        let new = tmp.path().join("new");
        create_private_dir(&new, Owner).unwrap();
        let loose = tmp.path().join("loose");
        fs::create_dir(&loose).unwrap();
        let before = acl::dacl_of(&loose).unwrap();
        create_private_dir(&loose, Owner).unwrap();
        let ours = acl::Dacl::ours().unwrap();
        assert_ne!(before, ours, "a folder made by another has another DACL");
        assert_eq!(acl::dacl_of(&new).unwrap(), ours);
        assert_eq!(acl::dacl_of(&loose).unwrap(), ours);
        // Under wine 10.0 a new file takes no entry from its folder, only the mode that the umask
        // leaves (server/file.c `create_file`): there the folder's own mode keeps others out.
        #[cfg(not(wine))]
        {
            let file = new.join("ledger");
            open_private(&file, OpenOptions::new().append(true), Owner).unwrap();
            let inherited = acl::dacl_of(&file).unwrap();
            assert!(
                inherited
                    .entries
                    .iter()
                    .all(|e| ours.entries[0].sid == e.sid),
                "what we write there is ours alone: {inherited:?}"
            );
        }
    }
}
