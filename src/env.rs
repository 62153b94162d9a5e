//! The environment a process was given, read once: the command line takes the snapshot and
//! passes it down, so nothing below reads the process's variables on its own, and a test gives
//! any environment it likes.

use std::collections::BTreeMap;
use std::sync::Arc;

/// The variables of this process (or a step's, or a test's), by name. Cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct Env {
    vars: Arc<BTreeMap<String, String>>,
}

impl Env {
    /// This process's variables; names and values that are not UTF-8 are skipped.
    pub(crate) fn of_process() -> Self {
        Self::from_pairs(
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
        )
    }

    pub(crate) fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            vars: Arc::new(
                pairs
                    .into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
            ),
        }
    }

    /// The variable `name`, set or empty.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// The variable `name` when it is set and not empty: most variables mean nothing empty.
    pub(crate) fn given(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        self.vars.contains_key(name)
    }

    /// Sets `name`, for a test's environment.
    #[cfg(test)]
    pub(crate) fn set(&mut self, name: &str, value: &str) {
        Arc::make_mut(&mut self.vars).insert(name.to_owned(), value.to_owned());
    }

    /// Every variable, in the order of their names.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether this runs in a GitHub Actions job (the runner sets `GITHUB_ACTIONS=true` in every
    /// step).
    pub(crate) fn in_actions(&self) -> bool {
        self.get("GITHUB_ACTIONS") == Some("true")
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Env {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Self {
        Self::from_pairs(pairs)
    }
}

/// Whether `name` has the shape of a variable's name every shell and runner takes: ASCII
/// letters, digits and `_`, not starting with a digit.
pub(crate) fn is_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Its values may be secrets (an App's key in a variable): only the names are shown.
impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.vars.keys()).finish()
    }
}
