//! The action's front door: the step's inputs (`INPUT_*` variables) turned into the keeper's
//! `Settings`, with the action's own options, and every refusal named by its input. Pure: no I/O.
//!
//! The runner sets every declared input, empty when the workflow leaves it out, and keeps the
//! hyphens of input names (`INPUT_APP-ID`): empty means unset, and names are read from the
//! environment map, never through a shell.

use reqwest::Url;

use super::permissions;
use crate::env::Env;
use crate::keeper::settings::{self, Door, Field, Given, Refusal, Setting, Settings};
use crate::messages::short;

/// Everything the main step needs, checked.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) settings: Settings,
    /// Inputs taken but not vouched for: permission names or levels GitHub's list lacks, which
    /// go to GitHub as given.
    pub(crate) doubts: Vec<InputError>,
    /// Install git's credential helper for later steps.
    pub(crate) git_credentials: bool,
    /// Clear `actions/checkout`'s auth header within the token's scope.
    pub(crate) override_checkout_credentials: bool,
    /// Variables to export the token to for later steps.
    pub(crate) export_env: Vec<String>,
    /// Make the App's bot the git author and committer of later steps.
    pub(crate) git_identity: bool,
}

/// A bad input: which one, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("input `{input}`: {message}")]
pub(crate) struct InputError {
    pub(crate) input: String,
    pub(crate) message: String,
}

/// A refusal, named by its input as the workflow spelled it; `key_given` says whether the
/// workflow passed a key.
fn named(refusal: Refusal, key_given: bool) -> InputError {
    let Refusal { field, mut message } = refusal;
    let input = match field {
        Field::Permission(name) => format!("{}{name}", permissions::INPUT_PREFIX),
        Field::Setting(setting) => {
            // The keeper says a key is missing; how to pass one is ours to say.
            if setting == Setting::PrivateKey && !key_given {
                message.push_str(", for example `private-key: ${{ secrets.APP_PRIVATE_KEY }}`");
            }
            setting.names().input.to_owned()
        }
    };
    InputError { input, message }
}

/// The input that gives `field`.
pub(crate) fn input_of(field: &Field) -> String {
    match field {
        Field::Permission(name) => permissions::input_name(name),
        Field::Setting(setting) => setting.names().input.to_owned(),
    }
}

/// An input's value; empty and blank count as unset.
pub(crate) fn input<'a>(env: &'a Env, name: &str) -> Option<&'a str> {
    let key = format!("INPUT_{}", name.to_ascii_uppercase().replace(' ', "_"));
    env.get(&key).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// The input of `setting`.
fn value(env: &Env, setting: Setting) -> Option<String> {
    input(env, setting.names().input).map(str::to_owned)
}

/// The input of `setting`, or its default.
fn value_or_default(env: &Env, setting: Setting) -> &str {
    input(env, setting.names().input).unwrap_or(setting.names().default)
}

/// What the workflow gave: the inputs, and the job's repository, which the runner names.
fn given(env: &Env) -> Given {
    let job = |name: &str| env.given(name).map(str::to_owned);
    Given {
        client_id: value(env, Setting::ClientId),
        app_id: value(env, Setting::AppId),
        private_key: value(env, Setting::PrivateKey),
        signer_command: value(env, Setting::SignerCommand),
        signer_public_key: value(env, Setting::SignerPublicKey).map(String::into_bytes),
        aws_kms_key: value(env, Setting::AwsKmsKey),
        aws_region: value(env, Setting::AwsRegion),
        owner: value(env, Setting::Owner),
        repositories: value(env, Setting::Repositories),
        enterprise: value(env, Setting::Enterprise),
        permissions: permission_inputs(env),
        api_url: api_url_given(env),
        git_server_url: value(env, Setting::GitServerUrl),
        refresh_after: value(env, Setting::RefreshAfter),
        ca_certificates: value(env, Setting::CaCertificates),
        sts_identity: value(env, Setting::StsIdentity),
        sts_scope: value(env, Setting::StsScope),
        sts_domain: value(env, Setting::StsDomain),
        identity: Default::default(),
        repository: job("GITHUB_REPOSITORY"),
        repository_owner: job("GITHUB_REPOSITORY_OWNER"),
    }
}

/// The `permission-*` inputs, each by its name as the workflow spelled it and its level. The
/// runner passes inputs that `action.yml` does not declare (`permission-pull_requests`) all the
/// same.
fn permission_inputs(env: &Env) -> Vec<(String, String)> {
    let prefix = format!("INPUT_{}", permissions::INPUT_PREFIX.to_ascii_uppercase());
    env.iter()
        .filter_map(|(key, level)| {
            let name = key.strip_prefix(&prefix)?;
            Some((name.to_ascii_lowercase(), level.to_owned()))
        })
        .collect()
}

/// Read and check every input of the main step.
pub(crate) fn parse(env: &Env) -> Result<Config, InputError> {
    let given = given(env);
    let key_given = given.private_key.is_some();
    let (settings, doubts) =
        Settings::check(&given, Door::Action).map_err(|refusal| named(refusal, key_given))?;
    // Read by the post step; checked here, so that a typo fails the job at its start.
    boolean(env, Setting::SkipTokenRevoke)?;
    Ok(Config {
        settings,
        doubts: doubts
            .into_iter()
            .map(|doubt| named(doubt, key_given))
            .collect(),
        git_credentials: boolean(env, Setting::GitCredentials)?,
        override_checkout_credentials: boolean(env, Setting::OverrideCheckoutCredentials)?,
        export_env: export_env(env)?,
        git_identity: boolean(env, Setting::GitIdentity)?,
    })
}

/// The API URL given: the input, else `GITHUB_API_URL`.
fn api_url_given(env: &Env) -> Option<String> {
    value(env, Setting::ApiUrl).or_else(|| env.given("GITHUB_API_URL").map(str::to_owned))
}

/// The API base URL: the input, else `GITHUB_API_URL`, else github.com's.
pub(crate) fn api_url(env: &Env) -> Result<Url, InputError> {
    let text = api_url_given(env);
    let text = text.as_deref().unwrap_or(Setting::ApiUrl.names().default);
    settings::parse_url(Setting::ApiUrl, text).map_err(|refusal| named(refusal, false))
}

/// A boolean input, or its default.
pub(crate) fn boolean(env: &Env, setting: Setting) -> Result<bool, InputError> {
    match value_or_default(env, setting).to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(InputError {
            input: setting.names().input.to_owned(),
            message: format!("`{}` is not a boolean: use `true` or `false`", short(other)),
        }),
    }
}

fn export_env(env: &Env) -> Result<Vec<String>, InputError> {
    let names = input(env, Setting::ExportEnv.names().input)
        .map(settings::split_list)
        .unwrap_or_default();
    for name in &names {
        if !crate::env::is_name(name) {
            return Err(InputError {
                input: Setting::ExportEnv.names().input.to_owned(),
                message: format!(
                    "`{}` is not a variable name: use names like `GH_TOKEN`",
                    short(name)
                ),
            });
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::time::Duration;

    use super::*;
    use crate::github::Target;
    use crate::keeper::source::Origin;

    const KEY: &str = include_str!("../../tests/fixtures/app-key.pem");

    fn env(pairs: &[(&str, &str)]) -> Env {
        let mut env: Env = [
            ("INPUT_APP-ID", "12345"),
            ("INPUT_PRIVATE-KEY", KEY),
            ("GITHUB_REPOSITORY", "octo-org/app"),
            ("GITHUB_REPOSITORY_OWNER", "octo-org"),
            ("GITHUB_API_URL", "https://api.github.com"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        for (k, v) in pairs {
            env.set(k, v);
        }
        env
    }

    fn error_of(pairs: &[(&str, &str)]) -> InputError {
        parse(&env(pairs)).expect_err("should be refused")
    }

    #[test]
    fn no_owner_and_no_repositories_means_the_current_repository() {
        let config = parse(&env(&[])).unwrap();
        assert_eq!(
            config.settings.target,
            Target::Repositories {
                owner: "octo-org".into(),
                repos: vec!["app".into()]
            }
        );
        assert_eq!(config.settings.request.repositories, vec!["app".to_owned()]);
    }

    #[test]
    fn owner_alone_means_every_repository() {
        let config = parse(&env(&[("INPUT_OWNER", "other")])).unwrap();
        assert_eq!(config.settings.target, Target::Owner("other".into()));
        assert!(config.settings.request.repositories.is_empty());
    }

    #[test]
    fn repositories_are_split_on_commas_and_newlines() {
        let config = parse(&env(&[("INPUT_REPOSITORIES", "a, b\nocto-org/c\n\n a ")])).unwrap();
        assert_eq!(config.settings.request.repositories, vec!["a", "b", "c"]);
    }

    #[test]
    fn empty_inputs_count_as_unset() {
        let config = parse(&env(&[
            ("INPUT_OWNER", ""),
            ("INPUT_REPOSITORIES", "  "),
            ("INPUT_REFRESH-AFTER", ""),
        ]))
        .unwrap();
        assert!(matches!(
            config.settings.target,
            Target::Repositories { .. }
        ));
        assert_eq!(config.settings.refresh_after, Duration::from_secs(50 * 60));
    }

    #[test]
    fn client_id_wins_over_app_id() {
        let config = parse(&env(&[("INPUT_CLIENT-ID", "Iv23abc")])).unwrap();
        assert!(
            matches!(config.settings.origin, Origin::App { issuer, .. } if issuer == "Iv23abc")
        );
    }

    #[test]
    fn keyless_mode_needs_no_key_and_scopes_as_owner_and_repositories_do() {
        let keyless = |extra: &[(&str, &str)]| {
            let mut pairs = vec![
                ("INPUT_STS-IDENTITY", "release"),
                ("INPUT_PRIVATE-KEY", ""),
                ("INPUT_APP-ID", ""),
            ];
            pairs.extend_from_slice(extra);
            parse(&env(&pairs))
        };
        let config = keyless(&[]).unwrap();
        let Origin::Exchange { exchange, .. } = &config.settings.origin else {
            panic!("keyless: {:?}", config.settings.origin)
        };
        assert_eq!(exchange.service.as_str(), "https://octo-sts.dev/");
        assert_eq!(exchange.scope, "octo-org/app");
        assert_eq!(
            config.settings.target,
            Target::Repositories {
                owner: "octo-org".into(),
                repos: vec!["app".into()]
            }
        );
        let owner_wide = keyless(&[("INPUT_OWNER", "acme")]).unwrap();
        assert_eq!(owner_wide.settings.target, Target::Owner("acme".into()));
        let local = keyless(&[
            ("INPUT_STS-DOMAIN", "http://127.0.0.1:8080"),
            ("INPUT_STS-SCOPE", "acme/tools"),
        ])
        .unwrap();
        let Origin::Exchange { exchange, .. } = &local.settings.origin else {
            panic!()
        };
        assert_eq!(exchange.audience(), "127.0.0.1:8080");
        assert_eq!(exchange.scope, "acme/tools");
    }

    #[test]
    fn keyless_mode_refuses_a_key_permissions_or_plain_http_elsewhere() {
        let with = |extra: &[(&str, &str)]| {
            let mut pairs = vec![("INPUT_STS-IDENTITY", "release"), ("INPUT_APP-ID", "")];
            pairs.extend_from_slice(extra);
            parse(&env(&pairs)).unwrap_err().to_string()
        };
        assert!(with(&[]).contains("`private-key`: is set in keyless mode"));
        let no_key = |extra: &[(&str, &str)]| {
            let mut pairs = vec![("INPUT_PRIVATE-KEY", "")];
            pairs.extend_from_slice(extra);
            with(&pairs)
        };
        assert!(no_key(&[("INPUT_PERMISSION-CONTENTS", "write")]).contains("trust policy grants"));
        assert!(no_key(&[("INPUT_STS-DOMAIN", "http://sts.example.com")]).contains("plain http"));
        assert!(no_key(&[("INPUT_REPOSITORIES", "a, b")]).contains("one repository or one owner"));
    }

    #[test]
    fn enterprise_uses_the_enterprise_lookup() {
        let config = parse(&env(&[("INPUT_ENTERPRISE", "acme")])).unwrap();
        assert_eq!(config.settings.target, Target::Enterprise("acme".into()));
    }

    #[test]
    fn permissions_are_read_with_api_names() {
        let config = parse(&env(&[
            ("INPUT_PERMISSION-PULL-REQUESTS", "write"),
            ("INPUT_PERMISSION-CONTENTS", "Read"),
        ]))
        .unwrap();
        let expected = BTreeMap::from([
            ("contents".to_owned(), "read".to_owned()),
            ("pull_requests".to_owned(), "write".to_owned()),
        ]);
        assert_eq!(config.settings.request.permissions, expected);
    }

    #[test]
    fn unknown_permissions_and_levels_are_asked_for_with_a_warning() {
        let config = parse(&env(&[
            ("INPUT_PERMISSION-TELEPATHY", "read"),
            ("INPUT_PERMISSION-CONTENTS", "Admin"),
            ("INPUT_PERMISSION-PULL_REQUESTS", "write"),
        ]))
        .unwrap();
        let expected = BTreeMap::from([
            ("contents".to_owned(), "admin".to_owned()),
            ("pull_requests".to_owned(), "write".to_owned()),
            ("telepathy".to_owned(), "read".to_owned()),
        ]);
        assert_eq!(config.settings.request.permissions, expected);
        let doubts: Vec<String> = config.doubts.iter().map(ToString::to_string).collect();
        assert_eq!(doubts.len(), 2, "{doubts:?}");
        assert!(doubts[0].contains("`admin` is not a level GitHub lists for `contents`"));
        assert!(doubts[1].contains("`telepathy` is not a permission GitHub lists"));
    }

    /// As its description in `action.yml` says: passed on as the official action does, with a
    /// warning where GitHub's list is the one we ship.
    #[test]
    fn the_retired_team_discussions_permission_is_asked_for_as_given() {
        for (api, warned) in [
            ("https://api.github.com", true),
            ("https://ghes.example.com/api/v3", false),
        ] {
            let config = parse(&env(&[
                ("INPUT_GITHUB-API-URL", api),
                ("INPUT_PERMISSION-TEAM-DISCUSSIONS", "read"),
            ]))
            .unwrap();
            let expected = BTreeMap::from([("team_discussions".to_owned(), "read".to_owned())]);
            assert_eq!(config.settings.request.permissions, expected, "{api}");
            let doubts: Vec<String> = config.doubts.iter().map(ToString::to_string).collect();
            assert_eq!(doubts.len(), usize::from(warned), "{api}: {doubts:?}");
            assert!(
                doubts
                    .iter()
                    .all(|d| d.contains("`team_discussions` is not a permission GitHub lists")),
                "{doubts:?}"
            );
        }
    }

    #[test]
    fn on_enterprise_server_unknown_permissions_get_no_warning() {
        let config = parse(&env(&[
            ("INPUT_GITHUB-API-URL", "https://ghes.example.com/api/v3"),
            ("INPUT_PERMISSION-TELEPATHY", "read"),
            ("INPUT_PERMISSION-WORKFLOWS", "read"),
        ]))
        .unwrap();
        assert_eq!(config.settings.request.permissions["telepathy"], "read");
        assert_eq!(config.doubts, Vec::new());
    }

    #[test]
    fn bad_inputs_are_named_with_a_fix() {
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: &[Case] = &[
            (&[("INPUT_APP-ID", "")], "app-id", "client id"),
            (&[("INPUT_PRIVATE-KEY", "")], "private-key", "secrets."),
            (
                &[("INPUT_PRIVATE-KEY", "not a key")],
                "private-key",
                "not PEM",
            ),
            (
                &[("INPUT_REPOSITORIES", "other/app")],
                "repositories",
                "one token-keeper step per owner",
            ),
            (
                &[("INPUT_REFRESH-AFTER", "0")],
                "refresh-after",
                "too short",
            ),
            (
                &[("INPUT_REFRESH-AFTER", "-5m")],
                "refresh-after",
                "not a duration",
            ),
            (
                &[("INPUT_REFRESH-AFTER", "61m")],
                "refresh-after",
                "lifetime",
            ),
            (
                &[("INPUT_REFRESH-AFTER", "abc")],
                "refresh-after",
                "not a duration",
            ),
            (
                &[("INPUT_GITHUB-API-URL", "http://ghes.example.com/api/v3")],
                "github-api-url",
                "plain http",
            ),
            (
                &[("INPUT_GITHUB-API-URL", "ftp://x")],
                "github-api-url",
                "https",
            ),
            (
                &[("INPUT_SKIP-TOKEN-REVOKE", "yes")],
                "skip-token-revoke",
                "`true` or `false`",
            ),
            (
                &[("INPUT_OWNER", "bad owner")],
                "owner",
                "not a valid GitHub name",
            ),
            (
                &[("INPUT_ENTERPRISE", "acme"), ("INPUT_OWNER", "o")],
                "enterprise",
                "leave `owner`",
            ),
            (
                &[("INPUT_EXPORT-ENV", "GH TOKEN")],
                "export-env",
                "variable name",
            ),
        ];
        for (pairs, input, fix) in cases {
            let err = error_of(pairs);
            assert_eq!(err.input, *input, "{pairs:?}: {err}");
            assert!(err.message.contains(fix), "{pairs:?}: {err}");
        }
    }

    #[test]
    fn git_server_url_input_overrides_the_derivation() {
        let config = parse(&env(&[("INPUT_GIT-SERVER-URL", "https://git.example.com")])).unwrap();
        assert_eq!(
            config.settings.git_server.unwrap().as_str(),
            "https://git.example.com/"
        );
    }

    /// The one table's inputs are `action.yml`'s, with its defaults (but for the runner's own
    /// values, `${{ … }}`), and the README's table of inputs lists them with the same.
    #[test]
    fn the_settings_table_holds_action_yml_and_the_readme() {
        use crate::keeper::settings::{SETTINGS, readme_table};
        let action: serde_json::Value =
            serde_saphyr::from_str(include_str!("../../action.yml")).unwrap();
        let declared = action["inputs"].as_object().unwrap();
        let family = Setting::Permission.names().input;
        let declared_names: BTreeSet<&str> = declared
            .keys()
            .map(|name| match name.starts_with(permissions::INPUT_PREFIX) {
                true => family,
                false => name.as_str(),
            })
            .collect();
        let ours: Vec<_> = SETTINGS.iter().filter(|n| !n.input.is_empty()).collect();
        let our_names: BTreeSet<&str> = ours.iter().map(|n| n.input).collect();
        assert_eq!(declared_names, our_names);
        // What the README shows as an input's default: the runner's value, or ours.
        let shown_default = |input: &str| -> String {
            let declared = declared
                .get(input)
                .and_then(|spec| spec["default"].as_str())
                .unwrap_or_default();
            if declared.starts_with("${{") {
                return declared.to_owned();
            }
            let ours = SETTINGS.iter().find(|n| n.input == input).unwrap();
            assert_eq!(declared, ours.default, "the default of `{input}`");
            ours.default.to_owned()
        };
        let mut listed = BTreeSet::new();
        for row in readme_table("| input | default | what it does |") {
            let (inputs, default) = (&row[0], &row[1]);
            for input in inputs {
                listed.insert(input.clone());
                let wanted = shown_default(input);
                let shown: Vec<String> =
                    (!wanted.is_empty()).then_some(wanted).into_iter().collect();
                assert_eq!(default, &shown, "the README's default of `{input}`");
            }
        }
        let our_names: BTreeSet<String> = our_names.into_iter().map(str::to_owned).collect();
        assert_eq!(listed, our_names, "the README's inputs");
    }
}
