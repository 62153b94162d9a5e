//! Workflow commands: how the runner reads what a step says on its stdout (`::warning::`,
//! `::error::`, `::add-mask::`), each message shown safely and escaped as the runner unescapes.

use std::io::{self, Write};

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
}
