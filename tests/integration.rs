//! Integration tests: the real binary against a fake GitHub and an emulated runner.
//!
//! One test binary (`autotests = false`) keeps builds fast; each module tests one part. They run
//! on Linux only: they need its namespaces, users and ptrace. What runs on every platform is in
//! `portable.rs`.

#![cfg(target_os = "linux")]

/// nektos/act running a workflow that uses the native entry.
mod act;
/// The action's metadata agrees with the code.
mod action_yml;
/// The same binary in any CI: setup, git and the tools, revoke.
mod any_ci;
/// Every bad input: one clear error, nothing left behind.
mod bad_input;
/// The built image under a real container engine, run as the runner runs it.
mod engine;
/// The copy-paste setups for other CIs.
mod examples;
/// Faults survived: errors, resets, hangs, skew, GitHub down, kills, a full disk.
mod faults;
/// The test git server itself.
mod git_server;
/// `setup --git-config global`: the user's global git config during and after a job.
mod global_config;
/// A hostile or broken server: its text cleaned, our secrets unshown, its names checked.
mod hostile;
/// Keyless: the job's identity exchanged for tokens, no App key anywhere.
mod keyless;
/// AWS KMS built in, against moto's server: signatures, bad keys, each source of credentials.
mod kms;
/// Nothing secret leaks from a whole job.
mod leaks;
/// The process meter: a child's figures are its own, whatever the test process holds.
mod measure;
/// Every minted token is recorded and revoked, whatever goes wrong around it.
mod minted;
/// The state directory is ours alone, whatever an earlier step planted.
mod ours;
/// `exec --proxy`: clients that read a token once, past its expiry; what the proxy admits.
mod proxy;
/// The git credential shim with the real git.
mod shim;
/// The App's JWT signed by a signer command, and each way it fails.
mod signer;
/// Main and post steps, end to end.
mod steps;
/// The stores setup makes and revoke ends: only ours, all of them, nothing served once ended.
mod stores;
/// Real TLS: a private CA, an unknown CA, and a proxy tunnel.
mod tls;
