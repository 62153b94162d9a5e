//! The main step: read inputs, mint, mask, record, export.
//!
//! Order matters. Inputs are checked before anything is written, so bad input leaves nothing
//! behind. The state directory is saved for the post step before minting, and a minted token is
//! masked, then recorded in the ledger, before it is used anywhere: whatever fails later, the
//! post step finds it and revokes it.

use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, Result};

use super::inputs::{self, Config, Env};
use super::layout::{self, Layout};
use super::workflow::{self, FileCommand, FileCommands};
use crate::github::apps::{self, App};
use crate::github::{GitHub, HttpOptions, Installation, MintedToken};
use crate::keeper::state::{LedgerEntry, StateDir};

pub fn run(env: &Env) -> Result<()> {
    let files = FileCommands::new(env);
    files.require(&[FileCommand::Output, FileCommand::State])?;
    let config = inputs::parse(env)?;
    if !config.export_env.is_empty() {
        files.require(&[FileCommand::Env])?;
    }
    let options = http_options(env, config.ca_certificates.clone())?;
    let layout = Layout::detect(env)?;
    let dir = StateDir::create(&layout.step_dir(&layout::step_name(env)), layout.owner)?;
    files.set(
        FileCommand::State,
        &[("dir", &dir.path().to_string_lossy())],
    )?;

    let runtime = runtime()?;
    let gh = GitHub::new(config.api_url.clone(), options, 0)?;
    let app = App {
        issuer: &config.issuer,
        key: &config.key,
    };
    let (installation, minted) = runtime.block_on(async {
        let installation = apps::find_installation(&gh, &app, &config.target).await?;
        let minted = apps::create_token(&gh, &app, &installation, &config.request).await?;
        anyhow::Ok((installation, minted))
    })?;
    workflow::print(&workflow::mask_lines(minted.token.expose()))?;
    dir.record(&LedgerEntry {
        token: minted.token.clone(),
        expires_at: minted.expires_at,
        clock_offset: gh.clock().offset(),
    })?;

    export(&files, &config, &installation, &minted)?;
    println!(
        "token-keeper: minted a token for {} (installation {}, App `{}`): {}, expires at {}",
        config.target.describe(),
        installation.id,
        installation.app_slug,
        minted.token.fingerprint(),
        rfc3339(minted.expires_at),
    );
    Ok(())
}

fn export(
    files: &FileCommands,
    config: &Config,
    installation: &Installation,
    minted: &MintedToken,
) -> Result<()> {
    let token = minted.token.expose();
    let id = installation.id.to_string();
    let expires = rfc3339(minted.expires_at);
    files.set(
        FileCommand::Output,
        &[
            ("token", token),
            ("installation-id", &id),
            ("app-slug", &installation.app_slug),
            ("expires-at", &expires),
        ],
    )?;
    let exported: Vec<(&str, &str)> = config
        .export_env
        .iter()
        .map(|name| (name.as_str(), token))
        .collect();
    if !exported.is_empty() {
        files.set(FileCommand::Env, &exported)?;
    }
    // The summary is for people; a missing summary file must not fail the step.
    if let Err(err) = files.summary(&summary(config, installation, minted)) {
        tracing::debug!("no step summary: {err:#}");
    }
    Ok(())
}

fn summary(config: &Config, installation: &Installation, minted: &MintedToken) -> String {
    let repositories = if minted.repositories.is_empty() {
        "all the installation can reach".to_owned()
    } else {
        minted
            .repositories
            .iter()
            .map(|r| format!("`{r}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let permissions = if minted.permissions.is_empty() {
        "the installation's".to_owned()
    } else {
        minted
            .permissions
            .iter()
            .map(|(k, v)| format!("`{k}: {v}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "### token-keeper\n\n\
         | | |\n|---|---|\n\
         | App | `{slug}` |\n\
         | Installation | {id} on `{account}` |\n\
         | Repositories | {repositories} |\n\
         | Permissions | {permissions} |\n\
         | Expires | {expires} |\n\
         | Token | `{fingerprint}` |\n\
         | Git refresh | after {refresh}s |\n\n",
        slug = installation.app_slug,
        id = installation.id,
        account = installation.account,
        expires = rfc3339(minted.expires_at),
        fingerprint = minted.token.fingerprint(),
        refresh = config.refresh_after.as_secs(),
    )
}

/// Unix seconds as RFC 3339 (`2026-11-25T18:00:00Z`).
pub fn rfc3339(unix: i64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix.max(0) as u64))
        .to_string()
}

/// The HTTP bounds, which `TOKEN_KEEPER_*` variables can shorten (tests of hanging servers).
pub fn http_options(env: &Env, extra_ca_pem: Option<String>) -> Result<HttpOptions> {
    let mut options = HttpOptions {
        extra_ca_pem,
        ..HttpOptions::default()
    };
    let knobs: [(&str, &mut Duration); 4] = [
        ("TOKEN_KEEPER_CONNECT_TIMEOUT", &mut options.connect_timeout),
        ("TOKEN_KEEPER_READ_TIMEOUT", &mut options.read_timeout),
        ("TOKEN_KEEPER_DEADLINE", &mut options.deadline),
        ("TOKEN_KEEPER_RETRY_BASE", &mut options.retry_base),
    ];
    for (name, slot) in knobs {
        if let Some(text) = env.get(name).filter(|v| !v.is_empty()) {
            *slot = inputs::parse_duration(text)
                .map_err(|e| anyhow::anyhow!("`{name}`: {e}: use for example `5s` or `200ms`"))?;
        }
    }
    Ok(options)
}

/// One thread is plenty for a handful of sequential requests, and starts fastest.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_utc_seconds() {
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn knobs_shorten_the_bounds() {
        let env: Env = [("TOKEN_KEEPER_DEADLINE".to_owned(), "3s".to_owned())].into();
        assert_eq!(
            http_options(&env, None).unwrap().deadline,
            Duration::from_secs(3)
        );
        let bad: Env = [("TOKEN_KEEPER_READ_TIMEOUT".to_owned(), "soon".to_owned())].into();
        assert!(
            http_options(&bad, None)
                .unwrap_err()
                .to_string()
                .contains("TOKEN_KEEPER_READ_TIMEOUT")
        );
    }
}
