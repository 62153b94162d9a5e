//! The step summary: a table for people of where the token came from and what it may do.
//!
//! Names and permissions come from GitHub's answer: each is pasted as a code span that no
//! backtick in it can end, in a cell that no pipe or line break in it can end.

use super::inputs::Config;
use crate::github::MintedToken;
use crate::keeper::source::TokenSource;
use crate::messages;

/// The summary of a token minted from `source` for `account`.
pub(crate) fn summary(
    config: &Config,
    source: &TokenSource,
    account: &str,
    minted: &MintedToken,
) -> String {
    // A keyless token's answer lists neither: its trust policy decided them.
    let (all, own) = match source {
        TokenSource::App { .. } => ("all the installation can reach", "the installation's"),
        TokenSource::Exchange { .. } => {
            ("as the trust policy grants", "as the trust policy grants")
        }
    };
    let repositories = listed(minted.repositories.iter().cloned(), all);
    let permissions = listed(
        minted.permissions.iter().map(|(k, v)| format!("{k}: {v}")),
        own,
    );
    let refresh = if config.git_credentials {
        format!("after {}s", config.settings.refresh_after.as_secs())
    } else {
        format!("off ({})", code("git-credentials: false"))
    };
    let rows = [
        ("From", format!("{} on {}", origin(source), code(account))),
        ("Repositories", repositories),
        ("Permissions", permissions),
        ("Expires", minted.expires_at.rfc3339()),
        ("Token", code(&minted.token.fingerprint())),
        ("Git refresh", refresh),
    ];
    let mut table = String::from("### token-keeper\n\n| | |\n|---|---|\n");
    for (name, value) in rows {
        table.push_str(&format!("| {name} | {} |\n", cell(&value)));
    }
    table.push('\n');
    table
}

/// Where the token came from, for the log and the summary.
pub(crate) fn origin(source: &TokenSource) -> String {
    match source {
        TokenSource::App { installation, .. } => format!(
            "installation {}, App {}",
            installation.id,
            code(&installation.app_slug)
        ),
        TokenSource::Exchange { exchange, .. } => format!(
            "keyless: policy {} at {}",
            code(&exchange.policy),
            code(exchange.service.as_str())
        ),
    }
}

/// `items` as code spans, comma separated; `none` when there are none.
fn listed(items: impl Iterator<Item = String>, none: &str) -> String {
    let items: Vec<String> = items.map(|i| code(&i)).collect();
    if items.is_empty() {
        none.to_owned()
    } else {
        items.join(", ")
    }
}

/// `text` as a markdown code span: fenced by one backtick more than its longest run of them,
/// and padded when it starts or ends with one, as CommonMark reads spans.
fn code(text: &str) -> String {
    let text = messages::clean(text);
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    let pad = if text.starts_with('`') || text.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{text}{pad}{fence}")
}

/// `text` as a table cell's content: one line, its pipes escaped (GitHub reads `\|` as a pipe
/// even inside a code span).
fn cell(text: &str) -> String {
    messages::clean(text).replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_backtick_ends_a_code_span_early() {
        assert_eq!(code("app"), "`app`");
        assert_eq!(code("a`b"), "``a`b``");
        assert_eq!(code("`x``"), "``` `x`` ```");
    }

    #[test]
    fn no_pipe_or_line_break_ends_a_cell_early() {
        assert_eq!(cell("a|b\n| forged |"), "a\\|b\\n\\| forged \\|");
    }
}
