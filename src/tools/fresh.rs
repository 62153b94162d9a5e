//! `exec --keep-fresh`: a long-running child whose `gh` always finds a live token.
//!
//! `gh` takes `GH_TOKEN` (or `GITHUB_TOKEN`) from an environment that never changes for a child;
//! without them it reads `hosts.yml` under `GH_CONFIG_DIR` at every invocation. So the child gets
//! a private `GH_CONFIG_DIR` and none of those variables, and a thread of ours replaces the token
//! in `hosts.yml` (whole, by rename) before it expires, until the child ends. The folder sits in
//! the step's state directory, so the post step removes it even if we are killed.

use std::path::Path;
use std::process::{Command, ExitCode};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result};

use super::{Asker, ExecFailure, serve};
use crate::clock::{LocalTime, unix_now};
use crate::github::apps::TOKEN_USERNAME;
use crate::github::hosts;
use crate::keeper::store::{GH_CONFIG_PREFIX, State};
use crate::keeper::{self, Keeper, Served, policy};
use crate::messages;
use crate::private::{Owner, create_private_dir, write_atomic};
use crate::process;
use crate::report::Reporter;
use crate::secret::Secret;

/// The variables through which `gh` would take a token that never changes.
const TOKEN_VARIABLES: [&str; 4] = [
    "GH_TOKEN",
    "GITHUB_TOKEN",
    "GH_ENTERPRISE_TOKEN",
    "GITHUB_ENTERPRISE_TOKEN",
];

/// Look again at least this often, and at most this often while a refresh is due.
const LONGEST_NAP: Duration = Duration::from_secs(30);
const SHORTEST_NAP: Duration = Duration::from_secs(1);
/// The longest pause between tries while re-minting fails.
const LONGEST_PAUSE: Duration = Duration::from_secs(120);

pub(super) fn run(
    keeper: &Keeper,
    state: State,
    mut child: Command,
    asker: &Asker,
) -> Result<ExitCode, ExecFailure> {
    let host =
        hosts::host_and_port(&state.config.git_server).context("the git server has no host")?;
    let dir = keeper
        .dir()
        .path()
        .join(format!("{GH_CONFIG_PREFIX}{}", std::process::id()));
    create_private_dir(&dir, keeper.dir().owner()).map_err(anyhow::Error::from)?;
    let result = run_in(keeper, state, &mut child, &dir, &host, asker);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run_in(
    keeper: &Keeper,
    state: State,
    child: &mut Command,
    dir: &Path,
    host: &str,
    asker: &Asker,
) -> Result<ExitCode, ExecFailure> {
    let served = serve(keeper, state, asker)?;
    write_hosts(dir, host, &served.token, keeper.dir().owner())?;
    for name in TOKEN_VARIABLES {
        child.env_remove(name);
    }
    child.env("GH_CONFIG_DIR", dir);
    // gh's own default; any other server, GHE.com's included, must be named.
    if host != hosts::GITHUB_COM {
        child.env("GH_HOST", host);
    }
    // The job's signals go to the child rather than end us: we outlive it and remove its folder.
    let mut running = process::spawn_forwarding(child)?;
    let (stop, stopped) = mpsc::channel::<()>();
    std::thread::scope(|scope| {
        let reporter = asker.reporter;
        let owner = keeper.dir().owner();
        scope.spawn(move || {
            refresh_until(keeper, served, stopped, reporter, |token| {
                write_hosts(dir, host, token, owner)
            })
        });
        let status = running.wait();
        let _ = stop.send(());
        Ok(process::exit_code(
            status.context("cannot wait for the command")?,
        ))
    })
}

/// How the child's token stands, as far as a person hears of it: we say so when it changes, not
/// at every try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    Fresh,
    /// A re-mint failed; the cached token, still valid, serves.
    Cached,
    /// No valid token is left.
    Gone,
}

/// Keep a child's token live until told to stop: `renewed` hears of each new one before it is
/// current. Tries that fail come further and further apart.
pub(super) fn refresh_until(
    keeper: &Keeper,
    mut current: Served,
    stopped: mpsc::Receiver<()>,
    reporter: &dyn Reporter,
    mut renewed: impl FnMut(&Secret) -> Result<()>,
) {
    let mut health = match current.warning {
        Some(_) => Health::Cached,
        None => Health::Fresh,
    };
    let mut failures = 0;
    loop {
        let nap = match failures {
            0 => keeper
                .state()
                .map(|state| nap(unix_now(), &state))
                .unwrap_or(LONGEST_NAP),
            failed => pause_after(failed),
        };
        if !matches!(
            stopped.recv_timeout(nap),
            Err(mpsc::RecvTimeoutError::Timeout)
        ) {
            return;
        }
        let served = keeper
            .state()
            .map_err(anyhow::Error::from)
            .and_then(|state| keeper.serve(state, unix_now()))
            .and_then(|served| {
                if served.token != current.token {
                    renewed(&served.token)?;
                }
                Ok(served)
            });
        let (now, warning) = match served {
            Ok(served) => {
                let warning = served.warning.clone();
                current = served;
                match warning {
                    Some(warning) => (Health::Cached, Some(warning)),
                    None => (Health::Fresh, None),
                }
            }
            Err(err) => (
                Health::Gone,
                Some(format!(
                    "cannot keep the token fresh: {}",
                    messages::describe(&err)
                )),
            ),
        };
        failures = match now {
            Health::Fresh => 0,
            _ => failures + 1,
        };
        if now != health {
            match warning {
                Some(warning) => {
                    reporter.warn(&format!("{warning}; trying again less and less often"))
                }
                None => reporter.say("the token is fresh again"),
            }
            health = now;
        }
    }
}

/// The pause after `failures` tries in a row that failed: doubling from two seconds, to at most
/// `LONGEST_PAUSE`. The App's rate limit is shared by every job.
fn pause_after(failures: u32) -> Duration {
    SHORTEST_NAP
        .saturating_mul(1 << failures.min(16))
        .min(LONGEST_PAUSE)
}

/// How long to wait before looking again: until the policy would refresh, within bounds.
fn nap(now: LocalTime, state: &State) -> Duration {
    let due = policy::refresh_at(&state.token.lifetime, keeper::refresh_after(state));
    let secs = u64::try_from(due - now).unwrap_or(0);
    Duration::from_secs(secs).clamp(SHORTEST_NAP, LONGEST_NAP)
}

/// `hosts.yml` with the token for `host`, replaced whole, the folder's owner's.
fn write_hosts(dir: &Path, host: &str, token: &Secret, owner: Owner) -> Result<()> {
    let text = hosts_yml(host, token);
    write_atomic(&dir.join("hosts.yml"), 0o600, owner, |file| {
        std::io::Write::write_all(file, text.as_bytes())
    })?;
    Ok(())
}

/// What `gh` reads in `hosts.yml`: under `host`, the user, the token and the git protocol.
fn hosts_yml(host: &str, token: &Secret) -> String {
    format!(
        "{}:\n    user: {TOKEN_USERNAME}\n    oauth_token: {}\n    git_protocol: https\n",
        yaml_quoted(host),
        yaml_quoted(token.expose())
    )
}

/// `text` as a YAML double-quoted scalar that reads back as `text`: on one line, printable ASCII
/// as it is but `"` and `\`, everything else escaped by its code point.
fn yaml_quoted(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                quoted.push('\\');
                quoted.push(c);
            }
            ' '..='~' => quoted.push(c),
            c if u32::from(c) <= 0xffff => quoted.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => quoted.push_str(&format!("\\U{:08x}", u32::from(c))),
        }
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn failing_tries_come_further_apart_up_to_two_minutes() {
        let pauses: Vec<u64> = (1..=8).map(|n| pause_after(n).as_secs()).collect();
        assert_eq!(pauses, [2, 4, 8, 16, 32, 64, 120, 120]);
        assert_eq!(pause_after(u32::MAX), LONGEST_PAUSE);
    }

    #[test]
    fn gh_knows_a_server_by_its_host_and_port() {
        let gh_host = |url: &str| hosts::host_and_port(&url::Url::parse(url).unwrap());
        assert_eq!(gh_host("https://github.com/").unwrap(), "github.com");
        assert_eq!(
            gh_host("https://ghes.example.com:8443").unwrap(),
            "ghes.example.com:8443"
        );
    }

    #[test]
    fn hosts_yml_names_the_host_and_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let me = Owner::of(dir.path()).unwrap();
        write_hosts(
            dir.path(),
            "127.0.0.1:8443",
            &Secret::new("ghs_a".into()),
            me,
        )
        .unwrap();
        let text = std::fs::read_to_string(dir.path().join("hosts.yml")).unwrap();
        assert_eq!(
            text,
            "\"127.0.0.1:8443\":\n    user: x-access-token\n    oauth_token: \"ghs_a\"\n    git_protocol: https\n"
        );
    }

    /// `hosts.yml` as a YAML reader reads it: hosts, and under each, its settings.
    fn read_hosts(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
        serde_saphyr::from_str(text).unwrap_or_else(|err| panic!("not YAML: {err}\n{text}"))
    }

    #[test]
    fn escapes_are_yamls_own() {
        assert_eq!(
            yaml_quoted("[::1]:8443 \"a\\b\" \u{7f}\u{e9}\u{1f600}"),
            r#""[::1]:8443 \"a\\b\" \u007f\u00e9\U0001f600""#
        );
    }

    proptest::proptest! {
        #[test]
        fn every_host_and_token_read_back_as_written(
            host in "\\PC*|[\x00-\x1f\\\\\"'{}\\[\\]:#&*!|>%@`,? \u{7f}-\u{a0}\u{2028}\u{feff}\u{1f600}]{0,24}",
            token in "\\PC*|[\x00-\x7f]{0,40}",
        ) {
            let hosts = read_hosts(&hosts_yml(&host, &Secret::new(token.clone())));
            let expected = BTreeMap::from([(
                host,
                BTreeMap::from([
                    ("user".to_owned(), TOKEN_USERNAME.to_owned()),
                    ("oauth_token".to_owned(), token),
                    ("git_protocol".to_owned(), "https".to_owned()),
                ]),
            )]);
            proptest::prop_assert_eq!(hosts, expected);
        }
    }
}
