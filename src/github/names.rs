//! GitHub's rules for the names in its answers: account logins, App slugs, repository names.
//!
//! A name from an answer decides which URLs git's credentials cover, so one that breaks these
//! rules is refused rather than used. The rules are GitHub's characters with a generous length:
//! no name GitHub issues is refused.

/// A user's or organization's login: letters, digits and hyphens, not starting with a hyphen; a
/// managed user's adds `_` and its enterprise's short code. An App's slug, and an enterprise's,
/// follow the same rule.
pub(crate) fn is_login(name: &str) -> bool {
    (1..=100).contains(&name.len())
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
}

/// A repository's name: letters, digits, `-`, `_` and `.`, at most 100, and not `.` or `..`.
pub(crate) fn is_repository(name: &str) -> bool {
    (1..=100).contains(&name.len())
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A name from an answer as an error shows it: cleaned of what could start a line, and short.
pub(crate) fn shown(name: &str) -> String {
    const LONGEST: usize = 60;
    crate::messages::clean(&crate::messages::cut(name, LONGEST)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_are_githubs() {
        for ok in ["octo-org", "Octo-Org", "a", "octocat_acme", "x1-2"] {
            assert!(is_login(ok), "{ok}");
        }
        for bad in [
            "",
            "-octo",
            "octo/app",
            "octo org",
            "octo\n",
            "octo.org",
            "../x",
            &"a".repeat(101),
        ] {
            assert!(!is_login(bad), "{bad:?}");
        }
    }

    #[test]
    fn repository_names_are_githubs() {
        for ok in ["app", "app.js", ".github", "a_b-c", "..."] {
            assert!(is_repository(ok), "{ok}");
        }
        for bad in ["", ".", "..", "../lib", "a/b", "a b", "a%2f", "a\\b"] {
            assert!(!is_repository(bad), "{bad:?}");
        }
    }

    #[test]
    fn names_are_shown_cleaned_and_short() {
        assert_eq!(shown("evil\n::x"), "evil\\n::x");
        assert_eq!(shown(&"a".repeat(70)).chars().count(), 61);
    }
}
