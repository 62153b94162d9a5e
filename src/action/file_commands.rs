//! What a step hands the runner and later steps: the file commands (`GITHUB_OUTPUT`,
//! `GITHUB_ENV`, `GITHUB_PATH`, `GITHUB_STATE`, `GITHUB_STEP_SUMMARY`).
//!
//! Values go through the heredoc form (`name<<DELIMITER`) with a random delimiter, so no value can
//! end its entry early or inject another one.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use ring::rand::{SecureRandom, SystemRandom};

use crate::env::Env;

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

#[cfg(test)]
mod tests {
    use super::*;

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
        let commands = FileCommands::new(&Env::default());
        let err = commands
            .require(&[FileCommand::Env])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`GITHUB_ENV` is not set"), "{err}");
    }
}
