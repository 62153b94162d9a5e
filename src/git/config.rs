//! What git is told: the URLs a token covers, the helper command git runs for them, and the
//! config entries that install it.
//!
//! In Actions nothing touches a git config file: later steps get `GIT_CONFIG_COUNT`/`KEY_n`/
//! `VALUE_n` through `GITHUB_ENV`, appended after any entries an earlier step set. The same
//! `entries` serve `setup` elsewhere, printed as variables or written by `git::global` to a file
//! the global config includes. Every entry is scoped to what the token covers, so other owners,
//! repositories and hosts keep their own credentials.

use std::path::Path;

use url::Url;

use crate::env::Env;
use crate::github::Target;
use crate::keeper::job::Begun;
use crate::keeper::settings::Settings;
use crate::process;
use crate::report::Reporter;

/// cargo's switch from its own git library to git's command line, which asks our helper.
const CARGO_GIT_CLI: &str = "CARGO_NET_GIT_FETCH_WITH_CLI";
/// What is said of an enterprise's token, for which git gets no entries.
pub(crate) const NO_REPOSITORY: &str = "an enterprise token reaches no repository, so git is left alone; `token-keeper token` and `exec` keep it fresh";

/// The URL prefixes git gets fresh tokens for from the store `begun` kept for `server`: none
/// for an enterprise's token, which reaches no repository (that is said).
pub(crate) fn scopes_of(
    begun: &Begun,
    settings: &Settings,
    server: &Url,
    reporter: &dyn Reporter,
) -> Vec<String> {
    if matches!(settings.target, Target::Enterprise(_)) {
        reporter.say(NO_REPOSITORY);
        return Vec::new();
    }
    scopes(
        server,
        &begun.account,
        &settings.request.repositories,
        &begun.token.repositories,
    )
}

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

/// The command git runs for our scopes, at absolute paths: the binary and the step's state,
/// each quoted for the shell git runs `!` helpers with.
pub(crate) fn helper_command_at(binary: &Path, state: &Path) -> String {
    let quoted = |path: &Path| process::shell_quoted(&path.to_string_lossy());
    helper_line(&quoted(binary), &quoted(state))
}

/// The `!` helper that runs `binary` for the store `state`, both already quoted for git's shell.
pub(crate) fn helper_line(binary: &str, state: &str) -> String {
    format!("!{binary} credential --state {state}")
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
pub(crate) fn variables(
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

/// cargo's switch to git's command line, for later commands: cargo's own git library reads no
/// `GIT_CONFIG_*`, so its git dependencies get fresh tokens too. A job that chose otherwise keeps
/// its choice.
pub(crate) fn cargo_variable(env: &Env) -> Option<(String, String)> {
    (!env.contains(CARGO_GIT_CLI)).then(|| (CARGO_GIT_CLI.to_owned(), "true".to_owned()))
}

/// Say what git (and, with `cargo`, cargo) will get fresh tokens for.
pub(crate) fn say_installed(reporter: &dyn Reporter, scopes: &[String], cargo: bool) {
    reporter.say(&format!(
        "git will get fresh tokens for {}",
        scopes.join(", ")
    ));
    if cargo {
        reporter.say(&format!(
            "cargo will fetch git dependencies with git's command line ({CARGO_GIT_CLI}=true), so they get fresh tokens too"
        ));
    }
}

/// How many `GIT_CONFIG_*` entries earlier steps set.
pub(crate) fn existing_count(env: &Env) -> usize {
    env.get("GIT_CONFIG_COUNT")
        .and_then(|c| c.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let env = variables(2, &["https://github.com/octo".into()], "!helper", true);
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
}
