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

/// How a server could alter a credential it quotes back: split by a line break (with the blanks
/// a folded header adds), with an invisible character inside, percent-encoded, base64-encoded
/// within a header, or cut short.
pub fn altered(secret: &str) -> Vec<(&'static str, String)> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mid = secret.len() / 2;
    let (head, tail) = secret.split_at(mid);
    vec![
        ("whole", secret.to_owned()),
        ("split by a line break", format!("{head}\n{tail}")),
        ("folded", format!("{head}\r\n\t {tail}")),
        ("a zero-width space inside", format!("{head}\u{200b}{tail}")),
        ("a soft hyphen inside", format!("{head}\u{ad}{tail}")),
        (
            "percent-encoded",
            secret.bytes().map(|b| format!("%{b:02X}")).collect(),
        ),
        (
            "base64 in a header",
            b64.encode(format!("Authorization: Bearer {secret}")),
        ),
        ("cut short", secret[..secret.len() * 2 / 3].to_owned()),
    ]
}

/// No run of 16 characters of any of `secrets`, nor of what `altered` makes of them, shows in
/// `log` once its blanks and invisible characters are taken out, but on a secret's own mask line.
#[track_caller]
pub fn assert_no_part_shown(what: &str, log: &str, secrets: &[String]) {
    let hides = |c: char| c.is_whitespace() || c.is_control() || matches!(c, '\u{ad}' | '\u{200b}');
    let joined: String = log
        .lines()
        .filter(|line| {
            !line
                .strip_prefix("::add-mask::")
                .is_some_and(|masked| secrets.iter().any(|s| s == masked))
        })
        .flat_map(str::chars)
        .filter(|c| !hides(*c))
        .collect();
    for secret in secrets.iter().filter(|s| s.len() >= 16) {
        for (how, form) in altered(secret) {
            let visible: Vec<char> = form.chars().filter(|c| !hides(*c)).collect();
            for window in visible.windows(16) {
                let window: String = window.iter().collect();
                assert!(
                    !joined.contains(&window),
                    "{what}: part of a secret ({how}) is shown: {window:?}\n{log}"
                );
            }
        }
    }
}
