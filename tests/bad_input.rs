//! Bad input: one `::error::` line that names the input and the fix, exit code 1, nothing minted
//! and no state left behind.

use testkit::fake_github::{APP_KEY, FakeGitHub, app_inputs};
use testkit::runner::{Job, View};

const OPENSSH: &str = include_str!("fixtures/openssh-key");
const PUBLIC: &str = include_str!("fixtures/app-key.pub.pem");
const EC: &str = include_str!("fixtures/ec-key.pem");
const ENCRYPTED: &str = include_str!("fixtures/encrypted-key.pem");

struct Case {
    /// Inputs over the good defaults; an empty value unsets one.
    inputs: &'static [(&'static str, &'static str)],
    /// Variables to remove from the step's environment.
    unset: &'static [&'static str],
    /// What the error line must say: the input, and words of the fix.
    says: &'static [&'static str],
}

const fn case(
    inputs: &'static [(&'static str, &'static str)],
    says: &'static [&'static str],
) -> Case {
    Case {
        inputs,
        unset: &[],
        says,
    }
}

fn cases() -> Vec<Case> {
    let truncated: &'static str =
        Box::leak(APP_KEY[..APP_KEY.len() / 2].to_owned().into_boxed_str());
    let key_cases: Vec<(&'static str, &'static [&'static str])> = vec![
        ("", &["`private-key`", "secrets."]),
        ("   ", &["`private-key`", "secrets."]),
        (OPENSSH, &["`private-key`", "OpenSSH key", "`.pem`"]),
        (PUBLIC, &["`private-key`", "public key", "`.pem`"]),
        (EC, &["`private-key`", "not an RSA key", "`.pem`"]),
        (ENCRYPTED, &["`private-key`", "encrypted", "unencrypted"]),
        (truncated, &["`private-key`", "truncated", "whole `.pem`"]),
        (
            "0123456789abcdef0123456789abcdef01234567",
            &["`private-key`", "client secret"],
        ),
        ("not a key at all", &["`private-key`", "not PEM"]),
    ];
    let mut cases: Vec<Case> = key_cases
        .into_iter()
        .map(|(key, says)| Case {
            inputs: Box::leak(vec![("private-key", key)].into_boxed_slice()),
            unset: &[],
            says,
        })
        .collect();
    cases.extend([
        case(&[("app-id", "")], &["`app-id`", "client id"]),
        case(&[("app-id", "12 34")], &["`app-id`", "blanks"]),
        case(
            &[("owner", "nobody")],
            &["not installed on `nobody`", "install it at", "`owner`"],
        ),
        case(
            &[("owner", "bad owner")],
            &["`owner`", "not a valid GitHub name"],
        ),
        case(
            &[("repositories", "missing")],
            &["not installed on `Octo-Org/missing`", "`repositories`"],
        ),
        case(
            &[("repositories", "Other-Org/tools")],
            &["`repositories`", "one token-keeper step per owner"],
        ),
        case(
            &[("enterprise", "acme")],
            &[
                "no installation of the App on the enterprise `acme`",
                "GitHub Enterprise Cloud only",
                "`enterprise`",
            ],
        ),
        case(
            &[("enterprise", "acme"), ("owner", "Octo-Org")],
            &["`enterprise`", "leave `owner`"],
        ),
        case(
            &[("permission-issues", "write")],
            &["`permission-issues`", "granted `issues: write`"],
        ),
        case(
            &[("refresh-after", "0")],
            &["`refresh-after`", "too short", "`1m`"],
        ),
        case(
            &[("refresh-after", "500ms")],
            &["`refresh-after`", "`500ms` is too short", "`1m`"],
        ),
        case(
            &[("refresh-after", "59s")],
            &["`refresh-after`", "too short"],
        ),
        case(
            &[("refresh-after", "-5m")],
            &["`refresh-after`", "not a duration", "`50m`"],
        ),
        case(
            &[("refresh-after", "61m")],
            &["`refresh-after`", "lifetime of 1h", "`59m`"],
        ),
        case(
            &[("refresh-after", "abc")],
            &["`refresh-after`", "not a duration"],
        ),
        case(
            &[("github-api-url", "http://ghes.example.com/api/v3")],
            &["`github-api-url`", "plain http", "use https"],
        ),
        case(
            &[("github-api-url", "api.github.com")],
            &["`github-api-url`", "not a URL"],
        ),
        case(
            &[("git-server-url", "ftp://git.example.com")],
            &["`git-server-url`", "use an https URL"],
        ),
        case(
            &[("skip-token-revoke", "yes")],
            &["`skip-token-revoke`", "`true` or `false`"],
        ),
        case(
            &[("git-credentials", "on")],
            &["`git-credentials`", "`true` or `false`"],
        ),
        case(
            &[("export-env", "GH-TOKEN")],
            &["`export-env`", "variable name"],
        ),
        case(
            &[("ca-certificates", "hello")],
            &["`ca-certificates`", "BEGIN CERTIFICATE"],
        ),
        Case {
            inputs: &[],
            unset: &["GITHUB_ENV"],
            says: &["`GITHUB_ENV` is not set"],
        },
        // As the official action's tests: no repository, or no owner, to mint for.
        Case {
            inputs: &[],
            unset: &["GITHUB_REPOSITORY"],
            says: &["`owner`", "`GITHUB_REPOSITORY` is empty"],
        },
        Case {
            inputs: &[("repositories", "app")],
            unset: &["GITHUB_REPOSITORY_OWNER", "GITHUB_REPOSITORY"],
            says: &["`owner`", "`GITHUB_REPOSITORY_OWNER` is empty"],
        },
        Case {
            inputs: &[],
            unset: &["GITHUB_OUTPUT"],
            says: &["`GITHUB_OUTPUT` is not set"],
        },
        Case {
            inputs: &[("git-server-url", "")],
            unset: &[],
            says: &[
                "`git-server-url`",
                "cannot tell the git server",
                "`git-credentials: false`",
            ],
        },
    ]);
    cases
}

#[tokio::test]
async fn every_bad_input_gets_one_clear_error_and_leaves_nothing() {
    let github = FakeGitHub::start().await;
    for case in cases() {
        let mut job = Job::new(&github.url());
        for var in case.unset {
            job.unset_env.push((*var).to_owned());
        }
        // Later inputs win, as for the runner: each case's replace the App's.
        let inputs = app_inputs(case.inputs);
        let run = job.main(&inputs, View::Host);
        let what = format!(
            "{:?} {:?}",
            case.inputs.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            case.unset
        );
        let error = run.the_error();
        for words in case.says {
            assert!(
                error.contains(words),
                "{what}: `{words}` missing from {}",
                error
            );
        }
        // The case's own key, which comes after the App's.
        let key = inputs
            .iter()
            .rfind(|(n, _)| *n == "private-key")
            .map_or("", |(_, v)| *v);
        for line in key
            .lines()
            .filter(|l| l.len() >= 16 && !l.starts_with("-----"))
        {
            assert!(!run.log().contains(line), "{what}: the key is never echoed");
        }
        assert!(
            run.outputs.is_empty() && run.env.is_empty(),
            "{what}: nothing exported"
        );
        assert!(
            !job.temp.join("token-keeper").exists(),
            "{what}: state left behind"
        );
    }
    assert_eq!(github.mints(), 0);
}
