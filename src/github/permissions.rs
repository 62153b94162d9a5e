//! The permissions GitHub lists for App tokens, and the levels it lists for each.
//!
//! The list is generated from GitHub's own OpenAPI description (`scripts/generate-permissions`);
//! CI fails when it drifts from it. A name or level that is not in the list may still be asked
//! for: GitHub adds permissions, and its own answer decides.

mod generated;

pub use generated::PERMISSIONS;

/// A permission, by its name in the API (`pull_requests`), and the levels GitHub lists for it.
#[derive(Debug, Clone, Copy)]
pub struct Permission {
    pub(crate) name: &'static str,
    pub(crate) levels: &'static [&'static str],
}

/// The permission `name` names: `pull-requests` and `pull_requests` alike, in any case.
pub(crate) fn find(name: &str) -> Option<&'static Permission> {
    let name = name.to_ascii_lowercase().replace('-', "_");
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
    fn either_spelling_finds_the_permission() {
        assert_eq!(find("pull-requests").unwrap().name, "pull_requests");
        assert_eq!(find("PULL_REQUESTS").unwrap().name, "pull_requests");
        assert!(find("pull-request").is_none());
    }
}
