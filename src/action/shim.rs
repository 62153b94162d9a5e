//! Installing the git credential shim for the job's later steps.
//!
//! In Actions nothing touches a git config file: later steps get `GIT_CONFIG_COUNT`/`KEY_n`/
//! `VALUE_n` through `GITHUB_ENV`, appended after any entries an earlier step set. The same
//! `entries` serve `setup` elsewhere, printed as variables or written by `ci::gitconfig` to a file
//! the global config includes. Every entry is scoped to what the token covers, so other owners,
//! repositories and hosts keep their own credentials. The main step's helper command starts with
//! `$RUNNER_TEMP`, which the later step's own shell expands, so it resolves on the runner host and
//! inside job containers alike. Git for Windows runs the helper with its own `sh` too, where
//! `$RUNNER_TEMP` is `D:\a\_temp`: in double quotes, what an expansion gives is kept as it is,
//! backslashes and spaces included.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use url::Url;

use super::env::Env;
use super::layout::Layout;
use crate::keeper::locate::Platform;
use crate::private::{create_private_dir, write_atomic};

/// cargo's switch from its own git library to git's command line, which reads our shim.
pub(crate) const CARGO_GIT_CLI: &str = "CARGO_NET_GIT_FETCH_WITH_CLI";
/// What is said of an enterprise's token, for which git gets no entries.
pub(crate) const NO_REPOSITORY: &str = "an enterprise token reaches no repository, so git is left alone; `token-keeper token` and `exec` keep it fresh";

/// The URL prefixes the token covers: the owner, or each repository `asked` for with and without
/// `.git`, each with the login as GitHub spells it and in lower case (git matches
/// case-sensitively). `minted` names the repositories GitHub's answer lists.
pub(crate) fn scopes(
    server: &Url,
    account: &str,
    asked: &[String],
    minted: &[String],
) -> Vec<String> {
    // The names asked for, as the workflow wrote them and as GitHub spells them: no name the
    // answer adds widens the scope.
    let mut repositories = asked.to_vec();
    for repo in minted {
        let asked = repositories.iter().any(|r| r.eq_ignore_ascii_case(repo));
        if asked && !repositories.contains(repo) {
            repositories.push(repo.clone());
        }
    }
    let base = server.as_str().trim_end_matches('/');
    let mut logins = vec![account.to_owned()];
    if account.to_lowercase() != account {
        logins.push(account.to_lowercase());
    }
    let mut scopes = Vec::new();
    for login in &logins {
        if repositories.is_empty() {
            scopes.push(format!("{base}/{login}"));
        }
        for repo in &repositories {
            scopes.push(format!("{base}/{login}/{repo}"));
            scopes.push(format!("{base}/{login}/{repo}.git"));
        }
    }
    scopes
}

/// The command git runs for our scopes, on `platform`. Only `$RUNNER_TEMP` is expanded in it:
/// the rest is our own names, none with a `$`, `` ` ``, `"` or `\`.
pub(crate) fn helper_command(layout: &Layout, step: &str, platform: Platform) -> String {
    let (binary, state) = layout.shell_paths(step, platform);
    format!("!\"{binary}\" credential --state \"{state}\"")
}

/// The command git runs for our scopes, at absolute paths: the binary and the step's state,
/// each quoted for the shell git runs `!` helpers with.
pub(crate) fn helper_command_at(binary: &Path, state: &Path) -> String {
    let quoted = |path: &Path| shell_quoted(&path.to_string_lossy());
    format!("!{} credential --state {}", quoted(binary), quoted(state))
}

/// `text` for a POSIX shell, as it is: in single quotes, each `'` written `'\''`.
pub(crate) fn shell_quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// The git configuration entries for our scopes, in order.
pub(crate) fn entries(
    scopes: &[String],
    helper: &str,
    clear_extraheader: bool,
) -> Vec<(String, String)> {
    let mut entries: Vec<(String, String)> = Vec::new();
    for scope in scopes {
        // An empty helper first resets the list, so no global helper answers before us.
        entries.push((format!("credential.{scope}.helper"), String::new()));
        entries.push((format!("credential.{scope}.helper"), helper.to_owned()));
        if clear_extraheader {
            entries.push((format!("http.{scope}.extraheader"), String::new()));
        }
    }
    entries
}

/// `GIT_CONFIG_*` variables for later steps, appended after the `existing` count.
pub(crate) fn git_config_env(
    existing: usize,
    scopes: &[String],
    helper: &str,
    clear_extraheader: bool,
) -> Vec<(String, String)> {
    let entries = entries(scopes, helper, clear_extraheader);
    let mut env = Vec::new();
    for (i, (key, value)) in entries.iter().enumerate() {
        env.push((format!("GIT_CONFIG_KEY_{}", existing + i), key.clone()));
        env.push((format!("GIT_CONFIG_VALUE_{}", existing + i), value.clone()));
    }
    env.push((
        "GIT_CONFIG_COUNT".into(),
        (existing + entries.len()).to_string(),
    ));
    env
}

/// How many `GIT_CONFIG_*` entries earlier steps set.
pub(crate) fn existing_count(env: &Env) -> usize {
    env.get("GIT_CONFIG_COUNT")
        .and_then(|c| c.trim().parse().ok())
        .unwrap_or(0)
}

/// Copy the running binary to `<root>/bin/token-keeper` (`token-keeper.exe` on Windows; on Unix
/// 0700, the runner user's).
pub(crate) fn install_binary(layout: &Layout) -> Result<()> {
    let target = layout.binary();
    if let Some(bin) = target.parent() {
        create_private_dir(bin, layout.owner)?;
    }
    let source = std::env::current_exe().context("cannot find the running binary")?;
    write_atomic(&target, 0o700, layout.owner, |file| {
        std::io::copy(&mut fs::File::open(&source)?, file).map(drop)
    })
    .with_context(|| format!("cannot install `{}`", target.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::private::Owner;

    fn github() -> Url {
        Url::parse("https://github.com").unwrap()
    }

    #[test]
    fn owner_wide_tokens_scope_the_owner_in_both_cases() {
        assert_eq!(
            scopes(&github(), "Octo-Org", &[], &[]),
            ["https://github.com/Octo-Org", "https://github.com/octo-org"]
        );
        assert_eq!(
            scopes(&github(), "octo", &[], &[]),
            ["https://github.com/octo"]
        );
    }

    #[test]
    fn repository_tokens_scope_each_repository_with_and_without_git() {
        assert_eq!(
            scopes(&github(), "octo", &["app".into()], &["app".into()]),
            [
                "https://github.com/octo/app",
                "https://github.com/octo/app.git"
            ]
        );
    }

    #[test]
    fn githubs_spelling_of_an_asked_repository_is_scoped_too_and_nothing_else() {
        assert_eq!(
            scopes(
                &github(),
                "octo",
                &["App".into()],
                &["app".into(), "lib".into()]
            ),
            [
                "https://github.com/octo/App",
                "https://github.com/octo/App.git",
                "https://github.com/octo/app",
                "https://github.com/octo/app.git"
            ]
        );
    }

    #[test]
    fn entries_are_appended_after_earlier_ones() {
        let env = git_config_env(2, &["https://github.com/octo".into()], "!helper", true);
        let expected: Vec<(String, String)> = [
            (
                "GIT_CONFIG_KEY_2",
                "credential.https://github.com/octo.helper",
            ),
            ("GIT_CONFIG_VALUE_2", ""),
            (
                "GIT_CONFIG_KEY_3",
                "credential.https://github.com/octo.helper",
            ),
            ("GIT_CONFIG_VALUE_3", "!helper"),
            (
                "GIT_CONFIG_KEY_4",
                "http.https://github.com/octo.extraheader",
            ),
            ("GIT_CONFIG_VALUE_4", ""),
            ("GIT_CONFIG_COUNT", "5"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        assert_eq!(env, expected);
    }

    #[test]
    fn a_helper_at_absolute_paths_is_quoted_for_the_shell() {
        assert_eq!(
            helper_command_at(
                Path::new("/opt/tk/token-keeper"),
                Path::new("/tmp/it's here")
            ),
            "!'/opt/tk/token-keeper' credential --state '/tmp/it'\\''s here'"
        );
    }

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
