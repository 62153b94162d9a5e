//! Talking to the runner: workflow commands on stdout and the file commands
//! (`GITHUB_OUTPUT`, `GITHUB_ENV`, `GITHUB_PATH`, `GITHUB_STATE`, `GITHUB_STEP_SUMMARY`).
//!
//! Values go through the heredoc form (`name<<DELIMITER`) with a random delimiter, so no value can
//! end its entry early or inject another one.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use ring::rand::{SecureRandom, SystemRandom};

use super::env::Env;
use crate::{messages, secret};

/// A workflow command line: `::name props::message`, the message shown safely, with the runner's
/// escaping.
pub(crate) fn command(name: &str, props: &[(&str, &str)], message: &str) -> String {
    let props: Vec<String> = props
        .iter()
        .map(|(k, v)| format!("{k}={}", escape_property(v)))
        .collect();
    let props = if props.is_empty() {
        String::new()
    } else {
        format!(" {}", props.join(","))
    };
    format!(
        "::{name}{props}::{}",
        escape_data(&messages::shown(message))
    )
}

/// `::error title=token-keeper::message`
pub(crate) fn error(message: &str) -> String {
    command("error", &[("title", messages::NAME)], message)
}

/// `::warning title=token-keeper::message`
pub(crate) fn warning(message: &str) -> String {
    command("warning", &[("title", messages::NAME)], message)
}

/// `::add-mask::value` lines, for a stream only we write to; a multi-line value is masked line
/// by line.
fn mask_lines(value: &str) -> Vec<String> {
    value
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| format!("::add-mask::{}", escape_data(line)))
        .collect()
}

/// The mask lines of `value` for a stream that other processes write to too (a child's progress
/// bar may have left a line unfinished there): a line break first, so that each mask starts a
/// line, in one write.
pub(crate) fn masks_on_shared_stream(value: &str) -> String {
    let mut text = String::from("\n");
    for line in mask_lines(value) {
        text.push_str(&line);
        text.push('\n');
    }
    text
}

/// From now on, mask every secret this process makes on stdout, before it is used: for the
/// main and post steps, whose stdout only the runner reads.
pub(crate) fn mask_every_secret() {
    secret::announce_with(|value| {
        let _ = print(&mask_lines(value));
    });
}

fn escape_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

/// The file commands of the running step.
#[derive(Debug, Clone)]
pub(crate) struct FileCommands {
    env: Env,
}

/// One file command file.
#[derive(Debug, Clone, Copy)]
pub(crate) enum FileCommand {
    Output,
    Env,
    Path,
    State,
    Summary,
}

impl FileCommand {
    fn variable(self) -> &'static str {
        match self {
            FileCommand::Output => "GITHUB_OUTPUT",
            FileCommand::Env => "GITHUB_ENV",
            FileCommand::Path => "GITHUB_PATH",
            FileCommand::State => "GITHUB_STATE",
            FileCommand::Summary => "GITHUB_STEP_SUMMARY",
        }
    }
}

impl FileCommands {
    pub(crate) fn new(env: &Env) -> Self {
        Self { env: env.clone() }
    }

    fn path(&self, which: FileCommand) -> Result<PathBuf> {
        match self.env.get(which.variable()).filter(|p| !p.is_empty()) {
            Some(path) => Ok(PathBuf::from(path)),
            None => bail!(
                "`{}` is not set: token-keeper must run as a step of a GitHub Actions job (or set it to a file)",
                which.variable()
            ),
        }
    }

    /// Fail early, before minting, when a file command the step needs is missing.
    pub(crate) fn require(&self, which: &[FileCommand]) -> Result<()> {
        which.iter().try_for_each(|w| self.path(*w).map(drop))
    }

    fn append(&self, which: FileCommand, text: &str) -> Result<()> {
        let path = self.path(which)?;
        let mut file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .with_context(|| {
                format!("cannot open `{}` (`{}`)", path.display(), which.variable())
            })?;
        // One write, so a concurrent reader never sees half an entry.
        file.write_all(text.as_bytes())
            .with_context(|| format!("cannot write `{}`", path.display()))
    }

    /// `name<<DELIM\nvalue\nDELIM\n` entries, for `GITHUB_OUTPUT`, `GITHUB_ENV` and `GITHUB_STATE`.
    pub(crate) fn set(&self, which: FileCommand, pairs: &[(&str, &str)]) -> Result<()> {
        let mut text = String::new();
        for (name, value) in pairs {
            text.push_str(&heredoc(name, value)?);
        }
        self.append(which, &text)
    }

    pub(crate) fn add_path(&self, dir: &str) -> Result<()> {
        self.append(FileCommand::Path, &format!("{dir}\n"))
    }

    pub(crate) fn summary(&self, markdown: &str) -> Result<()> {
        self.append(FileCommand::Summary, markdown)
    }
}

fn heredoc(name: &str, value: &str) -> Result<String> {
    let delimiter = random_delimiter()?;
    if value.contains(&delimiter) || name.contains(['\n', '\r', '=']) || name.contains("<<") {
        bail!("cannot write `{name}` safely as a file command");
    }
    Ok(format!("{name}<<{delimiter}\n{value}\n{delimiter}\n"))
}

fn random_delimiter() -> Result<String> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("the system's random source failed"))?;
    Ok(format!(
        "ghadelimiter_{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

/// Write lines to stdout at once (workflow commands must start at a line's beginning).
pub(crate) fn print(lines: &[String]) -> io::Result<()> {
    let mut out = io::stdout().lock();
    for line in lines {
        writeln!(out, "{line}")?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_escaped_onto_one_line() {
        assert_eq!(
            error("50% done\nnext"),
            "::error title=token-keeper::50%25 done\\nnext"
        );
        assert_eq!(
            command("warning", &[("title", "a:b,c")], "x"),
            "::warning title=a%3Ab%2Cc::x"
        );
    }

    #[test]
    fn multi_line_values_are_masked_line_by_line() {
        assert_eq!(
            mask_lines("one\ntwo\n"),
            vec!["::add-mask::one", "::add-mask::two"]
        );
    }

    #[test]
    fn masks_on_a_shared_stream_start_lines_of_their_own() {
        assert_eq!(masks_on_shared_stream("ghs_a"), "\n::add-mask::ghs_a\n");
    }

    #[test]
    fn messages_are_cleaned_of_what_the_runner_reads_as_commands() {
        assert_eq!(
            warning("a\u{1b}[2K ##[stop-commands]x"),
            "::warning title=token-keeper::a\\u{1b}[2K ##\\[stop-commands]x"
        );
    }

    #[test]
    fn heredoc_round_trips_through_the_runner_format() {
        let entry = heredoc("token", "ghs_x\ny").unwrap();
        let mut lines = entry.lines();
        let first = lines.next().unwrap();
        let (name, delimiter) = first.split_once("<<").unwrap();
        assert_eq!(name, "token");
        assert!(delimiter.starts_with("ghadelimiter_"));
        let value: Vec<&str> = lines.by_ref().take_while(|l| *l != delimiter).collect();
        assert_eq!(value.join("\n"), "ghs_x\ny");
        assert_eq!(lines.next(), None);
    }

    #[test]
    fn delimiters_differ_each_time() {
        assert_ne!(random_delimiter().unwrap(), random_delimiter().unwrap());
    }

    #[test]
    fn missing_file_command_names_the_variable() {
        let commands = FileCommands::new(&Env::new());
        let err = commands
            .require(&[FileCommand::Env])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`GITHUB_ENV` is not set"), "{err}");
    }
}
