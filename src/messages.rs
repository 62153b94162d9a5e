//! What we say: the `token-keeper:` prefix, warnings, and text from elsewhere made safe to show.
//!
//! The runner reads workflow commands on stdout and stderr alike: from a line that starts with
//! `::` (after blanks), and from `##[name]` anywhere in a line; it splits lines at CR as well as
//! LF. Text we did not write (a server's name or error message, a path, an error's chain) goes
//! through `shown` before it is printed anywhere: no line break, control character or escape
//! sequence survives, no `##[` either, and every secret we hold shows as its fingerprint. So every
//! line we print is one we started, and the only workflow commands in it are ours.

use std::borrow::Cow;
use std::io::Write;

use crate::secret;

/// How our lines start, and the title of our annotations.
pub(crate) const NAME: &str = "token-keeper";

/// `text` as it may be shown: secrets scrubbed, then cleaned.
pub(crate) fn shown(text: &str) -> String {
    clean(&secret::scrub(text)).into_owned()
}

/// An error and its causes, on one line, as it may be shown or stored for another process to
/// show.
pub(crate) fn describe(err: &anyhow::Error) -> String {
    shown(&format!("{err:#}"))
}

/// `token-keeper: <text>`, the text shown safely.
pub(crate) fn line(text: &str) -> String {
    format!("{NAME}: {}", shown(text))
}

/// Say `text` on `out` (stderr, where git shows it), in one write: other processes write there
/// too.
pub(crate) fn say(mut out: impl Write, text: &str) {
    let _ = out.write_all(format!("{}\n", line(text)).as_bytes());
}

/// Warn on `out`: `token-keeper: warning: <text>`.
pub(crate) fn warn(out: impl Write, text: &str) {
    say(out, &format!("warning: {text}"));
}

/// `text` with what could start a line or a command written out as escapes: control characters
/// (`\n`, `\u{1b}`), the Unicode line and paragraph separators and the direction overrides that
/// could make a line read as another, and `##[` as `##\[`.
pub(crate) fn clean(text: &str) -> Cow<'_, str> {
    if !text.chars().any(unsafe_char) && !text.contains("##[") {
        return Cow::Borrowed(text);
    }
    let mut cleaned = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            cleaned.extend(c.escape_default());
        } else {
            cleaned.push(c);
        }
    }
    Cow::Owned(cleaned.replace("##[", "##\\["))
}

fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// Names in backticks, comma separated: "`a`, `b`, `c`".
pub(crate) fn quoted_list(names: &[impl AsRef<str>]) -> String {
    names
        .iter()
        .map(|name| format!("`{}`", name.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where a JSON text failed to parse, never what it held: serde's own message quotes the value
/// it choked on, and a server's answer can hold a token.
pub(crate) fn json_error(err: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match err.classify() {
        Category::Io => "cannot be read",
        Category::Syntax => "is not JSON",
        Category::Data => "is not the JSON we expect",
        Category::Eof => "is cut short",
    };
    format!("{what} (at line {}, column {})", err.line(), err.column())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_breaks_controls_and_commands_are_written_out() {
        assert_eq!(
            clean("a\nb\rc\u{1b}[31md\u{2028}e ##[stop-commands]x"),
            "a\\nb\\rc\\u{1b}[31md\\u{2028}e ##\\[stop-commands]x"
        );
        assert!(matches!(clean("plain: `text`, 50%"), Cow::Borrowed(_)));
    }

    #[test]
    fn json_errors_say_where_not_what() {
        let err = serde_json::from_str::<u64>("\"ghs_secret\"").unwrap_err();
        let said = json_error(&err);
        assert!(!said.contains("ghs_"), "{said}");
        assert_eq!(said, "is not the JSON we expect (at line 1, column 12)");
    }

    proptest::proptest! {
        #[test]
        fn shown_text_is_one_line_and_starts_no_command(text in "\\PC*|[\\x00-\\x1f\\u{80}-\\u{9f}\\u{2028}:#\\[a-z ]{0,40}") {
            let shown = line(&text);
            proptest::prop_assert!(shown.starts_with("token-keeper: "));
            proptest::prop_assert!(!shown.chars().any(unsafe_char), "{:?}", shown);
            proptest::prop_assert!(!shown.contains("##["), "{:?}", shown);
        }
    }
}
