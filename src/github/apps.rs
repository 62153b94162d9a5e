//! The App API calls: find the installation, create an installation token, revoke it.
//!
//! Errors GitHub gives as bare statuses (404 on a lookup, 422 on a token request) become messages
//! that name the owner, repository or permission and say how to fix it. Names in GitHub's answers
//! decide which URLs git's credentials cover: each is checked against GitHub's rules, and the
//! account must be the owner asked for, before anything uses it.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use super::client::{ApiError, Auth, GitHub, Idempotency};
use super::names;
use super::signer::Signer;
use crate::clock::ServerTime;
use crate::messages::{json_error, quoted_list};
use crate::secret::Secret;

/// How long GitHub's installation tokens live.
pub(crate) const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// The username GitHub expects beside an installation token (git's, `gh`'s).
pub(crate) const TOKEN_USERNAME: &str = "x-access-token";

/// The App's credentials.
pub(crate) struct App<'a> {
    /// App id or client id: the JWT's `iss`.
    pub(crate) issuer: &'a str,
    pub(crate) signer: &'a Signer,
}

impl App<'_> {
    fn auth(&self) -> Auth<'_> {
        Auth::App {
            issuer: self.issuer,
            signer: self.signer,
        }
    }
}

/// Which installation to mint for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// Repositories of one owner: the token is limited to them.
    Repositories { owner: String, repos: Vec<String> },
    /// Every repository the owner's installation can reach.
    Owner(String),
    /// An enterprise installation (enterprise-level APIs, no repositories).
    Enterprise(String),
}

impl Target {
    fn lookup_path(&self) -> String {
        match self {
            Target::Repositories { owner, repos } => {
                format!(
                    "repos/{owner}/{}/installation",
                    repos.first().map_or("", String::as_str)
                )
            }
            Target::Owner(owner) => format!("users/{owner}/installation"),
            Target::Enterprise(slug) => format!("enterprises/{slug}/installation"),
        }
    }

    /// The owner's login, or the enterprise's slug.
    pub(crate) fn owner(&self) -> &str {
        match self {
            Target::Repositories { owner, .. }
            | Target::Owner(owner)
            | Target::Enterprise(owner) => owner,
        }
    }

    /// What a person calls this target in a message.
    pub(crate) fn describe(&self) -> String {
        match self {
            Target::Repositories { owner, repos } if repos.len() == 1 => {
                format!("`{owner}/{}`", repos[0])
            }
            Target::Repositories { owner, repos } => {
                format!("`{owner}` (repositories {})", quoted_list(repos))
            }
            Target::Owner(owner) => format!("`{owner}`"),
            Target::Enterprise(slug) => format!("the enterprise `{slug}`"),
        }
    }
}

/// The installation a token is minted from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub(crate) struct Installation {
    pub(crate) id: u64,
    pub(crate) app_slug: String,
    /// The account's login as GitHub spells it.
    pub(crate) account: String,
}

/// What a token may do: repository names (of the installation's owner) and permissions.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
pub(crate) struct TokenRequest {
    pub(crate) repositories: Vec<String>,
    pub(crate) permissions: BTreeMap<String, String>,
}

impl TokenRequest {
    /// The request body; empty fields are left out so GitHub applies the installation's own.
    pub(crate) fn body(&self) -> serde_json::Value {
        let mut body = json!({});
        if !self.repositories.is_empty() {
            body["repositories"] = json!(self.repositories);
        }
        if !self.permissions.is_empty() {
            body["permissions"] = json!(self.permissions);
        }
        body
    }
}

/// A freshly minted installation token.
#[derive(Debug, Clone)]
pub(crate) struct MintedToken {
    pub(crate) token: Secret,
    /// Expiry in GitHub's clock.
    pub(crate) expires_at: ServerTime,
    pub(crate) permissions: BTreeMap<String, String>,
    /// Names of the repositories it is limited to; empty for "all".
    pub(crate) repositories: Vec<String>,
}

/// How a revocation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Revoked {
    Now,
    /// 401: it had expired or been revoked already.
    AlreadyGone,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum MintError {
    #[error("the App is not installed on {target}: install it at {install_url}")]
    NotInstalled { target: String, install_url: String },
    #[error(
        "GitHub knows no installation of the App on the enterprise `{enterprise}`: enterprise installations exist on GitHub Enterprise Cloud only (not on GitHub Enterprise Server, nor for an organization), so check the enterprise's slug and that the App is installed on the enterprise itself"
    )]
    NoEnterpriseInstallation { enterprise: String },
    #[error("the App's JWT was refused ({detail})")]
    BadCredentials { detail: String },
    #[error("GitHub refused the token request ({detail}): {advice}")]
    Refused { detail: String, advice: String },
    #[error(
        "{target} has moved (GitHub answered {status}): it was renamed or transferred; use its current name"
    )]
    Moved { target: String, status: u16 },
    #[error(transparent)]
    Unusable(#[from] Unusable),
    #[error(transparent)]
    Api(#[from] ApiError),
}

/// An answer we must not act on: a name that breaks GitHub's rules or names another owner, or a
/// token that has expired on arrival.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Unusable(String);

/// Find the installation that covers `target`.
pub(crate) async fn find_installation(
    gh: &GitHub,
    app: &App<'_>,
    target: &Target,
) -> Result<Installation, MintError> {
    let result: Result<LookupAnswer, ApiError> = gh
        .json(
            Method::GET,
            &target.lookup_path(),
            app.auth(),
            None,
            Idempotency::Safe,
        )
        .await;
    match result {
        Ok(answer) => Ok(installation_of(target, answer)?),
        Err(err) => match err.status() {
            Some(status @ (301 | 302 | 307 | 308)) => Err(MintError::Moved {
                target: target.describe(),
                status,
            }),
            Some(404) => match target {
                Target::Enterprise(slug) => Err(MintError::NoEnterpriseInstallation {
                    enterprise: slug.clone(),
                }),
                _ => Err(MintError::NotInstalled {
                    target: target.describe(),
                    install_url: install_url(gh, app).await,
                }),
            },
            _ => Err(classify_auth(err)),
        },
    }
}

/// What GitHub answers to an installation lookup. A user or an organisation has a `login`; an
/// enterprise has a `slug`.
#[derive(Deserialize)]
struct LookupAnswer {
    id: u64,
    app_slug: String,
    #[serde(default)]
    account: Account,
}

#[derive(Deserialize, Default)]
struct Account {
    login: Option<String>,
    slug: Option<String>,
}

/// The installation a lookup for `target` found: its App's slug a slug, its account a login (an
/// enterprise's slug) and the owner that was asked for, case aside.
fn installation_of(target: &Target, answer: LookupAnswer) -> Result<Installation, Unusable> {
    const LOOKUP: &str = "GitHub's answer to the installation lookup";
    if !names::is_login(&answer.app_slug) {
        return Err(Unusable(format!(
            "{LOOKUP} has no valid App slug (`app_slug` is `{}`)",
            names::shown(&answer.app_slug)
        )));
    }
    let (field, account) = match target {
        Target::Enterprise(_) => ("account.slug", answer.account.slug),
        _ => ("account.login", answer.account.login),
    };
    let account = account.unwrap_or_default();
    if !names::is_login(&account) {
        return Err(Unusable(format!(
            "{LOOKUP} has no valid account (`{field}` is `{}`), so it cannot tell which URLs git's credentials may cover",
            names::shown(&account)
        )));
    }
    if !account.eq_ignore_ascii_case(target.owner()) {
        return Err(Unusable(format!(
            "{LOOKUP} names the account `{account}` (`{field}`), not `{}`, the owner asked for: git's credentials would cover another owner",
            target.owner()
        )));
    }
    Ok(Installation {
        id: answer.id,
        app_slug: answer.app_slug,
        account,
    })
}

/// Create an installation token, limited as `request` says.
///
/// The token is read first and on its own: once GitHub has minted one, we must hold it to hand
/// over or revoke, whatever else in the answer is odd. The other fields are read leniently; an
/// unreadable `expires_at` is taken as the usual hour from GitHub's `now`. The token comes back
/// unchecked: the keeper records it, then has `accept` check it.
pub(crate) async fn create_token(
    gh: &GitHub,
    app: &App<'_>,
    installation: &Installation,
    request: &TokenRequest,
) -> Result<MintedToken, MintError> {
    let path = format!("app/installations/{}/access_tokens", installation.id);
    let result = gh
        .send(
            Method::POST,
            &path,
            app.auth(),
            Some(&request.body()),
            Idempotency::CreatesSomething,
        )
        .await;
    let (url, bytes) = match result {
        Ok(answer) => answer,
        Err(err) if err.status() == Some(422) => {
            let detail = err.to_string();
            return Err(MintError::Refused {
                detail,
                advice: refusal_advice(&installation.account, request),
            });
        }
        Err(err) => return Err(classify_auth(err)),
    };
    read_minted(&bytes, gh.clock().server_now()).map_err(|why| {
        MintError::Api(ApiError::Decode {
            method: Method::POST,
            url,
            detail: why.to_string(),
        })
    })
}

/// A new token checked before anyone uses it: it must not have expired on arrival (it would
/// fail every call, every later call would mint again, and the post step would judge it gone and
/// leave it), and the repositories it names must be repository names. One that fails is revoked
/// at once.
pub(crate) async fn accept(gh: &GitHub, minted: MintedToken) -> Result<MintedToken, Unusable> {
    let Some(why) = unusable(&minted, gh.clock().server_now()) else {
        return Ok(minted);
    };
    Err(Unusable(match revoke(gh, &minted.token).await {
        Ok(_) => format!("{why}; it was revoked"),
        Err(err) => {
            format!("{why}; revoking it failed too, so it stays valid until it expires: {err}")
        }
    }))
}

/// Why a new token must not be used at `server_now` (GitHub's clock), if it must not.
fn unusable(minted: &MintedToken, server_now: ServerTime) -> Option<String> {
    if minted.expires_at <= server_now {
        return Some(format!(
            "GitHub handed over a token that expired at {} (`expires_at`), already past by GitHub's own clock",
            minted.expires_at.rfc3339()
        ));
    }
    let bad = minted
        .repositories
        .iter()
        .find(|r| !names::is_repository(r))?;
    Some(format!(
        "GitHub's answer to the token request names `{}` among its repositories (`repositories`), which is no repository's name",
        names::shown(bad)
    ))
}

/// Why a token request's answer gives no token we can use.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NoToken {
    /// The answer has no `token` string: the detail says where it stopped reading.
    #[error("no token in it: it {0}")]
    Missing(String),
    #[error("its token {0}")]
    Unfit(&'static str),
}

/// A token request's answer: the token, checked, then the rest as far as it reads.
pub(crate) fn read_minted(bytes: &[u8], server_now: ServerTime) -> Result<MintedToken, NoToken> {
    #[derive(Deserialize)]
    struct Token {
        token: String,
    }
    #[derive(Deserialize, Default)]
    struct Repo {
        name: String,
    }
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Rest {
        expires_at: Option<String>,
        permissions: BTreeMap<String, serde_json::Value>,
        repositories: Vec<Repo>,
    }
    let token = serde_json::from_slice::<Token>(bytes)
        .map_err(|e| NoToken::Missing(json_error(&e)))?
        .token;
    let token = Secret::checked(token).map_err(NoToken::Unfit)?;
    let rest: Rest = serde_json::from_slice(bytes).unwrap_or_default();
    let expires_at = rest
        .expires_at
        .as_deref()
        .and_then(|text| humantime::parse_rfc3339(text).ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .map(ServerTime)
        .unwrap_or_else(|| {
            tracing::debug!("unreadable `expires_at`: taking the usual lifetime from now");
            ServerTime(server_now.0.saturating_add(TOKEN_LIFETIME.as_secs() as i64))
        });
    Ok(MintedToken {
        token,
        expires_at,
        permissions: rest
            .permissions
            .into_iter()
            .filter_map(|(k, v)| Some((k, v.as_str()?.to_owned())))
            .collect(),
        repositories: rest.repositories.into_iter().map(|r| r.name).collect(),
    })
}

/// How long GitHub may refuse a token it has just created.
const NEW_TOKEN_GRACE: Duration = Duration::from_secs(8);

/// The App's bot user, `<slug>[bot]`: the author of what its tokens commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BotUser {
    pub(crate) login: String,
    /// Its numeric id, or why it is not known (a server without the user, an odd answer, a new
    /// token not accepted yet).
    pub(crate) id: Result<u64, NoBotId>,
}

/// Why the bot user's id is not known, each with its detail (an error's own text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NoBotId {
    /// The lookup's answer did not read: the detail says where.
    #[error("the answer to its lookup {0}")]
    Unreadable(String),
    /// GitHub answered the lookup with a failure other than 401.
    #[error("{0}")]
    LookupFailed(String),
    /// GitHub did not accept the new token, so the lookup did not happen.
    #[error("the new token is not accepted yet: {0}")]
    NotAccepted(String),
}

impl BotUser {
    pub(crate) fn of_app(slug: &str, id: Result<u64, NoBotId>) -> Self {
        Self {
            login: format!("{slug}[bot]"),
            id,
        }
    }

    /// Its commit address on the git server `host`: `<id>+<login>@users.noreply.<host>`, the
    /// form that GitHub links to the bot's account; without the id, the older `<login>@…`.
    pub(crate) fn email(&self, host: &str) -> String {
        match self.id {
            Ok(id) => format!("{id}+{}@users.noreply.{host}", self.login),
            Err(_) => format!("{}@users.noreply.{host}", self.login),
        }
    }
}

/// Check that GitHub accepts a new token, which it can refuse with 401 for a few seconds after
/// creating it. With the App's slug the check is the lookup of its bot user, so the bot's id
/// costs no extra request (any answer but 401 means the token was accepted); a keyless token's
/// App is not known to us (no slug), and its check is a plain one.
pub(crate) async fn check_new(
    gh: &GitHub,
    token: &Secret,
    app_slug: Option<&str>,
) -> Result<Option<BotUser>, ApiError> {
    #[derive(Deserialize)]
    struct Body {
        id: u64,
    }
    let Some(app_slug) = app_slug else {
        return first_use(gh, token, "installation/repositories?per_page=1")
            .await
            .map(|_| None);
    };
    let path = format!("users/{app_slug}%5Bbot%5D");
    match first_use(gh, token, &path).await {
        Ok(bytes) => {
            let id = serde_json::from_slice::<Body>(&bytes)
                .map(|b| b.id)
                .map_err(|e| NoBotId::Unreadable(json_error(&e)));
            Ok(Some(BotUser::of_app(app_slug, id)))
        }
        Err(err) if err.status().is_some_and(|s| s != 401) => Ok(Some(BotUser::of_app(
            app_slug,
            Err(NoBotId::LookupFailed(err.to_string())),
        ))),
        Err(err) => Err(err),
    }
}

/// A new token's first request, repeated while GitHub answers 401 within the grace period.
async fn first_use(gh: &GitHub, token: &Secret, path: &str) -> Result<Vec<u8>, ApiError> {
    let mut pause = Duration::from_millis(250);
    let mut waited = Duration::ZERO;
    loop {
        let answer = gh
            .send(
                Method::GET,
                path,
                Auth::Token(token),
                None,
                Idempotency::Safe,
            )
            .await;
        match answer {
            Ok((_, bytes)) => return Ok(bytes),
            Err(err) if err.status() == Some(401) && waited + pause <= NEW_TOKEN_GRACE => {
                tokio::time::sleep(pause).await;
                waited += pause;
                pause *= 2;
            }
            Err(err) => return Err(err),
        }
    }
}

/// Revoke an installation token (`DELETE /installation/token`).
pub(crate) async fn revoke(gh: &GitHub, token: &Secret) -> Result<Revoked, ApiError> {
    match gh
        .send(
            Method::DELETE,
            "installation/token",
            Auth::Token(token),
            None,
            Idempotency::Safe,
        )
        .await
    {
        Ok(_) => Ok(Revoked::Now),
        Err(err) if err.status() == Some(401) => Ok(Revoked::AlreadyGone),
        Err(err) => Err(err),
    }
}

/// Where to install the App: its page, when `GET /app` tells us; its settings otherwise.
async fn install_url(gh: &GitHub, app: &App<'_>) -> String {
    #[derive(Deserialize)]
    struct Body {
        html_url: String,
    }
    let page = gh
        .json::<Body>(Method::GET, "app", app.auth(), None, Idempotency::Safe)
        .await
        .ok()
        .and_then(|body| url::Url::parse(&body.html_url).ok())
        .filter(|url| matches!(url.scheme(), "https" | "http") && url.query().is_none());
    match page {
        Some(page) => format!("{}/installations/new", page.as_str().trim_end_matches('/')),
        None => "the App's settings page, under `Install App`".into(),
    }
}

fn classify_auth(err: ApiError) -> MintError {
    match err.status() {
        Some(401) => MintError::BadCredentials {
            detail: err.to_string(),
        },
        _ => MintError::Api(err),
    }
}

fn refusal_advice(account: &str, request: &TokenRequest) -> String {
    let mut asks = Vec::new();
    if !request.repositories.is_empty() {
        asks.push(format!(
            "that the installation on `{account}` can reach repositories {}",
            quoted_list(&request.repositories)
        ));
    }
    if !request.permissions.is_empty() {
        let perms: Vec<String> = request
            .permissions
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        asks.push(format!("that the App is granted {}", quoted_list(&perms)));
    }
    if asks.is_empty() {
        "check the App's installation settings".into()
    } else {
        format!("check {}", asks.join(" and "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_path_follows_the_target() {
        let repos = Target::Repositories {
            owner: "octo".into(),
            repos: vec!["a".into(), "b".into()],
        };
        assert_eq!(repos.lookup_path(), "repos/octo/a/installation");
        assert_eq!(
            Target::Owner("octo".into()).lookup_path(),
            "users/octo/installation"
        );
        assert_eq!(
            Target::Enterprise("acme".into()).lookup_path(),
            "enterprises/acme/installation"
        );
    }

    fn answer(login: &str, slug: &str) -> LookupAnswer {
        LookupAnswer {
            id: 1,
            app_slug: slug.into(),
            account: Account {
                login: Some(login.into()),
                slug: None,
            },
        }
    }

    #[test]
    fn a_lookup_answer_must_name_the_owner_asked_for_with_valid_names() {
        let target = Target::Repositories {
            owner: "Octo-Org".into(),
            repos: vec!["app".into()],
        };
        let found = installation_of(&target, answer("octo-org", "keeper")).unwrap();
        assert_eq!(found.account, "octo-org", "as GitHub spells it");
        for (login, slug, field) in [
            ("", "keeper", "`account.login` is ``"),
            (
                "Other-Org",
                "keeper",
                "`Other-Org` (`account.login`), not `Octo-Org`",
            ),
            ("octo org\n", "keeper", "`account.login` is `octo org\\n`"),
            ("Octo-Org", "kee per", "`app_slug` is `kee per`"),
        ] {
            let err = installation_of(&target, answer(login, slug)).unwrap_err();
            assert!(err.to_string().contains(field), "{err}");
        }
        let enterprise = Target::Enterprise("acme".into());
        let slugged = LookupAnswer {
            account: Account {
                login: None,
                slug: Some("ACME".into()),
            },
            ..answer("", "keeper")
        };
        assert_eq!(
            installation_of(&enterprise, slugged).unwrap().account,
            "ACME"
        );
    }

    #[test]
    fn a_new_token_must_not_have_expired_and_must_name_real_repositories() {
        let minted = |expires_at, repos: &[&str]| MintedToken {
            token: Secret::new("ghs_unusable-or-not".into()),
            expires_at,
            permissions: BTreeMap::new(),
            repositories: repos.iter().map(|r| (*r).to_owned()).collect(),
        };
        assert_eq!(
            unusable(&minted(ServerTime(1001), &["app"]), ServerTime(1000)),
            None
        );
        assert!(
            unusable(&minted(ServerTime(1000), &[]), ServerTime(1000))
                .unwrap()
                .contains("1970-01-01T00:16:40Z")
        );
        let named = unusable(&minted(ServerTime(5000), &["app", ".."]), ServerTime(1000)).unwrap();
        assert!(named.contains("`..`"), "{named}");
    }

    #[test]
    fn the_bot_commits_with_its_numbered_noreply_address() {
        let bot = BotUser::of_app("keeper", Ok(41));
        assert_eq!(bot.login, "keeper[bot]");
        assert_eq!(
            bot.email("github.com"),
            "41+keeper[bot]@users.noreply.github.com"
        );
        assert_eq!(
            BotUser::of_app("keeper", Err(NoBotId::LookupFailed("no answer".into())))
                .email("ghes.example.com"),
            "keeper[bot]@users.noreply.ghes.example.com"
        );
    }

    #[test]
    fn a_minted_token_is_read_first_and_the_rest_leniently() {
        let odd = br#"{"token": "ghs_abc", "expires_at": "soon", "permissions": {"a": 1}}"#;
        let minted = read_minted(odd, ServerTime(1000)).unwrap();
        assert_eq!(minted.token.expose(), "ghs_abc");
        assert_eq!(minted.expires_at, ServerTime(4600));
        assert!(minted.permissions.is_empty());
        let whole = br#"{"token": "ghs_abc", "expires_at": "2026-11-25T18:00:00Z",
            "permissions": {"contents": "write"}, "repositories": [{"name": "app"}]}"#;
        let minted = read_minted(whole, ServerTime(0)).unwrap();
        assert_eq!(minted.expires_at, ServerTime(1_795_629_600));
        assert_eq!(minted.repositories, ["app"]);
        assert_eq!(minted.permissions["contents"], "write");
    }

    #[test]
    fn an_answer_without_a_usable_token_is_refused() {
        assert!(
            read_minted(b"{}", ServerTime(0))
                .unwrap_err()
                .to_string()
                .starts_with("no token in it")
        );
        assert!(read_minted(b"not json", ServerTime(0)).is_err());
        let injected = br#"{"token": "ghs_abc\npassword=evil"}"#;
        assert!(
            read_minted(injected, ServerTime(0))
                .unwrap_err()
                .to_string()
                .starts_with("its token")
        );
    }

    #[test]
    fn empty_request_sends_an_empty_object() {
        assert_eq!(TokenRequest::default().body(), json!({}));
    }

    #[test]
    fn request_body_carries_repositories_and_permissions() {
        let request = TokenRequest {
            repositories: vec!["a".into()],
            permissions: BTreeMap::from([("contents".into(), "write".into())]),
        };
        assert_eq!(
            request.body(),
            json!({"repositories": ["a"], "permissions": {"contents": "write"}})
        );
    }

    #[test]
    fn refusal_advice_names_what_was_asked() {
        let request = TokenRequest {
            repositories: vec!["a".into(), "b".into()],
            permissions: BTreeMap::from([("issues".into(), "write".into())]),
        };
        assert_eq!(
            refusal_advice("Octo", &request),
            "check that the installation on `Octo` can reach repositories `a`, `b` and that the App is granted `issues: write`"
        );
    }
}
