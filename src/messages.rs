//! What we say: the `token-keeper:` prefix, warnings, and text from elsewhere made safe to show.
//!
//! The runner reads workflow commands on stdout and stderr alike: from a line that starts with
//! `::` (after blanks), and from `##[name]` anywhere in a line; it splits lines at CR as well as
//! LF. Text we did not write (a server's name or error message, a path, an error's chain) goes
//! through `shown` before it is printed anywhere: no line break, control character or escape
//! sequence survives, no `##[` either, and every secret we hold shows as its fingerprint. So every
//! line we print is one we started, and the only workflow commands in it are ours.
//!
//! What a server or a command says is quoted only through `foreign`, which does not rely on
//! knowing our secrets: it takes out invisible characters and line breaks, then every run long
//! enough to carry part of a credential, whatever was done to it (split, percent- or
//! base64-encoded, cut short), and keeps a few hundred characters at most.

use std::borrow::Cow;
use std::io::Write;

use crate::secret;

/// How our lines start, and the title of our annotations.
pub(crate) const NAME: &str = "token-keeper";

/// The most of one piece of foreign text we quote.
const FOREIGN_LONGEST: usize = 300;
/// A run of this many credential characters could carry enough of one to rebuild it.
const CREDENTIAL_RUN: usize = 16;
/// What stands in for such a run.
const TAKEN_OUT: &str = "[…]";

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

/// What a server or a command said, as we may quote it: invisible characters and line breaks
/// taken out first (they could split a credential into harmless-looking pieces), then every run
/// of `CREDENTIAL_RUN` or more characters of tokens, JWTs, base64 or percent-encoding, and the
/// whole cut to `FOREIGN_LONGEST` characters. Words and short names stay; a credential, or any
/// part of one long enough to matter, does not.
pub(crate) fn foreign(text: &str) -> String {
    let visible = unbroken(text);
    let mut quoted = String::with_capacity(visible.len().min(FOREIGN_LONGEST * 4));
    let mut run = String::new();
    let close = |run: &mut String, quoted: &mut String| {
        if run.chars().count() >= CREDENTIAL_RUN {
            quoted.push_str(TAKEN_OUT);
        } else {
            quoted.push_str(run);
        }
        run.clear();
    };
    for c in visible.chars() {
        if in_credential(c) {
            run.push(c);
        } else {
            close(&mut run, &mut quoted);
            quoted.push(c);
        }
    }
    close(&mut run, &mut quoted);
    cut(&quoted, FOREIGN_LONGEST)
}

/// A URL's path as a log may quote it: each segment as `foreign` quotes a text, so a credential
/// put in one is taken out and the names around it stay; cut as a given value is.
pub(crate) fn foreign_path(path: &str) -> String {
    let segments: Vec<String> = path.split('/').map(foreign).collect();
    cut(&segments.join("/"), GIVEN_LONGEST)
}

/// `text` without its invisible characters, and with its line breaks taken out together with the
/// blanks around them, as a folded header or a wrapped line puts them.
fn unbroken(text: &str) -> String {
    let mut joined = String::with_capacity(text.len());
    let mut after_break = false;
    for c in text.chars() {
        let dropped = invisible(c) || (after_break && matches!(c, ' ' | '\t'));
        if matches!(
            c,
            '\n' | '\r' | '\u{b}' | '\u{c}' | '\u{85}' | '\u{2028}' | '\u{2029}'
        ) {
            joined.truncate(joined.trim_end_matches([' ', '\t']).len());
            after_break = true;
        } else if !dropped {
            after_break = false;
            joined.push(c);
        }
    }
    joined
}

/// The most of a value a person gave (a path, a name, a URL) that a message quotes.
const GIVEN_LONGEST: usize = 160;

/// A value a person gave, as a message quotes it: cut to `GIVEN_LONGEST` characters. Values that
/// hold a secret never get this far (`cli`'s check refuses them first).
pub(crate) fn short(value: &str) -> String {
    cut(value, GIVEN_LONGEST)
}

/// A library's own account of a failure, which may quote the server (a certificate's names), cut
/// as `foreign` cuts: its words are ours to read, so nothing else is taken out.
pub(crate) fn capped(text: &str) -> String {
    cut(text, FOREIGN_LONGEST)
}

/// `: detail` to end a sentence with, or nothing when there is no detail.
pub(crate) fn colon_then(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

/// `text` at most `longest` characters long, `…` marking a cut.
pub(crate) fn cut(text: &str, longest: usize) -> String {
    match text.char_indices().nth(longest) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// Characters of credentials as they travel: tokens and JWTs (letters, digits, `_`, `-`, `.`),
/// base64 (`+`, `/`, `=`) and percent-encoding (`%`). Any letter counts, so that a look-alike
/// put in for one does not split a run.
fn in_credential(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '~' | '+' | '/' | '=' | '%')
}

/// Characters that show as nothing, or as a line break: controls, Unicode's format characters
/// (zero-width spaces and joiners, direction marks, the soft hyphen, tags), the line and paragraph
/// separators, and the variation selectors.
fn invisible(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{ad}'
                | '\u{34f}'
                | '\u{600}'..='\u{605}'
                | '\u{61c}'
                | '\u{6dd}'
                | '\u{70f}'
                | '\u{115f}'..='\u{1160}'
                | '\u{180b}'..='\u{180f}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{206f}'
                | '\u{3164}'
                | '\u{fe00}'..='\u{fe0f}'
                | '\u{feff}'
                | '\u{ffa0}'
                | '\u{fff9}'..='\u{fffb}'
                | '\u{1d173}'..='\u{1d17a}'
                | '\u{e0000}'..='\u{e0fff}'
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

    #[test]
    fn a_path_keeps_its_names_and_loses_a_credential_in_a_segment() {
        assert_eq!(
            foreign_path("/installation/repositories"),
            "/installation/repositories"
        );
        assert_eq!(
            foreign_path("/repos/octo/app/git/ghp_0123456789abcdefABCDEF/refs"),
            "/repos/octo/app/git/[…]/refs"
        );
        assert_eq!(foreign_path(&"/a".repeat(200)).chars().count(), 161);
    }

    #[test]
    fn foreign_text_keeps_words_and_loses_every_long_run() {
        assert_eq!(
            foreign("Bad credentials: the `octo` App is not installed"),
            "Bad credentials: the `octo` App is not installed"
        );
        assert_eq!(
            foreign("bad bearer eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiIxIn0.c2ln here"),
            "bad bearer […] here"
        );
        assert_eq!(foreign("a\r\nb\u{200b}c"), "abc");
        let long = "word ".repeat(100);
        let quoted = foreign(&long);
        assert_eq!(quoted.chars().count(), FOREIGN_LONGEST + 1);
        assert!(quoted.ends_with('…'), "{quoted}");
    }

    #[test]
    fn a_cut_marks_itself_and_keeps_whole_characters() {
        assert_eq!(cut("abcdef", 3), "abc…");
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(cut("ééé", 2), "éé…");
    }

    /// What a server could do to a credential it quotes.
    fn altered(secret: &str) -> Vec<String> {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let mid = secret.len() / 2;
        let percent: String = secret.bytes().map(|b| format!("%{b:02X}")).collect();
        vec![
            secret.to_owned(),
            format!("{}\n{}", &secret[..mid], &secret[mid..]),
            format!("{}\r\n  {}", &secret[..mid], &secret[mid..]),
            format!("{}\u{200b}{}", &secret[..mid], &secret[mid..]),
            format!("{}\u{ad}{}", &secret[..mid], &secret[mid..]),
            percent,
            b64.encode(format!("Authorization: Bearer {secret}")),
            b64.encode(format!("x-access-token:{secret}")),
            secret[..secret.len() * 2 / 3].to_owned(),
            secret.replace('a', "а"),
        ]
    }

    proptest::proptest! {
        #[test]
        fn no_part_of_a_credential_survives_however_it_is_quoted(
            secret in "(eyJ[A-Za-z0-9_-]{20,60}\\.[A-Za-z0-9_-]{20,60}\\.[A-Za-z0-9_-]{20,60})|(ghs_[A-Za-z0-9]{36})",
            before in "[a-z :,]{0,20}",
            after in "[a-z :,]{0,20}",
        ) {
            for form in altered(&secret) {
                let quoted = foreign(&format!("{before}{form}{after}"));
                // Neither the credential nor what the server made of it, without what hides.
                let made: String = form.chars().filter(|c| !c.is_whitespace() && !invisible(*c)).collect();
                for carried in [&secret, &made] {
                    let chars: Vec<char> = carried.chars().collect();
                    for window in chars.windows(CREDENTIAL_RUN) {
                        let window: String = window.iter().collect();
                        proptest::prop_assert!(!quoted.contains(&window), "{:?} in {:?}", window, quoted);
                    }
                }
            }
        }

        #[test]
        fn shown_text_is_one_line_and_starts_no_command(text in "\\PC*|[\\x00-\\x1f\\u{80}-\\u{9f}\\u{2028}:#\\[a-z ]{0,40}") {
            let shown = line(&text);
            proptest::prop_assert!(shown.starts_with("token-keeper: "));
            proptest::prop_assert!(!shown.chars().any(unsafe_char), "{:?}", shown);
            proptest::prop_assert!(!shown.contains("##["), "{:?}", shown);
        }
    }
}
