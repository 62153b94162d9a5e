//! Where a job's tokens come from, and minting one from there: the settings' `Origin`, which
//! the job's first mint settles into the `TokenSource` that it and every re-mint mint from.
//!
//! A source is the App's (a JWT for the App, its installation found once, then a token request)
//! or an exchange of the job's identity at a token exchange service (keyless), the identity
//! asked again at every mint from where the job's CI keeps it. It is stored in the state,
//! tagged, with everything a re-mint needs but the key, which has a file of its own (a signer
//! command or a KMS key's name is kept in the state: neither is secret); what the outputs can
//! say (an installation id, a bot) follows from which it is.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};

use super::{Caller, MintFailure};
use crate::env::Env;
use crate::github::apps::{self, App, BotUser};
use crate::github::exchange::{self, Exchange, ExchangeError, IdentityRequest};
use crate::github::signer::AwsKms;
use crate::github::signer::{PublicKey, SignerCommand};
use crate::github::{GitHub, Installation, MintedToken, PrivateKey, Signer, Target, TokenRequest};
use crate::messages;
use crate::process::{self, Limits, Stopped};
use crate::secret::Secret;

/// What the command that prints the job's identity token may print, and how long it may take:
/// the token is a few KiB, and what it says on stderr is quoted only in part.
const IDENTITY_COMMAND_LIMITS: Limits = Limits {
    stdout: 64 << 10,
    stderr: 4 << 10,
    time: Duration::from_secs(15),
};

/// Where the job's tokens are to come from, as the settings say before the first mint: an App
/// whose installation is not looked up yet, or an exchange. The first mint settles it into a
/// `TokenSource`.
#[derive(Debug, Clone)]
pub(crate) enum Origin {
    /// The App `issuer` (its id or client id), its JWTs signed by `signer`.
    App { issuer: String, signer: Signer },
    /// Keyless, as `TokenSource::Exchange`.
    Exchange {
        exchange: Exchange,
        identity: IdentityFrom,
    },
}

/// Where a job's tokens come from once its first mint settled it, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum TokenSource {
    /// The App's signer signs a JWT for `issuer` (its id or client id); tokens are minted from
    /// its installation, which the job's first mint looked up.
    App {
        issuer: String,
        installation: Installation,
        /// Left out for the key, as states were before signers.
        #[serde(default, skip_serializing_if = "SignedBy::is_key")]
        signer: SignedBy,
    },
    /// Keyless: the job's identity, from where `identity` says, exchanged for a token as a
    /// trust policy allows. Nothing secret.
    Exchange {
        exchange: Exchange,
        identity: IdentityFrom,
    },
}

/// What signs an App source's JWTs, as the state keeps it: nothing secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub(crate) enum SignedBy {
    /// The App's key, in the store's key file.
    #[default]
    Key,
    /// A command, run by `sh -c` (on Windows by `cmd`), and the App's public key (PEM) to check
    /// its signatures with, when it was given.
    Command {
        command: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        public_key: Option<String>,
    },
    /// The App's key in AWS KMS: its id, alias or ARN, and its region once a mint settled it.
    /// The credentials are the step's own, found again at each mint.
    AwsKms {
        key: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        region: Option<String>,
    },
}

impl SignedBy {
    fn is_key(&self) -> bool {
        matches!(self, SignedBy::Key)
    }

    /// How this is kept, for `signer`.
    pub(crate) fn of(signer: &Signer) -> Self {
        match signer {
            Signer::Key(_) => SignedBy::Key,
            Signer::Command(command) => SignedBy::Command {
                command: command.command.clone(),
                public_key: command.public.as_ref().map(PublicKey::to_pem),
            },
            Signer::AwsKms(kms) => SignedBy::AwsKms {
                key: kms.key.clone(),
                region: kms.region().map(str::to_owned),
            },
        }
    }

    /// The signer again, in a later step; `key` reads the key's file.
    pub(crate) fn signer(&self, key: impl FnOnce() -> Result<PrivateKey>) -> Result<Signer> {
        Ok(match self {
            SignedBy::Key => Signer::Key(key()?),
            SignedBy::Command {
                command,
                public_key,
            } => Signer::Command(SignerCommand {
                command: command.clone(),
                public: public_key
                    .as_deref()
                    .map(|pem| PublicKey::parse(pem.as_bytes()))
                    .transpose()
                    .context("the state's public key for the signer command")?,
            }),
            SignedBy::AwsKms { key, region } => Signer::AwsKms(AwsKms::new(key, region.as_deref())),
        })
    }
}

/// Where a mint gets the job's OIDC identity token: asked again every time, as such tokens
/// last minutes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub(crate) enum IdentityFrom {
    /// The Actions runner, through the identity request of the step that mints.
    #[default]
    Actions,
    /// The variable `name` of the process that mints (GitLab's `id_tokens:`, CircleCI's
    /// `CIRCLE_OIDC_TOKEN_V2`).
    Variable { name: String },
    /// What `command` prints, run by `sh -c`, on Windows by `cmd` (Buildkite's
    /// `buildkite-agent oidc request-token`).
    Command { command: String },
}

/// The process that mints: the App's signer it holds, and its own environment, where the job's
/// identity may be asked for.
pub(crate) struct Minter<'a> {
    pub(crate) signer: Option<&'a Signer>,
    pub(crate) caller: &'a Caller,
}

impl Minter<'_> {
    /// The App's signer, ready: a KMS key's public key asked for, once per process.
    async fn app_signer(&self, gh: &GitHub) -> Result<&Signer> {
        let signer = self
            .signer
            .ok_or_else(|| anyhow!("the App's private key is gone from the state"))?;
        if let Signer::AwsKms(kms) = signer {
            let actions = self.caller.actions.as_ref().ok();
            kms.open(gh, &self.caller.env, actions).await?;
        }
        Ok(signer)
    }
}

impl Origin {
    /// The source the job's first mint settles: an App's installation looked up for `target`,
    /// and its signer as later steps find it again (a KMS key in the region this step found,
    /// whatever theirs says).
    pub(crate) async fn settle(
        &self,
        gh: &GitHub,
        minter: &Minter<'_>,
        target: &Target,
    ) -> Result<TokenSource, MintFailure> {
        match self {
            Origin::App { issuer, .. } => {
                let signer = minter.app_signer(gh).await?;
                let app = App { issuer, signer };
                let installation = apps::find_installation(gh, &app, target).await?;
                Ok(TokenSource::App {
                    issuer: issuer.clone(),
                    installation,
                    signer: SignedBy::of(signer),
                })
            }
            Origin::Exchange { exchange, identity } => Ok(TokenSource::Exchange {
                exchange: exchange.clone(),
                identity: identity.clone(),
            }),
        }
    }
}

impl TokenSource {
    /// The App's installation; a keyless source has none of its own.
    pub(crate) fn installation(&self) -> Option<&Installation> {
        match self {
            TokenSource::App { installation, .. } => Some(installation),
            TokenSource::Exchange { .. } => None,
        }
    }

    /// The App's slug, when it is known: a keyless token's App is the service's business.
    pub(crate) fn app_slug(&self) -> Option<&str> {
        self.installation().map(|i| i.app_slug.as_str())
    }

    /// A new token for `request`.
    pub(crate) async fn mint(
        &self,
        gh: &GitHub,
        minter: &Minter<'_>,
        request: &TokenRequest,
    ) -> Result<MintedToken, MintFailure> {
        match self {
            TokenSource::App {
                issuer,
                installation,
                ..
            } => {
                let signer = minter.app_signer(gh).await?;
                let app = App { issuer, signer };
                Ok(apps::create_token(gh, &app, installation, request).await?)
            }
            TokenSource::Exchange { exchange, identity } => {
                let oidc =
                    identity_token(gh, identity, minter.caller, &exchange.audience()).await?;
                Ok(exchange::mint(gh, &oidc, exchange).await?)
            }
        }
    }

    /// Check that GitHub accepts a new token, which it can refuse for a few seconds after
    /// minting it; for an App, the check is its bot user's lookup, so the bot comes with it.
    pub(crate) async fn check(
        &self,
        gh: &GitHub,
        minted: &MintedToken,
    ) -> Result<Option<BotUser>, crate::github::client::ApiError> {
        apps::check_new(gh, &minted.token, self.app_slug()).await
    }
}

/// Where this step asks the Actions runner for the job's OIDC identity: the runner gives every
/// step of a job with `permissions: id-token: write` both variables. `None` when it has not both.
pub(crate) fn runner_identity_request(env: &Env) -> Option<IdentityRequest> {
    let url = url::Url::parse(env.get("ACTIONS_ID_TOKEN_REQUEST_URL")?).ok()?;
    let token = env.given("ACTIONS_ID_TOKEN_REQUEST_TOKEN")?;
    Some(IdentityRequest::new(url, Secret::new(token.to_owned())))
}

/// The job's identity token for `audience`, from where `from` says.
async fn identity_token(
    gh: &GitHub,
    from: &IdentityFrom,
    caller: &Caller,
    audience: &str,
) -> Result<Secret> {
    match from {
        IdentityFrom::Actions => {
            let request = caller.actions.as_ref().map_err(|why| anyhow!("{why}"))?;
            exchange::identity_token(gh, request, audience)
                .await
                .map_err(|err| match err {
                    ExchangeError::Identity(_) => {
                        anyhow!("{err}: the job needs `permissions: id-token: write`")
                    }
                    other => other.into(),
                })
        }
        IdentityFrom::Variable { name } => {
            let shown = messages::short(name);
            let value = caller
                .env
                .get(name)
                .filter(|v| !v.trim().is_empty())
                .with_context(|| {
                    format!(
                        "the job's identity token is to be in `{shown}`, which is not set here: give every step of the job that variable (GitLab: `id_tokens:`), or name another with `--identity-env`"
                    )
                })?;
            Secret::checked(value.trim().to_owned())
                .map_err(|why| anyhow!("the job's identity token in `{shown}` {why}"))
        }
        IdentityFrom::Command { command } => {
            identity_from_command(command, IDENTITY_COMMAND_LIMITS).await
        }
    }
}

/// What `command` prints on stdout, run by the platform's shell within `limits`.
async fn identity_from_command(command: &str, limits: Limits) -> Result<Secret> {
    let named = || format!("the job's identity command `{}`", messages::short(command));
    let shell = process::shell(command);
    let ran = tokio::task::spawn_blocking(move || process::run(shell, &limits))
        .await
        .context("cannot wait for the identity command")?;
    let output = match ran {
        Ok(output) => output,
        Err(Stopped::Failed(cause)) => bail!("cannot run {}: {cause}", named()),
        Err(Stopped::Late) => {
            bail!(
                "{} gave no token within {}s",
                named(),
                limits.time.as_secs()
            )
        }
        Err(Stopped::TooLong) => bail!(
            "{} printed more than {} KiB, and an identity token is a few: make it print the token alone",
            named(),
            limits.stdout >> 10
        ),
    };
    if !output.status.success() {
        let said = String::from_utf8_lossy(&output.stderr);
        let said = said.lines().map(str::trim).find(|l| !l.is_empty());
        let said = messages::foreign(said.unwrap_or(""));
        bail!("{} failed ({}): {said}", named(), output.status);
    }
    let printed = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    Secret::checked(printed).map_err(|why| anyhow!("what {} printed {why}", named()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn installation() -> Installation {
        Installation {
            id: 7,
            app_slug: "keeper".into(),
            account: "Octo-Org".into(),
        }
    }

    #[test]
    fn the_source_is_stored_tagged_and_read_back() {
        let app = TokenSource::App {
            issuer: "Iv23abc".into(),
            installation: installation(),
            signer: SignedBy::Key,
        };
        let by_command = TokenSource::App {
            issuer: "Iv23abc".into(),
            installation: installation(),
            signer: SignedBy::Command {
                command: "aws kms sign --key-id alias/app".into(),
                public_key: Some(include_str!("../../tests/fixtures/app-key.pub.pem").into()),
            },
        };
        let keyless = TokenSource::Exchange {
            exchange: Exchange {
                service: url::Url::parse("https://octo-sts.dev").unwrap(),
                scope: "octo-org/app".into(),
                policy: "release".into(),
            },
            identity: IdentityFrom::Command {
                command: "buildkite-agent oidc request-token --audience octo-sts.dev".into(),
            },
        };
        let in_kms = TokenSource::App {
            issuer: "Iv23abc".into(),
            installation: installation(),
            signer: SignedBy::AwsKms {
                key: "arn:aws:kms:eu-west-1:111122223333:alias/app".into(),
                region: Some("eu-west-1".into()),
            },
        };
        let json = serde_json::to_value(&in_kms).unwrap();
        assert_eq!(
            json["signer"],
            serde_json::json!({
                "by": "aws_kms",
                "key": "arn:aws:kms:eu-west-1:111122223333:alias/app",
                "region": "eu-west-1",
            })
        );
        for source in [app, by_command, in_kms, keyless] {
            let json = serde_json::to_value(&source).unwrap();
            assert!(json["kind"].is_string(), "{json}");
            assert_eq!(serde_json::from_value::<TokenSource>(json).unwrap(), source);
        }
        // A key's source is stored as before signers, and read as the key's.
        let json = serde_json::to_value(TokenSource::App {
            issuer: "1".into(),
            installation: installation(),
            signer: SignedBy::Key,
        })
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "kind": "app",
                "issuer": "1",
                "installation": {"id": 7, "app_slug": "keeper", "account": "Octo-Org"},
            })
        );
        assert!(matches!(
            serde_json::from_value(json).unwrap(),
            TokenSource::App {
                signer: SignedBy::Key,
                ..
            }
        ));
    }

    #[test]
    fn only_an_apps_source_names_an_installation_and_a_slug() {
        let keyless = TokenSource::Exchange {
            exchange: Exchange {
                service: url::Url::parse("https://octo-sts.dev").unwrap(),
                scope: "o".into(),
                policy: "i".into(),
            },
            identity: IdentityFrom::Actions,
        };
        assert_eq!(keyless.installation(), None);
        assert_eq!(keyless.app_slug(), None);
    }

    fn gh() -> GitHub {
        let server = crate::github::client::Server {
            url: url::Url::parse("http://127.0.0.1:9").unwrap(),
            ca_certificates: None,
        };
        crate::github::client::connect(
            &server,
            Duration::from_secs(1),
            Default::default(),
            &Default::default(),
        )
        .unwrap()
        .0
    }

    #[test]
    fn an_identity_request_needs_both_variables() {
        let url = (
            "ACTIONS_ID_TOKEN_REQUEST_URL",
            "https://runner.example/t?api-version=2.0",
        );
        let token = ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "a-request-secret");
        let request = runner_identity_request(&Env::from_pairs([url, token])).unwrap();
        assert!(!format!("{request:?}").contains("a-request-secret"));
        assert!(runner_identity_request(&Env::from_pairs([url])).is_none());
        assert!(runner_identity_request(&Env::from_pairs([url, (token.0, "")])).is_none());
    }

    #[tokio::test]
    async fn the_identity_comes_from_the_variable_or_command_the_state_names() {
        let from_variable = IdentityFrom::Variable {
            name: "CI_OIDC".into(),
        };
        let token = identity_token(
            &gh(),
            &from_variable,
            &Caller {
                env: Env::from_pairs([("CI_OIDC", "eyJ.a.b\n")]),
                ..Caller::default()
            },
            "x",
        )
        .await
        .unwrap();
        assert_eq!(token.expose(), "eyJ.a.b");
        let missing = identity_token(&gh(), &from_variable, &Caller::default(), "x")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            missing.contains("`CI_OIDC`, which is not set here"),
            "{missing}"
        );

        let printed = IdentityFrom::Command {
            command: "echo eyJ.c.d".into(),
        };
        let token = identity_token(&gh(), &printed, &Caller::default(), "x")
            .await
            .unwrap();
        assert_eq!(token.expose(), "eyJ.c.d");
        // In the platform's shell's own words: `sh`'s, or `cmd`'s.
        let fail = if cfg!(windows) {
            "echo no agent here>&2& exit /b 3"
        } else {
            "echo no agent here >&2; exit 3"
        };
        let failing = IdentityFrom::Command {
            command: fail.into(),
        };
        let err = identity_token(&gh(), &failing, &Caller::default(), "x")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("failed") && err.contains("no agent here"),
            "{err}"
        );
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn an_identity_command_out_of_bounds_gets_its_own_one_line_error() {
        let limits = Limits {
            time: Duration::from_secs(1),
            ..IDENTITY_COMMAND_LIMITS
        };
        let said = |command: String| async move {
            let err = identity_from_command(&command, limits).await.unwrap_err();
            format!("{err:#}")
        };
        assert_eq!(
            said("head -c 200000000 /dev/zero".into()).await,
            "the job's identity command `head -c 200000000 /dev/zero` printed more than 64 KiB, and an identity token is a few: make it print the token alone"
        );
        assert_eq!(
            said("sleep 5".into()).await,
            "the job's identity command `sleep 5` gave no token within 1s"
        );
        // Its first line said, cut short, and no token it might echo.
        let line = "no agent here, ".repeat(40);
        let long = said(format!("printf '\\n  %s\\nsecond\\n' '{line}' >&2; exit 1")).await;
        let (_, quoted) = long.split_once("failed (exit status: 1): ").expect(&long);
        assert!(
            quoted.starts_with("no agent here, no") && quoted.ends_with('…'),
            "{long}"
        );
        assert!(
            quoted.chars().count() < 320 && !quoted.contains("second"),
            "{long}"
        );
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
        let echoed = said(format!("echo 'bad token {jwt}' >&2; false")).await;
        assert!(
            echoed.ends_with("failed (exit status: 1): bad token […]"),
            "{echoed}"
        );
        assert_eq!(
            said("echo 'not a token'".into()).await,
            "what the job's identity command `echo 'not a token'` printed has characters no token has (a blank, a line break or a symbol)"
        );
    }
}
