//! The GitHub App permissions a token can ask for, one `permission-<name>` input each.
//!
//! The one list both the input parser and the test of `action.yml` read: adding a permission here
//! without declaring its input (or the reverse) fails the tests.

/// Levels GitHub accepts for a permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Levels {
    Read,
    Write,
    ReadWrite,
    ReadWriteAdmin,
}

impl Levels {
    pub fn allowed(self) -> &'static [&'static str] {
        match self {
            Levels::Read => &["read"],
            Levels::Write => &["write"],
            Levels::ReadWrite => &["read", "write"],
            Levels::ReadWriteAdmin => &["read", "write", "admin"],
        }
    }
}

/// A permission input: its name as in `permission-<name>` and the API's name.
#[derive(Debug, Clone, Copy)]
pub struct Permission {
    pub input: &'static str,
    pub levels: Levels,
}

impl Permission {
    /// The name in the API (`pull_requests` for `pull-requests`).
    pub fn api_name(&self) -> String {
        self.input.replace('-', "_")
    }
}

const fn p(input: &'static str, levels: Levels) -> Permission {
    Permission { input, levels }
}

use Levels::{Read, ReadWrite, ReadWriteAdmin, Write};

pub const PERMISSIONS: &[Permission] = &[
    p("actions", ReadWrite),
    p("administration", ReadWrite),
    p("checks", ReadWrite),
    p("codespaces", ReadWrite),
    p("contents", ReadWrite),
    p("dependabot-secrets", ReadWrite),
    p("deployments", ReadWrite),
    p("email-addresses", ReadWrite),
    p("environments", ReadWrite),
    p("followers", ReadWrite),
    p("git-ssh-keys", ReadWrite),
    p("gpg-keys", ReadWrite),
    p("interaction-limits", ReadWrite),
    p("issues", ReadWrite),
    p("members", ReadWrite),
    p("metadata", ReadWrite),
    p("organization-administration", ReadWrite),
    p("organization-announcement-banners", ReadWrite),
    p("organization-copilot-seat-management", Write),
    p("organization-custom-org-roles", ReadWrite),
    p("organization-custom-properties", ReadWriteAdmin),
    p("organization-custom-roles", ReadWrite),
    p("organization-events", Read),
    p("organization-hooks", ReadWrite),
    p("organization-packages", ReadWrite),
    p("organization-personal-access-token-requests", ReadWrite),
    p("organization-personal-access-tokens", ReadWrite),
    p("organization-plan", Read),
    p("organization-projects", ReadWriteAdmin),
    p("organization-secrets", ReadWrite),
    p("organization-self-hosted-runners", ReadWrite),
    p("organization-user-blocking", ReadWrite),
    p("packages", ReadWrite),
    p("pages", ReadWrite),
    p("profile", Write),
    p("pull-requests", ReadWrite),
    p("repository-custom-properties", ReadWrite),
    p("repository-hooks", ReadWrite),
    p("repository-projects", ReadWriteAdmin),
    p("secret-scanning-alerts", ReadWrite),
    p("secrets", ReadWrite),
    p("security-events", ReadWrite),
    p("single-file", ReadWrite),
    p("starring", ReadWrite),
    p("statuses", ReadWrite),
    p("team-discussions", ReadWrite),
    p("vulnerability-alerts", ReadWrite),
    p("workflows", Write),
];

pub fn find(input: &str) -> Option<&'static Permission> {
    PERMISSIONS.iter().find(|p| p.input == input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_sorted() {
        let names: Vec<&str> = PERMISSIONS.iter().map(|p| p.input).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted);
    }

    #[test]
    fn api_names_use_underscores() {
        assert_eq!(
            find("pull-requests").map(Permission::api_name).as_deref(),
            Some("pull_requests")
        );
        assert!(find("pull_requests").is_none());
    }
}
