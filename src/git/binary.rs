//! The binary git runs as its credential helper in the job's later steps (the action's copy,
//! outside its container), and the helper command that finds it.
//!
//! The main step's helper command starts with
//! `$RUNNER_TEMP`, which the later step's own shell expands, so it resolves on the runner host and
//! inside job containers alike. Git for Windows runs the helper with its own `sh` too, where
//! `$RUNNER_TEMP` is `D:\a\_temp`: in double quotes, what an expansion gives is kept as it is,
//! backslashes and spaces included.

use std::fs;

use anyhow::{Context, Result};

use super::config;
use crate::keeper::store::layout::Layout;
use crate::keeper::store::locate::Platform;
use crate::private::{create_private_dir, write_atomic};
use crate::process;

/// The command git runs for our scopes, on `platform`. Only `$RUNNER_TEMP` is expanded in it:
/// the rest is our own names, none with a `$`, `` ` ``, `"` or `\`.
pub(crate) fn helper_command(layout: &Layout, step: &str, platform: Platform) -> String {
    let (binary, state) = layout.shell_paths(step, platform);
    config::helper_line(&format!("\"{binary}\""), &format!("\"{state}\""))
}

/// Copy the running binary to `<root>/bin/token-keeper` (`token-keeper.exe` on Windows; on Unix
/// 0700, the runner user's).
pub(crate) fn install_binary(layout: &Layout) -> Result<()> {
    let target = layout.binary();
    if let Some(bin) = target.parent() {
        create_private_dir(bin, layout.owner)?;
    }
    let source = process::running_binary().context("cannot find the running binary")?;
    write_atomic(&target, 0o700, layout.owner, |file| {
        std::io::copy(&mut fs::File::open(&source)?, file).map(drop)
    })
    .with_context(|| format!("cannot install `{}`", target.display()))
}

#[cfg(test)]
mod tests {
    #[cfg(unix)]
    use std::path::Path;

    use super::*;
    #[cfg(unix)]
    use crate::git::config::helper_command_at;
    use crate::private::Owner;

    fn layout() -> Layout {
        Layout {
            root: "/github/runner_temp/token-keeper".into(),
            shell_root: "$RUNNER_TEMP/token-keeper".into(),
            host_root: None,
            owner: Owner::me(),
        }
    }

    #[test]
    fn the_helper_resolves_through_runner_temp() {
        assert_eq!(
            helper_command(&layout(), "step-x", Platform::Unix),
            "!\"$RUNNER_TEMP/token-keeper/bin/token-keeper\" credential --state \"$RUNNER_TEMP/token-keeper/step-x\""
        );
        assert_eq!(
            helper_command(&layout(), "step-x", Platform::Windows),
            "!\"$RUNNER_TEMP/token-keeper/bin/token-keeper.exe\" credential --state \"$RUNNER_TEMP/token-keeper/step-x\""
        );
    }

    /// The arguments `sh` gives the program of `helper`, run as git runs a `!` helper (Git for
    /// Windows with its own `sh`): `sh -c '<helper> "$@"' <helper> get`, with `RUNNER_TEMP` set
    /// to `runner_temp`. `program` is made in `dir`, the current folder and first on `PATH`, as a
    /// script that prints its arguments, one a line: it runs only if its name arrived whole.
    #[cfg(unix)]
    fn run_by_git(helper: &str, dir: &Path, program: &Path, runner_temp: &str) -> String {
        use std::os::unix::fs::PermissionsExt;
        let script = dir.join(program);
        fs::create_dir_all(script.parent().unwrap()).unwrap();
        fs::write(&script, "#!/bin/sh\nprintf '%s\\n' \"$@\"\n").unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        let path = std::env::join_paths(std::iter::once(dir.to_owned()).chain(
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
        ))
        .unwrap();
        let command = helper.strip_prefix('!').unwrap();
        let out = std::process::Command::new("sh")
            .args(["-c", &format!("{command} \"$@\""), command, "get"])
            .current_dir(dir)
            .env("PATH", path)
            .env("RUNNER_TEMP", runner_temp)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    #[cfg(unix)]
    #[test]
    fn windows_paths_reach_the_helper_whole_through_gits_sh() {
        let tmp = tempfile::tempdir().unwrap();
        // On Linux, a folder named as a Windows runner's `RUNNER_TEMP`, in the current folder.
        let runner_temp = r"D:\a\my temp";
        let program = Path::new(runner_temp).join("token-keeper/bin/token-keeper.exe");
        let helper = helper_command(&layout(), "step-x", Platform::Windows);
        assert_eq!(
            run_by_git(&helper, tmp.path(), &program, runner_temp),
            "credential\n--state\nD:\\a\\my temp/token-keeper/step-x\nget\n"
        );

        // setup's helper names absolute paths, each quoted whole; on Linux, one file on `PATH`.
        let program = Path::new(r"C:\Users\O'Neil\AppData\Local\Temp\tk\token-keeper.exe");
        let helper = helper_command_at(program, Path::new(r"C:\Users\O'Neil\tk\setup-1"));
        assert_eq!(
            run_by_git(&helper, tmp.path(), program, runner_temp),
            "credential\n--state\nC:\\Users\\O'Neil\\tk\\setup-1\nget\n"
        );
    }
}
