//! Which `Authorization` carries a token of ours, and the same header with the live token in its
//! place. Pure: the proxy asks it for every request to a GitHub host it serves.
//!
//! Clients send a token three ways: `Bearer TOKEN` (octokit, curl scripts, Go's clients),
//! `token TOKEN` (older scripts, the GitHub docs' examples), and `Basic` with the token as the
//! password (git's `x-access-token:TOKEN`) or as the user name (`https://TOKEN@github.com`).
//! Whatever else a header holds (a JWT, a personal token, a user's password) is not ours and
//! passes as it is.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// `value` with `live` in place of the token of ours it carries, in the same scheme, the scheme's
/// name spelled as the client spelled it; `None` when it carries none of ours.
pub(super) fn swapped(value: &str, ours: impl Fn(&str) -> bool, live: &str) -> Option<String> {
    let (scheme, credentials) = value.trim().split_once(' ')?;
    let credentials = credentials.trim();
    if scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token") {
        return ours(credentials).then(|| format!("{scheme} {live}"));
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(credentials).ok()?;
    let (user, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    let pair = if ours(password) {
        format!("{user}:{live}")
    } else if ours(user) {
        format!("{live}:{password}")
    } else {
        return None;
    };
    Some(format!("{scheme} {}", STANDARD.encode(pair)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "ghs_oldOLDoldOLDoldOLDoldOLDoldOLDold00";
    const LIVE: &str = "ghs_liveLIVEliveLIVEliveLIVEliveLIVE11";

    fn ours(token: &str) -> bool {
        token == OLD
    }

    fn basic(pair: &str) -> String {
        format!("Basic {}", STANDARD.encode(pair))
    }

    #[test]
    fn a_bearer_or_token_of_ours_gets_the_live_token_in_the_same_scheme() {
        assert_eq!(
            swapped(&format!("Bearer {OLD}"), ours, LIVE),
            Some(format!("Bearer {LIVE}"))
        );
        assert_eq!(
            swapped(&format!("token {OLD}"), ours, LIVE),
            Some(format!("token {LIVE}"))
        );
        assert_eq!(
            swapped(&format!("bearer  {OLD} "), ours, LIVE),
            Some(format!("bearer {LIVE}"))
        );
    }

    #[test]
    fn gits_basic_pair_keeps_its_user_and_gets_the_live_token() {
        let pair = |value: String| {
            let encoded = value.strip_prefix("Basic ").unwrap().to_owned();
            String::from_utf8(STANDARD.decode(encoded).unwrap()).unwrap()
        };
        let git = swapped(&basic(&format!("x-access-token:{OLD}")), ours, LIVE).unwrap();
        assert_eq!(pair(git), format!("x-access-token:{LIVE}"));
        let as_user = swapped(&basic(&format!("{OLD}:x-oauth-basic")), ours, LIVE).unwrap();
        assert_eq!(pair(as_user), format!("{LIVE}:x-oauth-basic"));
    }

    #[test]
    fn anything_not_ours_passes_as_it_is() {
        for value in [
            "Bearer eyJhbGciOiJSUzI1NiJ9.e30.c2ln".to_owned(),
            "token ghp_someoneElsesPersonalAccessToken0000".to_owned(),
            basic("octocat:hunter2"),
            format!("Digest {OLD}"),
            format!("Bearer{OLD}"),
            "Basic !!!not-base64".to_owned(),
            basic("no-colon-at-all"),
            String::new(),
        ] {
            assert_eq!(swapped(&value, ours, LIVE), None, "{value}");
        }
    }
}
