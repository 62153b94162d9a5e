//! `action.yml` declares what the code reads, and describes every input and output.

use std::collections::BTreeSet;

use token_keeper::action::permissions::PERMISSIONS;

fn action() -> serde_json::Value {
    read("action.yml")
}

fn read(path: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap();
    serde_saphyr::from_str(&text).unwrap()
}

#[test]
fn declares_exactly_the_permission_list() {
    let declared: BTreeSet<String> = action()["inputs"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with("permission-"))
        .cloned()
        .collect();
    let known: BTreeSet<String> = PERMISSIONS.iter().map(|p| p.input()).collect();
    // GitHub's list, and the one input the official action declares that GitHub no longer lists.
    let retired = BTreeSet::from(["permission-team-discussions".to_owned()]);
    assert!(known.is_disjoint(&retired), "gone from GitHub's schema");
    assert_eq!(declared, &known | &retired);
    // What the official action added lately, and GitHub's current schema.
    for name in [
        "permission-discussions",
        "permission-merge-queues",
        "permission-attestations",
        "permission-artifact-metadata",
        "permission-custom-properties-for-organizations",
        "permission-enterprise-custom-properties-for-organizations",
        "permission-code-quality",
        "permission-organization-copilot-agent-settings",
    ] {
        assert!(declared.contains(name), "{name}");
    }
}

#[test]
fn every_input_and_output_is_described() {
    let action = action();
    for section in ["inputs", "outputs"] {
        for (name, spec) in action[section].as_object().unwrap() {
            let text = spec["description"].as_str().unwrap_or("");
            assert!(text.len() > 10, "{section}.{name} needs a description");
        }
    }
}

#[test]
fn runs_a_container_with_distinct_main_and_post_entrypoints() {
    let runs = &action()["runs"];
    assert_eq!(runs["using"], "docker");
    assert_eq!(runs["entrypoint"], "/usr/local/bin/token-keeper-main");
    assert_eq!(runs["post-entrypoint"], "/usr/local/bin/token-keeper-post");
    // Pulled, never built in the user's job; the release workflow pins it by digest.
    let image = runs["image"].as_str().unwrap();
    assert!(image.starts_with("docker://ghcr.io/"), "{image}");
}

#[test]
fn the_native_entry_takes_the_same_inputs_and_runs_its_scripts_on_node() {
    let (action, native) = (action(), read("native/action.yml"));
    for key in [
        "name",
        "description",
        "author",
        "branding",
        "inputs",
        "outputs",
    ] {
        assert_eq!(
            native[key], action[key],
            "native/action.yml's `{key}` differs from action.yml's: run scripts/generate-native-action"
        );
    }
    let runs = &native["runs"];
    assert_eq!(runs["using"], "node24");
    assert_eq!(runs["post-if"], "always()");
    for script in ["main", "post"] {
        let file = runs[script].as_str().unwrap();
        assert!(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("native")
                .join(file)
                .is_file(),
            "{file}"
        );
    }
}

/// Every input actions/create-github-app-token declares, from its action.yml at v3.1.1
/// (`1b10c78c7865c340bc4f6099eb2f838309f1e8c3`), in its order.
const OFFICIAL_INPUTS: &[&str] = &[
    "client-id",
    "app-id",
    "private-key",
    "owner",
    "repositories",
    "skip-token-revoke",
    "github-api-url",
    "permission-actions",
    "permission-administration",
    "permission-artifact-metadata",
    "permission-attestations",
    "permission-checks",
    "permission-codespaces",
    "permission-contents",
    "permission-custom-properties-for-organizations",
    "permission-dependabot-secrets",
    "permission-deployments",
    "permission-discussions",
    "permission-email-addresses",
    "permission-enterprise-custom-properties-for-organizations",
    "permission-environments",
    "permission-followers",
    "permission-git-ssh-keys",
    "permission-gpg-keys",
    "permission-interaction-limits",
    "permission-issues",
    "permission-members",
    "permission-merge-queues",
    "permission-metadata",
    "permission-organization-administration",
    "permission-organization-announcement-banners",
    "permission-organization-copilot-seat-management",
    "permission-organization-custom-org-roles",
    "permission-organization-custom-properties",
    "permission-organization-custom-roles",
    "permission-organization-events",
    "permission-organization-hooks",
    "permission-organization-packages",
    "permission-organization-personal-access-token-requests",
    "permission-organization-personal-access-tokens",
    "permission-organization-plan",
    "permission-organization-projects",
    "permission-organization-secrets",
    "permission-organization-self-hosted-runners",
    "permission-organization-user-blocking",
    "permission-packages",
    "permission-pages",
    "permission-profile",
    "permission-pull-requests",
    "permission-repository-custom-properties",
    "permission-repository-hooks",
    "permission-repository-projects",
    "permission-secret-scanning-alerts",
    "permission-secrets",
    "permission-security-events",
    "permission-single-file",
    "permission-starring",
    "permission-statuses",
    "permission-team-discussions",
    "permission-vulnerability-alerts",
    "permission-workflows",
];

/// A workflow moving over keeps its `with:` and gets no "unexpected input" warning.
#[test]
fn every_input_of_the_official_action_is_ours() {
    let action = action();
    let inputs = action["inputs"].as_object().unwrap();
    let missing: Vec<&str> = OFFICIAL_INPUTS
        .iter()
        .copied()
        .filter(|name| !inputs.contains_key(*name))
        .collect();
    assert!(missing.is_empty(), "not declared: {missing:?}");
}

#[test]
fn inputs_mirror_the_official_action() {
    let action = action();
    let inputs = action["inputs"].as_object().unwrap();
    assert_eq!(inputs["github-api-url"]["default"], "${{ github.api_url }}");
    assert_eq!(
        inputs["app-id"]["deprecationMessage"],
        "Use 'client-id' instead."
    );
}

#[test]
fn ci_and_releases_build_with_the_same_pinned_rust() {
    let pinned = |workflow: &str| -> String {
        let path = format!(
            "{}/.github/workflows/{workflow}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(path).unwrap();
        let parsed: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        parsed["env"]["RUST_TOOLCHAIN"]
            .as_str()
            .unwrap_or_else(|| panic!("{workflow} pins no RUST_TOOLCHAIN"))
            .to_owned()
    };
    let ci = pinned("ci.yml");
    assert_eq!(ci.split('.').count(), 3, "an exact release: {ci}");
    assert!(ci.split('.').all(|n| n.parse::<u32>().is_ok()), "{ci}");
    assert_eq!(pinned("release.yml"), ci);
}
