//! The runner's environment: the variables of a step as a map, and what the runner hands a step
//! through them beyond inputs (the request for the job's identity).

use std::collections::BTreeMap;

use crate::github::exchange::IdentityRequest;
use crate::secret::Secret;

/// The process environment, as a map.
pub(crate) type Env = BTreeMap<String, String>;

/// The environment of this process; names and values that are not UTF-8 are skipped.
pub(crate) fn process_env() -> Env {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// Where this step asks for the job's OIDC identity: the runner gives every step of a job with
/// `permissions: id-token: write` both variables. `None` when it has not both.
pub(crate) fn identity_request(get: impl Fn(&str) -> Option<String>) -> Option<IdentityRequest> {
    let url = url::Url::parse(&get("ACTIONS_ID_TOKEN_REQUEST_URL")?).ok()?;
    let token = get("ACTIONS_ID_TOKEN_REQUEST_TOKEN").filter(|t| !t.is_empty())?;
    Some(IdentityRequest::new(url, Secret::new(token)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_request_needs_both_variables() {
        let both = |name: &str| match name {
            "ACTIONS_ID_TOKEN_REQUEST_URL" => {
                Some("https://runner.example/t?api-version=2.0".into())
            }
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN" => Some("a-request-secret".into()),
            _ => None,
        };
        let request = identity_request(both).unwrap();
        assert!(!format!("{request:?}").contains("a-request-secret"));
        let url_only = |name: &str| both(name).filter(|_| name.ends_with("URL"));
        assert!(identity_request(url_only).is_none());
    }
}
