//! Who may open our folders on Windows: this user alone, by a DACL of one entry that takes
//! nothing from the folder above it; and a folder's DACL, read back.
//!
//! What we create in such a folder inherits the one entry, so files need no DACL of their own.

use std::io;
use std::mem::{size_of, zeroed};
use std::os::windows::ffi::OsStrExt;
use std::os::windows::io::AsRawHandle;
use std::path::Path;
use std::ptr::null_mut;

use windows_sys::Win32::Foundation::{CloseHandle, ERROR_SUCCESS, HANDLE, LocalFree, WIN32_ERROR};
use windows_sys::Win32::Security::Authorization::{
    ConvertSidToStringSidW, GetNamedSecurityInfoW, SE_FILE_OBJECT,
};
use windows_sys::Win32::Security::{
    ACCESS_ALLOWED_ACE, ACE_HEADER, ACL, ACL_REVISION, AddAccessAllowedAceEx,
    CONTAINER_INHERIT_ACE, DACL_SECURITY_INFORMATION, GetAce, GetLengthSid,
    GetSecurityDescriptorControl, GetTokenInformation, InitializeAcl, InitializeSecurityDescriptor,
    OBJECT_INHERIT_ACE, PROTECTED_DACL_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR, PSID,
    SE_DACL_PROTECTED, SECURITY_ATTRIBUTES, SECURITY_DESCRIPTOR, SetKernelObjectSecurity,
    SetSecurityDescriptorControl, SetSecurityDescriptorDacl, TOKEN_QUERY, TOKEN_USER, TokenUser,
};
use windows_sys::Win32::Storage::FileSystem::{CreateDirectoryW, FILE_ALL_ACCESS};
use windows_sys::Win32::System::SystemServices::{
    ACCESS_ALLOWED_ACE_TYPE, SECURITY_DESCRIPTOR_REVISION,
};
use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};

/// The one entry's flags: every file and folder below inherits it.
const INHERIT: u32 = OBJECT_INHERIT_ACE | CONTAINER_INHERIT_ACE;
/// The same flags, as an entry read back holds them.
pub const INHERITED_BELOW: u8 = INHERIT as u8;

/// The one entry's rights: all of them.
pub const ALL_RIGHTS: u32 = FILE_ALL_ACCESS;

/// One entry of a DACL, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Whether it allows (or denies) what it names.
    pub allows: bool,
    /// Whom it is about, as `S-1-…`.
    pub sid: String,
    pub rights: u32,
    pub flags: u8,
}

/// A folder's DACL, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dacl {
    /// Whether it takes nothing from the folder above.
    pub protected: bool,
    pub entries: Vec<Entry>,
}

impl Dacl {
    /// The DACL our folders have, read back: this user's one entry, protected.
    #[cfg(not(wine))]
    pub fn ours() -> io::Result<Self> {
        Ok(Dacl {
            protected: true,
            entries: vec![mine()?],
        })
    }

    /// The DACL our folders have, read back under wine 10.0, which keeps a DACL only as the
    /// Unix mode it maps to and reads back one made from that mode: Local System's entry, then
    /// this user's, and nobody else's (server/change.c `dir_set_sd`, server/file.c
    /// `sd_to_mode`, `mode_to_sd`).
    #[cfg(wine)]
    pub fn ours() -> io::Result<Self> {
        let system = Entry {
            sid: "S-1-5-18".to_owned(),
            ..mine()?
        };
        Ok(Dacl {
            protected: false,
            entries: vec![system, mine()?],
        })
    }
}

/// The one entry our folders get: this user's, with every right, inherited below.
fn mine() -> io::Result<Entry> {
    Ok(Entry {
        allows: true,
        sid: sid_string(Me::now()?.sid())?,
        rights: ALL_RIGHTS,
        flags: INHERITED_BELOW,
    })
}

/// This process's user, and the security descriptor that admits them alone.
struct Me {
    /// The user's SID, then the ACL: both DWORD-aligned, as Windows reads them.
    sid: Vec<u32>,
    _acl: Vec<u32>,
    /// Protected, with the ACL as its DACL: it points into `_acl`'s buffer, which stays put.
    descriptor: SECURITY_DESCRIPTOR,
}

impl Me {
    fn now() -> io::Result<Self> {
        let sid = user_sid()?;
        let psid = sid.as_ptr() as PSID;
        // SAFETY: `psid` points to a valid SID the token gave.
        let sid_size = unsafe { GetLengthSid(psid) } as usize;
        let size = size_of::<ACL>() + size_of::<ACCESS_ALLOWED_ACE>() - size_of::<u32>() + sid_size;
        let mut acl = vec![0u32; size.div_ceil(4)];
        let acl_size = (acl.len() * 4) as u32;
        let pacl: *mut ACL = acl.as_mut_ptr().cast();
        // SAFETY: an all-zero SECURITY_DESCRIPTOR is what InitializeSecurityDescriptor overwrites.
        let mut descriptor: SECURITY_DESCRIPTOR = unsafe { zeroed() };
        let sd = (&raw mut descriptor).cast();
        // SAFETY: `acl` is a writable, aligned buffer of `acl_size` bytes, initialised with room
        // for the one entry; `sd` is a local descriptor given that ACL.
        unsafe {
            succeeded(InitializeAcl(pacl, acl_size, ACL_REVISION))?;
            succeeded(AddAccessAllowedAceEx(
                pacl,
                ACL_REVISION,
                INHERIT,
                ALL_RIGHTS,
                psid,
            ))?;
            succeeded(InitializeSecurityDescriptor(
                sd,
                SECURITY_DESCRIPTOR_REVISION,
            ))?;
            succeeded(SetSecurityDescriptorDacl(sd, 1, pacl, 0))?;
            succeeded(SetSecurityDescriptorControl(
                sd,
                SE_DACL_PROTECTED,
                SE_DACL_PROTECTED,
            ))?;
        }
        Ok(Me {
            sid,
            _acl: acl,
            descriptor,
        })
    }

    fn sid(&self) -> PSID {
        self.sid.as_ptr() as PSID
    }

    fn descriptor(&mut self) -> PSECURITY_DESCRIPTOR {
        (&raw mut self.descriptor).cast()
    }
}

/// Create the folder `path` with our DACL from its first instant: no handle is ever opened on
/// it under the DACL it would have inherited.
pub(super) fn create_dir(path: &Path) -> io::Result<()> {
    let mut me = Me::now()?;
    let attributes = SECURITY_ATTRIBUTES {
        nLength: size_of::<SECURITY_ATTRIBUTES>() as u32,
        lpSecurityDescriptor: me.descriptor(),
        bInheritHandle: 0,
    };
    // SAFETY: the path is NUL-terminated and the attributes valid for the call.
    succeeded(unsafe { CreateDirectoryW(wide(path).as_ptr(), &attributes) })
}

/// Give the folder open as `folder` our DACL, in place of whatever it had. The descriptor is
/// set as it is: SetSecurityInfo would merge in what the folder above hands down, and wine
/// 10.0's does so even when told not to (dlls/advapi32/security.c).
pub(super) fn restrict(folder: &std::fs::File) -> io::Result<()> {
    let mut me = Me::now()?;
    // SAFETY: the handle is open with WRITE_DAC and the descriptor valid for the call.
    succeeded(unsafe {
        SetKernelObjectSecurity(
            folder.as_raw_handle() as HANDLE,
            DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION,
            me.descriptor(),
        )
    })
}

/// The DACL of `path`, read back.
pub fn dacl_of(path: &Path) -> io::Result<Dacl> {
    let mut dacl: *mut ACL = null_mut();
    let mut sd = null_mut();
    // SAFETY: the path is NUL-terminated; on success `sd` holds what LocalFree releases, and
    // `dacl` points into it.
    done(unsafe {
        GetNamedSecurityInfoW(
            wide(path).as_ptr(),
            SE_FILE_OBJECT,
            DACL_SECURITY_INFORMATION,
            null_mut(),
            null_mut(),
            &mut dacl,
            null_mut(),
            &mut sd,
        )
    })?;
    let read = (|| {
        if dacl.is_null() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "it has no DACL, so everyone may open it",
            ));
        }
        let (mut control, mut revision) = (0u16, 0u32);
        // SAFETY: `sd` is the descriptor just read.
        succeeded(unsafe { GetSecurityDescriptorControl(sd, &mut control, &mut revision) })?;
        // SAFETY: `dacl` is a valid ACL inside `sd`.
        let count = unsafe { (*dacl).AceCount };
        let mut entries = Vec::new();
        for index in 0..u32::from(count) {
            let mut ace = null_mut();
            // SAFETY: `index` is below the ACL's count.
            succeeded(unsafe { GetAce(dacl, index, &mut ace) })?;
            // SAFETY: every entry starts with a header; allowed and denied entries (the only
            // kinds a file's DACL holds) share ACCESS_ALLOWED_ACE's layout.
            let header = unsafe { &*(ace as *const ACE_HEADER) };
            let entry = unsafe { &*(ace as *const ACCESS_ALLOWED_ACE) };
            entries.push(Entry {
                allows: u32::from(header.AceType) == ACCESS_ALLOWED_ACE_TYPE,
                sid: sid_string((&raw const entry.SidStart) as PSID)?,
                rights: entry.Mask,
                flags: header.AceFlags,
            });
        }
        Ok(Dacl {
            protected: control & SE_DACL_PROTECTED != 0,
            entries,
        })
    })();
    // SAFETY: `sd` came from GetNamedSecurityInfoW and is freed once.
    unsafe { LocalFree(sd) };
    read
}

/// This process's user's SID.
fn user_sid() -> io::Result<Vec<u32>> {
    let mut token: HANDLE = null_mut();
    // SAFETY: the current process's pseudo-handle needs no closing; `token` is closed below.
    succeeded(unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) })?;
    let mut size = 0u32;
    // SAFETY: asking for the size with no buffer, as documented; this call fails by design.
    unsafe { GetTokenInformation(token, TokenUser, null_mut(), 0, &mut size) };
    let mut buffer = vec![0u64; (size as usize).div_ceil(8)];
    // SAFETY: `buffer` is aligned for TOKEN_USER and holds `size` bytes.
    let read = succeeded(unsafe {
        GetTokenInformation(
            token,
            TokenUser,
            buffer.as_mut_ptr().cast(),
            size,
            &mut size,
        )
    });
    // SAFETY: `token` was opened above and is closed once.
    unsafe { CloseHandle(token) };
    read?;
    // SAFETY: the call filled `buffer` with a TOKEN_USER whose SID points inside it.
    let sid = unsafe { (*(buffer.as_ptr() as *const TOKEN_USER)).User.Sid };
    // SAFETY: `sid` is valid while `buffer` is.
    let length = unsafe { GetLengthSid(sid) } as usize;
    let mut copy = vec![0u32; length.div_ceil(4)];
    // SAFETY: both buffers hold at least `length` bytes and do not overlap.
    unsafe { std::ptr::copy_nonoverlapping(sid as *const u8, copy.as_mut_ptr().cast(), length) };
    Ok(copy)
}

/// `sid` as `S-1-…`.
fn sid_string(sid: PSID) -> io::Result<String> {
    let mut text = null_mut();
    // SAFETY: `sid` is valid; on success `text` is a NUL-terminated string LocalFree releases.
    succeeded(unsafe { ConvertSidToStringSidW(sid, &mut text) })?;
    // SAFETY: `text` is NUL-terminated.
    let length = (0..).take_while(|&i| unsafe { *text.add(i) } != 0).count();
    // SAFETY: `length` characters were just counted there.
    let string = String::from_utf16_lossy(unsafe { std::slice::from_raw_parts(text, length) });
    // SAFETY: `text` came from ConvertSidToStringSidW and is freed once.
    unsafe { LocalFree(text.cast()) };
    Ok(string)
}

fn wide(path: &Path) -> Vec<u16> {
    path.as_os_str().encode_wide().chain([0]).collect()
}

/// A call that returns a BOOL: the system's error when it failed.
fn succeeded(result: windows_sys::core::BOOL) -> io::Result<()> {
    if result == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// A call that returns its error.
fn done(result: WIN32_ERROR) -> io::Result<()> {
    if result == ERROR_SUCCESS {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(result as i32))
    }
}
