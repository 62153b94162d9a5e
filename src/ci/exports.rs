//! What `setup` prints for the job: `export` lines for a POSIX shell to `eval`, a dotenv file
//! (GitLab's `artifacts:reports:dotenv`, `docker --env-file`), or JSON.

use anyhow::{Result, bail};
use serde_json::json;

use crate::process::shell_quoted;

/// How `setup` prints what the job needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// `export NAME='value'` lines: `eval "$(token-keeper setup …)"`.
    Export,
    /// `NAME=value` lines.
    Dotenv,
    /// `{"variables": {…}, "state": …, "fingerprint": …, "expires_at": …}`.
    Json,
}

/// What setup did, beside the variables later commands need.
pub(crate) struct Facts<'a> {
    pub(crate) state: &'a str,
    pub(crate) fingerprint: &'a str,
    pub(crate) expires_at: &'a str,
}

/// `variables` (and, in JSON, `facts`) as `format` prints them.
pub(crate) fn render(
    format: Format,
    variables: &[(String, String)],
    facts: &Facts,
) -> Result<String> {
    let mut text = String::new();
    match format {
        Format::Export => {
            for (name, value) in variables {
                text.push_str(&format!("export {name}={}\n", shell_quoted(value)));
            }
        }
        Format::Dotenv => {
            for (name, value) in variables {
                // A dotenv line ends the value: one holding a line break cannot be written.
                if value.contains(['\n', '\r']) {
                    bail!("cannot write `{name}` as a dotenv line: its value holds a line break");
                }
                text.push_str(&format!("{name}={value}\n"));
            }
        }
        Format::Json => {
            let variables: serde_json::Map<String, serde_json::Value> = variables
                .iter()
                .map(|(name, value)| (name.clone(), json!(value)))
                .collect();
            let document = json!({
                "variables": variables,
                "state": facts.state,
                "fingerprint": facts.fingerprint,
                "expires_at": facts.expires_at,
            });
            text = format!("{document:#}\n");
        }
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FACTS: Facts<'static> = Facts {
        state: "/tmp/s",
        fingerprint: "sha256:0123",
        expires_at: "2026-12-01T18:00:00Z",
    };

    fn variables() -> Vec<(String, String)> {
        vec![
            ("GIT_CONFIG_COUNT".into(), "1".into()),
            (
                "GIT_CONFIG_VALUE_0".into(),
                "!'/bin/token-keeper' credential --state '/tmp/it'\\''s'".into(),
            ),
        ]
    }

    #[test]
    #[cfg_attr(
        wine,
        ignore = "needs a POSIX sh: Git for Windows brings one to Windows' runners, none is here"
    )]
    fn export_lines_quote_every_value_for_the_shell() {
        let text = render(Format::Export, &variables(), &FACTS).unwrap();
        assert_eq!(text.lines().next(), Some("export GIT_CONFIG_COUNT='1'"));
        let echoed = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{text}printf %s \"$GIT_CONFIG_VALUE_0\""))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&echoed.stdout), variables()[1].1);
    }

    #[test]
    fn dotenv_and_json_carry_the_values_as_they_are() {
        let dotenv = render(Format::Dotenv, &variables(), &FACTS).unwrap();
        assert_eq!(dotenv.lines().next(), Some("GIT_CONFIG_COUNT=1"));
        let json: serde_json::Value =
            serde_json::from_str(&render(Format::Json, &variables(), &FACTS).unwrap()).unwrap();
        assert_eq!(json["variables"]["GIT_CONFIG_VALUE_0"], variables()[1].1);
        assert_eq!(json["state"], "/tmp/s");
        let broken = vec![("X".to_owned(), "a\nb".to_owned())];
        assert!(render(Format::Dotenv, &broken, &FACTS).is_err());
    }
}
