//! Where a job's tokens come from, and minting one from there: the job's first token and every
//! re-mint go through `mint`.
//!
//! A source is the App's key (a JWT for the App, its installation found once, then a token
//! request) or an exchange of the job's identity at a token exchange service (keyless). It is
//! stored in the state, tagged, with everything a re-mint needs but the key, which has a file of
//! its own; what the outputs can say (an installation id, a bot) follows from which it is.

use anyhow::{Result, anyhow};
use serde::{Deserialize, Serialize};

use crate::github::apps::{self, App, BotUser};
use crate::github::exchange::{self, Exchange, IdentityRequest};
use crate::github::{GitHub, Installation, MintedToken, PrivateKey, Target, TokenRequest};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum TokenSource {
    /// The App's key signs a JWT for `issuer` (its id or client id); tokens are minted from its
    /// installation, which the job's first mint looks up.
    App {
        issuer: String,
        installation: Option<Installation>,
    },
    /// Keyless: the job's identity, exchanged for a token as a trust policy allows. Nothing
    /// secret.
    Exchange(Exchange),
}

/// What the process that mints brings to it: the App's key, or its step's way to ask for the
/// job's identity (or why it has none).
pub(crate) struct Means<'a> {
    pub(crate) key: Option<&'a PrivateKey>,
    pub(crate) identity: &'a Result<IdentityRequest, String>,
}

impl TokenSource {
    /// The App's installation, once the first mint found it.
    pub(crate) fn installation(&self) -> Option<&Installation> {
        match self {
            TokenSource::App { installation, .. } => installation.as_ref(),
            TokenSource::Exchange(_) => None,
        }
    }

    /// The App's slug, when it is known: a keyless token's App is the service's business.
    pub(crate) fn app_slug(&self) -> Option<&str> {
        self.installation().map(|i| i.app_slug.as_str())
    }

    /// A new token for `request`. An App's installation not known yet is looked up for
    /// `target` first, and kept.
    pub(crate) async fn mint(
        &mut self,
        gh: &GitHub,
        means: &Means<'_>,
        target: Option<&Target>,
        request: &TokenRequest,
    ) -> Result<MintedToken> {
        match self {
            TokenSource::App {
                issuer,
                installation,
            } => {
                let key = means
                    .key
                    .ok_or_else(|| anyhow!("the App's private key is gone from the state"))?;
                let app = App { issuer, key };
                let found = match (installation.take(), target) {
                    (Some(found), _) => found,
                    (None, Some(target)) => apps::find_installation(gh, &app, target).await?,
                    (None, None) => return Err(anyhow!("the state names no installation")),
                };
                let minted = apps::create_token(gh, &app, &found, request).await;
                *installation = Some(found);
                Ok(minted?)
            }
            TokenSource::Exchange(wanted) => {
                let identity = means.identity.as_ref().map_err(|why| anyhow!("{why}"))?;
                Ok(exchange::mint(gh, identity, wanted).await?)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_is_stored_tagged_and_read_back() {
        let app = TokenSource::App {
            issuer: "Iv23abc".into(),
            installation: Some(Installation {
                id: 7,
                app_slug: "keeper".into(),
                account: "Octo-Org".into(),
            }),
        };
        let keyless = TokenSource::Exchange(Exchange {
            service: url::Url::parse("https://octo-sts.dev").unwrap(),
            scope: "octo-org/app".into(),
            identity: "release".into(),
        });
        for source in [app, keyless] {
            let json = serde_json::to_value(&source).unwrap();
            assert!(json["kind"].is_string(), "{json}");
            assert_eq!(serde_json::from_value::<TokenSource>(json).unwrap(), source);
        }
        let json = serde_json::to_value(TokenSource::App {
            issuer: "1".into(),
            installation: None,
        })
        .unwrap();
        assert_eq!(json["kind"], "app");
    }

    #[test]
    fn only_an_apps_source_names_an_installation_and_a_slug() {
        let keyless = TokenSource::Exchange(Exchange {
            service: url::Url::parse("https://octo-sts.dev").unwrap(),
            scope: "o".into(),
            identity: "i".into(),
        });
        assert_eq!(keyless.installation(), None);
        assert_eq!(keyless.app_slug(), None);
    }
}
