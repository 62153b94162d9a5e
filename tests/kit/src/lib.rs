//! The test kit: what the tests, the demo and the benchmarks fake or emulate, and the helpers
//! they share. Nothing is shared between test modules but what lives here.
//!
//! GitHub's API is faked with wiremock (`fake_github`, and `sts` for keyless minting), git is
//! real (`git_server`), and the runner is emulated (`runner`) down to its file commands and
//! its container's view; `scene` puts them together. A whole test:
//!
//! ```ignore
//! #[tokio::test]
//! async fn a_push_after_expiry_gets_a_fresh_token() {
//!     let s = Scene::start(Duration::from_secs(3)).await;
//!     let main = s.job.main(&s.inputs(&[]), View::Host);
//!     main.assert_ok();
//!     std::thread::sleep(Duration::from_secs(4));
//!     let step = LaterStep::after(&s.job, &main);
//!     step.assert_git(&["ls-remote", &s.repo_url("Octo-Org", "app")]);
//!     // A slow machine may re-mint again: tokens this short are replaced at half their life.
//!     assert!(s.github.mints() >= 2, "git asked the shim, which re-minted");
//! }
//! ```

use std::fmt::Display;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};

#[cfg(unix)]
pub mod act;
#[cfg(unix)]
pub mod background;
pub mod ci;
pub mod engine;
pub mod fake_github;
pub mod git_server;
pub mod logs;
pub mod measure;
#[cfg(unix)]
pub mod moto;
pub mod native_entry;
pub mod node;
pub mod proxy;
#[cfg(target_os = "linux")]
pub mod relay;
pub mod runner;
pub mod scene;
#[cfg(target_os = "linux")]
pub mod signers;
pub mod sts;
pub mod tls;

/// `what` ran and succeeded; else the test fails showing its status, stdout and stderr.
#[track_caller]
pub fn assert_success(what: &str, output: &Output) {
    assert!(output.status.success(), "{what} failed: {}", shown(output));
}

/// A run's status, stdout and stderr, as a failure shows them.
pub(crate) fn shown(output: &Output) -> String {
    shown_text(
        output.status,
        &String::from_utf8_lossy(&output.stdout),
        &String::from_utf8_lossy(&output.stderr),
    )
}

/// [`shown`] for a run kept as text, as a step's is.
pub(crate) fn shown_text(status: impl Display, stdout: &str, stderr: &str) -> String {
    format!("{status}\nstdout:\n{stdout}\nstderr:\n{stderr}")
}

/// The DER inside a PEM block.
pub fn pem_der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("PEM body")
}

/// Our clock, unix seconds.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `len` random letters and digits.
pub fn random_alnum(len: usize) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut bytes = vec![0u8; len];
    SystemRandom::new().fill(&mut bytes).expect("random");
    bytes
        .iter()
        .map(|b| CHARS[*b as usize % CHARS.len()] as char)
        .collect()
}

/// `dir` and everything below it.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = vec![dir.to_owned()];
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}
