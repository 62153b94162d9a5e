//! The permission inputs: one `permission-<name>` input for each permission GitHub lists for
//! Apps, generated into `action.yml` with the list itself (`scripts/generate-permissions`).

pub use crate::github::permissions::PERMISSIONS;
use crate::github::permissions::Permission;

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

#[cfg(test)]
mod tests {
    #[test]
    fn inputs_use_hyphens() {
        let found = crate::github::permissions::find("pull-requests").unwrap();
        assert_eq!(found.input(), "permission-pull-requests");
    }
}
