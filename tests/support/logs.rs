//! What a step's log may hold: checks for lines a server started and secrets shown.

use std::process::Output;

/// The workflow commands we write; a line that starts with any other was injected.
pub const OUR_COMMANDS: [&str; 3] = [
    "::add-mask::",
    "::error title=token-keeper::",
    "::warning title=token-keeper::",
];

/// What the hostile text is marked with: a line holding it must be one we started.
pub const MARK: &str = "PWNED";

pub fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The runner reads a workflow command from a line that starts with `::` after blanks, or that
/// holds `##[` anywhere, and it splits lines at CR as well as LF.
#[track_caller]
pub fn assert_no_line_of_theirs(what: &str, log: &str) {
    for line in log.split(['\n', '\r']) {
        let start = line.trim_start();
        if start.starts_with("::") {
            assert!(
                OUR_COMMANDS.iter().any(|ours| start.starts_with(ours)),
                "{what}: a workflow command we did not write: {line:?}\n{log}"
            );
        }
        assert!(
            !line.contains("##["),
            "{what}: a command in {line:?}\n{log}"
        );
        assert!(
            !line.contains('\u{1b}'),
            "{what}: an escape sequence in {line:?}\n{log}"
        );
        if line.contains(MARK) {
            assert!(
                start.starts_with("token-keeper:")
                    || OUR_COMMANDS[1..].iter().any(|ours| start.starts_with(ours)),
                "{what}: a line we did not start: {line:?}\n{log}"
            );
        }
    }
}

/// No secret of `secrets` shows in `log` but on its own mask line (`::add-mask::<secret>`).
/// Secrets shorter than 8 characters are not looked for: they would match by chance.
#[track_caller]
pub fn assert_no_secret_shown(what: &str, log: &str, secrets: &[String]) {
    for line in log.split(['\n', '\r']) {
        for secret in secrets.iter().filter(|s| s.len() >= 8) {
            let own_mask = line
                .strip_prefix("::add-mask::")
                .is_some_and(|masked| masked == secret);
            assert!(
                own_mask || !line.contains(secret.as_str()),
                "{what}: a secret we sent is shown: {line:?}"
            );
        }
    }
}
