//! The GitHub App permissions a token can ask for, one `permission-<name>` input each.
//!
//! The list is generated from GitHub's own OpenAPI description (`scripts/generate-permissions`),
//! with the inputs of `action.yml`; CI fails when either drifts from it. A name or level that is
//! not in the list still goes to GitHub, with a warning: GitHub adds permissions, and its own
//! answer decides.

mod generated;

pub use generated::PERMISSIONS;

/// A permission, by its name in the API (`pull_requests`), and the levels GitHub lists for it.
#[derive(Debug, Clone, Copy)]
pub struct Permission {
    pub(crate) name: &'static str,
    pub(crate) levels: &'static [&'static str],
}

impl Permission {
    /// Its input, `permission-pull-requests`.
    pub fn input(&self) -> String {
        input_name(self.name)
    }
}

/// The input of the permission GitHub's API calls `name`: `pull_requests` is asked for with
/// `permission-pull-requests`.
pub(crate) fn input_name(name: &str) -> String {
    format!("{INPUT_PREFIX}{}", name.replace('_', "-"))
}

/// How the permission inputs' names start.
pub(crate) const INPUT_PREFIX: &str = "permission-";

/// The permission an input names: `pull-requests` and `pull_requests` alike.
pub(crate) fn find(input_name: &str) -> Option<&'static Permission> {
    let name = input_name.to_ascii_lowercase().replace('-', "_");
    PERMISSIONS.iter().find(|p| p.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_sorted() {
        let names: Vec<&str> = PERMISSIONS.iter().map(|p| p.name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted);
    }

    #[test]
    fn inputs_use_hyphens_and_either_spelling_finds_the_permission() {
        let found = find("pull-requests").unwrap();
        assert_eq!(found.name, "pull_requests");
        assert_eq!(found.input(), "permission-pull-requests");
        assert_eq!(find("PULL_REQUESTS").unwrap().name, "pull_requests");
        assert!(find("pull-request").is_none());
    }
}
