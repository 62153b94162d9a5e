//! A real container engine and the action's built image, for tests that run it as the runner does.
//!
//! The engine is docker when its daemon answers, podman otherwise (`TOKEN_KEEPER_ENGINE` picks
//! one). The image is `TOKEN_KEEPER_IMAGE` when set, else built once per test run by
//! `scripts/build-image`. Where neither can be had the tests fail and say why, unless
//! `TOKEN_KEEPER_SKIP_ENGINE=1` says to skip them; `scripts/test` installs what they need.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

/// The engine's program and the image to run.
#[derive(Debug, PartialEq, Eq)]
pub struct Image {
    pub engine: String,
    pub name: String,
}

impl Image {
    /// A command of the engine, with the machine's own environment.
    pub fn command(&self) -> Command {
        Command::new(&self.engine)
    }

    /// Copy a file out of the image, as `docker cp` from a created container.
    pub fn file(&self, path: &str, to: &Path) {
        let created = self
            .command()
            .args(["create", &self.name])
            .output()
            .expect("engine create");
        crate::assert_success("engine create", &created);
        let id = String::from_utf8_lossy(&created.stdout).trim().to_owned();
        let copied = self
            .command()
            .args(["cp", &format!("{id}:{path}")])
            .arg(to)
            .output()
            .expect("engine cp");
        let _ = self.command().args(["rm", &id]).output();
        crate::assert_success("engine cp", &copied);
    }
}

/// The built image, or `None` when the tests are told to skip the engine.
pub fn image() -> Option<&'static Image> {
    unless_skipped(built)
}

/// The engine and the image, found or built once per process; or why there is none.
pub fn built() -> Result<&'static Image, &'static str> {
    static IMAGE: OnceLock<Result<Image, String>> = OnceLock::new();
    IMAGE.get_or_init(find).as_ref().map_err(String::as_str)
}

impl Image {
    /// The image's size as the engine reports it, bytes.
    pub fn size(&self) -> u64 {
        let output = self
            .command()
            .args(["image", "inspect", "--format", "{{.Size}}", &self.name])
            .output()
            .expect("engine image inspect");
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .expect("a size")
    }
}

const NO_ENGINE: &str =
    "no container engine answers here: install podman and runc, or start docker's daemon";

/// The engine, or `None` when the tests are told to skip it.
pub fn engine() -> Option<String> {
    unless_skipped(engine_name)
}

/// What `get` finds, `None` when `TOKEN_KEEPER_SKIP_ENGINE=1` says to skip the engine's tests; a
/// failure when they cannot run, saying why.
fn unless_skipped<T, E: std::fmt::Display>(get: impl FnOnce() -> Result<T, E>) -> Option<T> {
    if std::env::var("TOKEN_KEEPER_SKIP_ENGINE").is_ok_and(|v| v == "1") {
        eprintln!("skipped: TOKEN_KEEPER_SKIP_ENGINE=1");
        return None;
    }
    match get() {
        Ok(found) => Some(found),
        Err(why) => panic!(
            "{why}\n(scripts/test installs what the engine tests need; TOKEN_KEEPER_SKIP_ENGINE=1 skips them)"
        ),
    }
}

fn engine_name() -> Result<String, String> {
    match std::env::var("TOKEN_KEEPER_ENGINE") {
        Ok(engine) if !engine.is_empty() => Ok(engine),
        _ if answers("docker", &["version", "--format", "{{.Server.Version}}"]) => {
            Ok("docker".into())
        }
        _ if answers("podman", &["version"]) => Ok("podman".into()),
        _ => Err(NO_ENGINE.into()),
    }
}

fn find() -> Result<Image, String> {
    let engine = engine_name()?;
    if let Ok(name) = std::env::var("TOKEN_KEEPER_IMAGE") {
        return Ok(Image { engine, name });
    }
    let script = crate::native_entry::root().join("scripts/build-image");
    let built = Command::new(&script)
        .env("TOKEN_KEEPER_ENGINE", &engine)
        .output()
        .map_err(|err| format!("cannot run {}: {err}", script.display()))?;
    if !built.status.success() {
        // The last line is the reason: stage-image's says what is missing and how to get it.
        let stderr = String::from_utf8_lossy(&built.stderr);
        let last = stderr.lines().last().unwrap_or_default();
        return Err(format!(
            "scripts/build-image failed: {last}\n{}",
            crate::shown(&built)
        ));
    }
    let stdout = String::from_utf8_lossy(&built.stdout);
    let name = stdout
        .lines()
        .last()
        .ok_or("scripts/build-image printed no image name")?;
    Ok(Image {
        engine,
        name: name.to_owned(),
    })
}

fn answers(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}
