//! setup's front door: its flags and `TOKEN_KEEPER_*` variables turned into the keeper's
//! `Settings`, with setup's own options, and every refusal named by the flag or the variable its
//! value came in.
//!
//! The key comes from a file or a variable, never from the command line, and the CA certificates
//! from a file: they are read here. clap takes a flag's value from its variable when the flag is
//! not given; which values it took so is noted once it has parsed (`note_variables`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use clap::parser::ValueSource;

use super::exports::Format;
use crate::env::Env;
use crate::keeper::settings::{Door, Field, Given, Refusal, SETTINGS, Setting, Settings};
use crate::keeper::source::IdentityFrom;
use crate::messages;

/// Where the scoped git configuration goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum GitConfig {
    /// Printed as `GIT_CONFIG_*` variables, for the shell that evaluates them and what it runs.
    Env,
    /// Added to the user's global git config, for steps that share no environment.
    Global,
}

/// The flags of `setup`: the action's inputs, by the same names where they fit
/// (`settings::SETTINGS`).
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The App's client id (or `--app-id`).
    #[arg(long, env = "TOKEN_KEEPER_CLIENT_ID")]
    client_id: Option<String>,
    /// The App's id.
    #[arg(long, env = "TOKEN_KEEPER_APP_ID")]
    app_id: Option<String>,
    /// A file that holds the App's private key (PEM).
    #[arg(long, env = "TOKEN_KEEPER_PRIVATE_KEY_FILE", value_name = "PATH")]
    private_key_file: Option<PathBuf>,
    /// The variable that holds the App's private key.
    #[arg(long, env = "TOKEN_KEEPER_PRIVATE_KEY_ENV", value_name = "NAME")]
    private_key_env: Option<String>,
    /// A command that signs the App's JWTs where its key is kept (a KMS's or an HSM's CLI), in
    /// place of the key; run again at every refresh.
    #[arg(long, env = "TOKEN_KEEPER_SIGNER_COMMAND", value_name = "COMMAND")]
    signer_command: Option<String>,
    /// A file of the App's public key (PEM or DER), to check the signer command's signatures.
    #[arg(long, env = "TOKEN_KEEPER_SIGNER_PUBLIC_KEY_FILE", value_name = "PATH")]
    signer_public_key_file: Option<PathBuf>,
    /// The App's key in AWS KMS, in place of the key: its id, alias (`alias/NAME`) or ARN.
    #[arg(long, env = "TOKEN_KEEPER_AWS_KMS_KEY", value_name = "KEY")]
    aws_kms_key: Option<String>,
    /// The KMS key's region (default: `AWS_REGION`, else `AWS_DEFAULT_REGION`, else the key
    /// ARN's).
    #[arg(long, env = "TOKEN_KEEPER_AWS_REGION", value_name = "REGION")]
    aws_region: Option<String>,
    /// The account that installed the App (default: in an Actions job, the current
    /// repository's owner).
    #[arg(long, env = "TOKEN_KEEPER_OWNER")]
    owner: Option<String>,
    /// Comma separated names of the owner's repositories to limit the token to (default: in an
    /// Actions job without `--owner`, the current repository).
    #[arg(long, env = "TOKEN_KEEPER_REPOSITORIES", value_name = "NAMES")]
    repositories: Option<String>,
    /// The enterprise whose installation of the App mints, instead of an owner's; its token
    /// reaches no repository, so git is left alone.
    #[arg(long, env = "TOKEN_KEEPER_ENTERPRISE", value_name = "SLUG")]
    enterprise: Option<String>,
    /// A permission to ask for, `contents=write`; again for each (default: the installation's).
    #[arg(long = "permission", value_name = "NAME=LEVEL")]
    permissions: Vec<String>,
    /// The REST API (`https://HOST/api/v3` on GHES).
    #[arg(
        long,
        env = "TOKEN_KEEPER_API_URL",
        value_name = "URL",
        default_value = "https://api.github.com"
    )]
    api_url: String,
    /// The git server the token is for (default: derived from the API URL).
    #[arg(long, env = "TOKEN_KEEPER_GIT_SERVER_URL", value_name = "URL")]
    git_server_url: Option<String>,
    /// Age after which git gets a new token (`90s`, `50m`; at least `1m`, below an hour).
    #[arg(
        long,
        env = "TOKEN_KEEPER_REFRESH_AFTER",
        value_name = "DURATION",
        default_value = "50m"
    )]
    refresh_after: String,
    /// A PEM file of extra CA certificates to trust.
    #[arg(long, env = "TOKEN_KEEPER_CA_CERTIFICATES", value_name = "FILE")]
    ca_certificates: Option<PathBuf>,
    /// The new store's folder (default: a new one in the CI's temporary folder).
    #[arg(long, value_name = "DIR")]
    pub(crate) state: Option<PathBuf>,
    /// How to print what the shell needs.
    #[arg(long, value_enum, default_value_t = Format::Export)]
    pub(crate) format: Format,
    /// Where git's scoped configuration goes.
    #[arg(long, value_enum, default_value_t = GitConfig::Env)]
    pub(crate) git_config: GitConfig,
    /// Keyless mode: the trust policy's name at the token exchange service.
    #[arg(long, env = "TOKEN_KEEPER_STS_IDENTITY", value_name = "POLICY")]
    sts_identity: Option<String>,
    /// Keyless mode: `owner/repo` or `owner`, whose policy is asked (default: as `--owner` and
    /// `--repositories` say).
    #[arg(long, env = "TOKEN_KEEPER_STS_SCOPE", value_name = "SCOPE")]
    sts_scope: Option<String>,
    /// Keyless mode: the token exchange service, a domain or a URL with a port.
    #[arg(
        long,
        env = "TOKEN_KEEPER_STS_DOMAIN",
        value_name = "DOMAIN",
        default_value = "octo-sts.dev"
    )]
    sts_domain: String,
    /// Keyless mode: the variable that holds the job's OIDC identity token, read again at every
    /// refresh (GitLab's `id_tokens:`, CircleCI's `CIRCLE_OIDC_TOKEN_V2`).
    #[arg(
        long,
        env = "TOKEN_KEEPER_IDENTITY_ENV",
        value_name = "NAME",
        conflicts_with = "identity_command"
    )]
    identity_env: Option<String>,
    /// Keyless mode: a command that prints the job's OIDC identity token, run again at every
    /// refresh (Buildkite's `buildkite-agent oidc request-token --audience …`).
    #[arg(long, env = "TOKEN_KEEPER_IDENTITY_COMMAND", value_name = "COMMAND")]
    identity_command: Option<String>,
    /// The settings whose values clap took from their variables.
    #[arg(skip)]
    from_variables: Vec<Setting>,
}

impl Args {
    /// Note which settings clap took from their variables, in `matches`, setup's own.
    pub(crate) fn note_variables(&mut self, matches: &clap::ArgMatches) {
        self.from_variables = matches
            .ids()
            .filter(|id| matches.value_source(id.as_str()) == Some(ValueSource::EnvVariable))
            .filter_map(|id| setting_of(id.as_str()))
            .collect();
    }

    /// The flags checked, with the key and the CA certificates read where they are. Outside
    /// Actions nobody reads a warning before the token is used: what the action would doubt and
    /// ask for anyway, setup refuses.
    pub(crate) fn settings(&self, env: &Env) -> Result<Settings> {
        let keyless = self
            .sts_identity
            .as_deref()
            .is_some_and(|policy| !policy.trim().is_empty());
        for (setting, given) in [
            (Setting::IdentityEnv, &self.identity_env),
            (Setting::IdentityCommand, &self.identity_command),
        ] {
            if given.is_some() && !keyless {
                bail!(
                    "`{}` is for keyless mode: add `--sts-identity POLICY`, or leave it out to mint with the App's key",
                    self.typed(setting)
                );
            }
        }
        let job = |name: &str| env.given(name).map(str::to_owned);
        let given = Given {
            client_id: self.client_id.clone(),
            app_id: self.app_id.clone(),
            private_key: self.key(keyless, env)?,
            signer_command: self.signer_command.clone(),
            signer_public_key: self.signer_public_key()?,
            aws_kms_key: self.aws_kms_key.clone(),
            aws_region: self.aws_region.clone(),
            owner: self.owner.clone(),
            repositories: self.repositories.clone(),
            enterprise: self.enterprise.clone(),
            permissions: self.permissions()?,
            api_url: Some(self.api_url.clone()),
            git_server_url: self.git_server_url.clone(),
            refresh_after: Some(self.refresh_after.clone()),
            ca_certificates: self.ca_certificates()?,
            sts_identity: self.sts_identity.clone(),
            sts_scope: self.sts_scope.clone(),
            sts_domain: Some(self.sts_domain.clone()),
            identity: self.identity(),
            repository: job("GITHUB_REPOSITORY"),
            repository_owner: job("GITHUB_REPOSITORY_OWNER"),
        };
        let (settings, doubts) =
            Settings::check(&given, Door::CommandLine).map_err(|refusal| self.named(refusal))?;
        if let Some(doubt) = doubts.into_iter().next() {
            let message = format!(
                "{}: check its spelling (GitHub's API names, such as `pull_requests`), or leave it out",
                doubt.message
            );
            return Err(self.named(Refusal { message, ..doubt }));
        }
        Ok(settings)
    }

    /// How the person gave `setting`: its variable, when clap took the value from there, or
    /// its flag.
    fn typed(&self, setting: Setting) -> &'static str {
        let names = setting.names();
        if self.from_variables.contains(&setting) {
            names.variable
        } else {
            names.flag
        }
    }

    /// A refusal, named as the person gave what it refuses.
    fn named(&self, refusal: Refusal) -> anyhow::Error {
        let typed = match &refusal.field {
            // The message names the permission.
            Field::Permission(_) => Setting::Permission.names().flag.to_owned(),
            field => self.field(field),
        };
        anyhow!("`{typed}`: {}", refusal.message)
    }

    /// How the person gave `field`: its variable or its flag.
    pub(crate) fn field(&self, field: &Field) -> String {
        match field {
            Field::Setting(Setting::PrivateKey) => self.typed(self.key_setting()).to_owned(),
            Field::Setting(Setting::SignerPublicKey) => {
                self.typed(Setting::SignerPublicKeyFile).to_owned()
            }
            Field::Setting(setting) => self.typed(*setting).to_owned(),
            Field::Permission(name) => format!("{} {name}", Setting::Permission.names().flag),
        }
    }

    /// Where the key was given.
    fn key_setting(&self) -> Setting {
        match self.private_key_file {
            Some(_) => Setting::PrivateKeyFile,
            None => Setting::PrivateKeyEnv,
        }
    }

    /// The App's key, from its file or its variable.
    fn key(&self, keyless: bool, vars: &Env) -> Result<Option<String>> {
        let (file, env) = (Setting::PrivateKeyFile, Setting::PrivateKeyEnv);
        let elsewhere = [
            (Setting::SignerCommand, self.signer_command.is_some()),
            (Setting::AwsKmsKey, self.aws_kms_key.is_some()),
        ]
        .into_iter()
        .find_map(|(setting, set)| set.then_some(setting));
        if let Some(elsewhere) = elsewhere
            && (self.private_key_file.is_some() || self.private_key_env.is_some())
        {
            bail!(
                "`{}` and `{}` are both set: sign with the key here or where it is kept, not both",
                self.typed(self.key_setting()),
                self.typed(elsewhere)
            );
        }
        match (&self.private_key_file, &self.private_key_env) {
            (Some(_), Some(_)) => bail!(
                "`{}` and `{}` are both set: pass the key one way",
                self.typed(file),
                self.typed(env)
            ),
            (Some(path), None) => {
                let flag = self.typed(file);
                let text = std::fs::read_to_string(path).with_context(|| {
                    format!(
                        "`{flag}`: cannot read `{}`: pass the path of the App's `.pem` file",
                        shown(path)
                    )
                })?;
                if text.trim().is_empty() {
                    bail!(
                        "`{flag}`: `{}` is empty: pass the path of the App's `.pem` file",
                        shown(path)
                    );
                }
                Ok(Some(text))
            }
            (None, Some(name)) => Ok(Some(
                vars.get(name)
                    .filter(|key| !key.trim().is_empty())
                    .map(str::to_owned)
                    .with_context(|| {
                        format!(
                            "`{}`: `{}` is not set or empty: put the App's private key in it, or use `--private-key-file`",
                            self.typed(env),
                            messages::short(name)
                        )
                    })?,
            )),
            (None, None) if keyless || elsewhere.is_some() => Ok(None),
            (None, None) => bail!(
                "the App's private key is needed: pass `--private-key-file PATH` or `--private-key-env NAME`, or sign where it is kept with `--signer-command COMMAND` or `--aws-kms-key KEY` (or keyless mode, `--sts-identity`)"
            ),
        }
    }

    /// The App's public key, from its file, for the signer command.
    fn signer_public_key(&self) -> Result<Option<Vec<u8>>> {
        let Some(path) = &self.signer_public_key_file else {
            return Ok(None);
        };
        let flag = self.typed(Setting::SignerPublicKeyFile);
        let bytes = std::fs::read(path).with_context(|| {
            format!(
                "`{flag}`: cannot read `{}`: pass the path of the App's public key",
                shown(path)
            )
        })?;
        Ok(Some(bytes))
    }

    fn ca_certificates(&self) -> Result<Option<String>> {
        let Some(path) = &self.ca_certificates else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "`{}`: cannot read `{}`",
                self.typed(Setting::CaCertificates),
                shown(path)
            )
        })?;
        Ok(Some(text))
    }

    /// Each `--permission NAME=LEVEL`, as a name and a level.
    fn permissions(&self) -> Result<Vec<(String, String)>> {
        let flag = Setting::Permission.names().flag;
        self.permissions
            .iter()
            .map(|permission| {
                // Without a level, the permission would be dropped.
                match permission
                    .split_once('=')
                    .filter(|(_, level)| !level.trim().is_empty())
                {
                    Some((name, level)) => Ok((name.to_owned(), level.to_owned())),
                    None => Err(anyhow!(
                        "`{flag}`: `{}` gives no level: write it `{flag} NAME=LEVEL`, such as `{flag} contents=write`",
                        messages::short(permission)
                    )),
                }
            })
            .collect()
    }

    /// Where a keyless mint gets the job's identity.
    fn identity(&self) -> IdentityFrom {
        match (&self.identity_env, &self.identity_command) {
            (Some(name), _) => IdentityFrom::Variable { name: name.clone() },
            (None, Some(command)) => IdentityFrom::Command {
                command: command.clone(),
            },
            (None, None) => IdentityFrom::Actions,
        }
    }
}

/// The setting of the flag whose clap id is `id`: the field's name, as the flag's in snake case.
fn setting_of(id: &str) -> Option<Setting> {
    let flag = format!("--{}", id.replace('_', "-"));
    SETTINGS
        .iter()
        .find(|names| names.flag == flag)
        .map(|names| names.setting)
}

fn shown(path: &Path) -> String {
    messages::short(&path.to_string_lossy())
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use clap::{Args as _, Command, FromArgMatches};

    use super::*;
    use crate::env::Env;
    use crate::keeper::settings::readme_table;

    /// setup's flags as clap parses `flags`.
    fn args(flags: &[&str]) -> Args {
        let command = Args::augment_args(Command::new("setup"));
        let matches = command
            .try_get_matches_from(std::iter::once("setup").chain(flags.iter().copied()))
            .unwrap();
        let mut args = Args::from_arg_matches(&matches).unwrap();
        args.note_variables(&matches);
        args
    }

    /// What `settings` refuses, in an environment whose only variable, `PATH`, holds no key.
    fn refused(flags: &[&str]) -> String {
        let env = Env::from_pairs([("PATH", "/usr/bin:/bin")]);
        format!("{:#}", args(flags).settings(&env).unwrap_err())
    }

    #[test]
    fn errors_name_the_flag_a_person_typed() {
        let keyed = [
            "--app-id",
            "1",
            "--private-key-env",
            "PATH",
            "--owner",
            "octo-org",
        ];
        let with = |extra: &[&str]| refused(&[&keyed[..], extra].concat());
        assert!(
            with(&["--api-url", "ftp://x"])
                .starts_with("`--api-url`: `ftp://x` has scheme `ftp`: use an https URL"),
            "{}",
            with(&["--api-url", "ftp://x"])
        );
        assert!(
            with(&["--permission", "contents"])
                .starts_with("`--permission`: `contents` gives no level")
        );
        assert!(
            with(&["--refresh-after", "5s"]).starts_with("`--refresh-after`: `5s` is too short")
        );
        assert!(refused(&["--owner", "octo-org"]).starts_with("the App's private key is needed"));
        assert!(
            refused(&["--owner", "bad owner", "--sts-identity", "release"])
                .starts_with("`--owner`: `bad owner` is not a valid GitHub name")
        );
    }

    /// A KMS key signs alone: with the key or a signer command it is refused by its flag, and
    /// keyless mode refuses it.
    #[test]
    fn a_kms_key_is_one_signer_and_not_keyless() {
        let base = ["--app-id", "1", "--owner", "octo-org"];
        let kms = ["--aws-kms-key", "alias/app", "--aws-region", "eu-west-1"];
        let with_key = refused(&[&base[..], &kms, &["--private-key-env", "PATH"]].concat());
        assert_eq!(
            with_key,
            "`--private-key-env` and `--aws-kms-key` are both set: sign with the key here or where it is kept, not both"
        );
        let with_command = refused(&[&base[..], &kms, &["--signer-command", "sign"]].concat());
        assert!(
            with_command.starts_with("`--aws-kms-key`: a signer command is given too"),
            "{with_command}"
        );
        let keyless = refused(&[&kms[..], &["--sts-identity", "release", "--owner", "o"]].concat());
        assert!(
            keyless.starts_with("`--aws-kms-key`: is set in keyless mode"),
            "{keyless}"
        );
        let env = Env::from_pairs([("PATH", "/usr/bin:/bin")]);
        let settings = args(&[&base[..], &kms].concat()).settings(&env).unwrap();
        assert!(
            matches!(settings.signer(), Some(crate::github::Signer::AwsKms(_))),
            "{:?}",
            settings.origin
        );
    }

    /// The key given is what is blamed, not both ways of giving one.
    #[test]
    fn a_bad_key_is_blamed_on_the_flag_that_gave_it() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "not a key at all").unwrap();
        let path = file.path().to_str().unwrap();
        let base = ["--app-id", "1", "--owner", "octo-org"];
        let from_file = refused(&[&base[..], &["--private-key-file", path]].concat());
        assert!(
            from_file.starts_with("`--private-key-file`: the private key is not PEM"),
            "{from_file}"
        );
        // `PATH` holds no key: its value is a path list.
        let from_env = refused(&[&base[..], &["--private-key-env", "PATH"]].concat());
        assert!(
            from_env.starts_with("`--private-key-env`: the private key is not PEM"),
            "{from_env}"
        );
        std::fs::write(file.path(), " \n").unwrap();
        let empty = refused(&[&base[..], &["--private-key-file", path]].concat());
        assert!(
            empty.starts_with("`--private-key-file`: ") && empty.contains("is empty"),
            "{empty}"
        );
    }

    /// The one table's flags are setup's, each with its variable and its default, and the
    /// README's table of flags lists them with the same.
    #[test]
    fn the_settings_table_holds_setups_flags_and_the_readme() {
        let command = Args::augment_args(Command::new("setup"));
        let text = |value: Option<&std::ffi::OsStr>| {
            value
                .map(|v| v.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let flags: BTreeMap<String, (String, String)> = command
            .get_arguments()
            .filter_map(|arg| {
                let flag = format!("--{}", arg.get_long()?);
                let default = text(arg.get_default_values().first().map(|v| v.as_os_str()));
                Some((flag, (text(arg.get_env()), default)))
            })
            .collect();
        let ours: BTreeMap<String, (String, String)> = SETTINGS
            .iter()
            .filter(|names| !names.flag.is_empty())
            .map(|n| (n.flag.into(), (n.variable.into(), n.default.into())))
            .collect();
        assert_eq!(flags, ours);
        let mut listed = BTreeSet::new();
        for row in readme_table("| flag | variable | default | what it does |") {
            let (cells, variables, default) = (&row[0], &row[1], &row[2]);
            let row_flags: Vec<&str> = cells
                .iter()
                .filter_map(|cell| cell.split_whitespace().next())
                .collect();
            let mut wanted_variables = BTreeSet::new();
            let mut wanted_default = Vec::new();
            for flag in &row_flags {
                let (variable, flag_default) = &ours[*flag];
                if !variable.is_empty() {
                    wanted_variables.insert(variable.clone());
                }
                if !flag_default.is_empty() {
                    wanted_default = vec![flag_default.clone()];
                }
                listed.insert((*flag).to_owned());
            }
            let variables: BTreeSet<String> = variables.iter().cloned().collect();
            assert_eq!(
                variables, wanted_variables,
                "the README's variables of {row_flags:?}"
            );
            assert_eq!(
                default, &wanted_default,
                "the README's default of {row_flags:?}"
            );
        }
        let ours: BTreeSet<String> = ours.into_keys().collect();
        assert_eq!(listed, ours, "the README's flags");
    }
}
