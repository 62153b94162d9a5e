//! The native entry as a release ships it: `native/`'s scripts with the binary under test,
//! packed by `scripts/pack-native` under the name `run.js` looks for on this machine.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::runner::{binary, require};

/// This machine's binary name, as `run.js` and the release name it.
pub fn binary_name() -> String {
    let os = std::env::consts::OS;
    let exe = std::env::consts::EXE_SUFFIX;
    format!("token-keeper-{os}-{}{exe}", std::env::consts::ARCH)
}

/// Pack a copy of the native entry into `dir`; the entry's folder (`dir/native`) comes back.
pub fn pack(dir: &Path) -> PathBuf {
    require("node", &["--version"], "node (Debian's package `nodejs`)");
    let entry = dir.join("native");
    if cfg!(wine) {
        copy_packed(&entry);
        return entry;
    }
    let named = dir.join(binary_name());
    std::fs::copy(binary(), &named).expect("the binary under its release name");
    // Through `sh`, which Git for Windows brings there too, from the repository's root.
    let packed = Command::new("sh")
        .arg("scripts/pack-native")
        .arg(for_sh(&entry))
        .arg(for_sh(&named))
        .current_dir(root())
        .status()
        .expect("scripts/pack-native");
    assert!(packed.success(), "scripts/pack-native failed");
    std::fs::remove_file(named).expect("the copy is packed");
    entry
}

/// Under wine, which has no `sh`: a copy of the entry `scripts/test-windows` packed with
/// `scripts/pack-native` around the binary under test.
fn copy_packed(entry: &Path) {
    let packed = std::env::var_os("TOKEN_KEEPER_PACKED_NATIVE")
        .expect("under wine, scripts/test-windows packs the native entry: run the suite with it");
    for folder in ["", "bin"] {
        std::fs::create_dir_all(entry.join(folder)).expect("the entry's folder");
        for file in std::fs::read_dir(Path::new(&packed).join(folder)).expect("the packed entry") {
            let file = file.expect("the packed entry");
            if file.file_type().expect("the packed entry").is_file() {
                std::fs::copy(file.path(), entry.join(folder).join(file.file_name()))
                    .expect("a copy of the packed entry");
            }
        }
    }
}

/// `path` as a shell script reads it: on Windows, with `/` where Windows writes `\`, as a
/// script's `basename` and `dirname` split at `/` alone.
fn for_sh(path: &Path) -> String {
    let path = path.to_string_lossy();
    if cfg!(windows) {
        path.replace('\\', "/")
    } else {
        path.into_owned()
    }
}

/// The repository's root, two folders above the kit's own.
pub fn root() -> &'static Path {
    let kit = Path::new(env!("CARGO_MANIFEST_DIR"));
    kit.ancestors().nth(2).expect("the kit is in tests/kit")
}
