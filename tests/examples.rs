//! The copy-paste setups in `examples/ci` are real files: each parses as what it is, calls
//! `setup` with flags setup has, and revokes (a folder of hooks, in one of its files).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use testkit::assert_success;
use testkit::runner::binary;

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ci")
}

fn examples() -> Vec<PathBuf> {
    let dir = examples_dir();
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

/// The flags clap's help lists: a line of its own each, blanks then `--name` or `-x, --name`.
fn listed_flags(help: &str) -> Vec<String> {
    let mut flags = Vec::new();
    for line in help.lines().filter(|l| l.starts_with(' ')) {
        for word in line.split_whitespace() {
            let word = word.trim_end_matches(',');
            let short = word.len() == 2 && word.starts_with('-') && word != "--";
            if !(short || word.starts_with("--") && word.len() > 2) {
                break;
            }
            flags.push(word.to_owned());
        }
    }
    flags
}

/// The flags of one `token-keeper setup …` command, up to where it ends (a redirection, a pipe,
/// `)`, `;`, `&`, a backquote): its words that start with `-`. A quoted value is one word that
/// starts with its quote, never a flag of setup's (`--identity-command '… --audience …'`).
fn setup_flags(setup: &str) -> Vec<String> {
    let (mut words, mut word, mut quote) = (Vec::new(), String::new(), None);
    for c in setup.chars().chain([' ']) {
        match (quote, c) {
            (Some(open), c) => {
                if c == open {
                    quote = None;
                }
                word.push(c);
            }
            (None, '\'' | '"') => {
                quote = Some(c);
                word.push(c);
            }
            (None, '>' | '|' | ')' | ';' | '&' | '`') => break,
            (None, c) if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            (None, c) => word.push(c),
        }
    }
    words.push(word);
    words
        .into_iter()
        .filter(|w| w.starts_with('-'))
        .map(|w| w.split('=').next().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn a_setup_commands_flags_are_its_own_not_those_of_a_quoted_command() {
    assert_eq!(
        setup_flags(
            "token-keeper setup --sts-scope o/r --identity-command 'agent --audience x')\"",
        ),
        ["--sts-scope", "--identity-command"]
    );
    assert_eq!(
        setup_flags(r#"token-keeper setup --client-id "$(ID)" --git-config=global > /dev/null'"#),
        ["--client-id", "--git-config"]
    );
    assert_eq!(
        listed_flags("Options:\n      --owner <OWNER>\n          Its `--x`\n  -h, --help\n"),
        ["--owner", "-h", "--help"]
    );
}

#[test]
fn every_ci_setup_parses_and_uses_flags_setup_has() {
    let help = Command::new(binary())
        .args(["setup", "--help"])
        .output()
        .unwrap();
    let listed = listed_flags(&String::from_utf8_lossy(&help.stdout));
    assert!(listed.iter().any(|f| f == "--client-id"), "{listed:?}");
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
    // Each example (a file, or a folder of hooks) and its setups and revokes.
    let mut per_example: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let name = file.display().to_string();
        if name.ends_with(".yml") {
            let _: serde_json::Value =
                serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        } else if text.starts_with("#!") {
            let checked = Command::new("bash").arg("-n").arg(file).output().unwrap();
            assert_success(&name, &checked);
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
        let example = file.strip_prefix(examples_dir()).unwrap().iter().next();
        let counts = per_example
            .entry(example.unwrap().to_string_lossy().into_owned())
            .or_default();
        for setup in setups(&text) {
            setup_count += 1;
            counts.0 += 1;
            let flags = setup_flags(&setup);
            assert!(!flags.is_empty(), "{name}: no flags in {setup}");
            for flag in flags {
                assert!(
                    listed.contains(&flag),
                    "{name}: setup has no {flag}: {setup}"
                );
            }
        }
        let revokes = text.matches("token-keeper revoke").count();
        revoke_count += revokes;
        counts.1 += revokes;
    }
    assert!(setup_count >= 7, "{setup_count} setups");
    assert!(revoke_count >= 6, "{revoke_count} revokes");
    for (example, (setups, revokes)) in &per_example {
        assert!(
            *setups >= 1 && *revokes >= 1,
            "{example}: {setups} setups, {revokes} revokes"
        );
    }
}
