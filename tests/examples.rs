//! The copy-paste setups in `examples/ci` are real files: each parses as what it is, calls
//! `setup` with flags setup has, and revokes.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::runner::binary;

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ci");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(
                std::fs::read_dir(&path)
                    .unwrap()
                    .flatten()
                    .map(|e| e.path()),
            );
        } else {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// Each `token-keeper setup …` command of `text`, continued lines joined.
fn setups(text: &str) -> Vec<String> {
    let joined = text.replace("\\\n", " ");
    joined
        .lines()
        .filter_map(|line| {
            line.find("token-keeper setup")
                .map(|at| line[at..].to_owned())
        })
        .collect()
}

#[test]
fn every_ci_setup_parses_and_uses_flags_setup_has() {
    let help = Command::new(binary())
        .args(["setup", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let files = examples();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in [
        "gitlab-ci.yml",
        "Jenkinsfile",
        "pre-command",
        "pre-exit",
        "circleci-config.yml",
        "azure-pipelines.yml",
        "local.sh",
    ] {
        assert!(names.iter().any(|n| n == expected), "{expected}: {names:?}");
    }
    let (mut setup_count, mut revoke_count) = (0, 0);
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let name = file.display().to_string();
        if name.ends_with(".yml") {
            let _: serde_json::Value =
                serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        } else if text.starts_with("#!") {
            let checked = Command::new("bash").arg("-n").arg(file).output().unwrap();
            assert!(checked.status.success(), "{name}: {checked:?}");
        } else {
            // The Jenkinsfile: Groovy, of which the braces and the post step are checked.
            assert_eq!(
                text.matches('{').count(),
                text.matches('}').count(),
                "{name}"
            );
            assert!(
                text.contains("post {") && text.contains("always {"),
                "{name}"
            );
        }
        for setup in setups(&text) {
            setup_count += 1;
            for flag in setup.split_whitespace().filter(|w| w.starts_with("--")) {
                let flag = flag.split('=').next().unwrap();
                assert!(
                    help.contains(&format!("{flag} ")),
                    "{name}: setup has no {flag}: {setup}"
                );
            }
        }
        revoke_count += text.matches("token-keeper revoke").count();
    }
    assert!(setup_count >= 7, "{setup_count} setups");
    assert!(revoke_count >= 6, "{revoke_count} revokes");
}
