//! A stand-in for GitHub's App API on loopback, built on wiremock.
//!
//! It checks what GitHub checks (the JWT's RS256 signature and its `iat`/`exp` against its own
//! clock, which can be set apart from ours), issues tokens with a configurable lifetime, knows
//! which tokens are live, and records every request. Faults are scripted per path.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{KeyPair, RSA_PKCS1_2048_8192_SHA256, RsaKeyPair, UnparsedPublicKey};
use serde_json::{Value, json};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::{pem_der, random_alnum, unix_now};

pub const APP_ID: &str = "12345";
pub const CLIENT_ID: &str = "Iv23liTestClient";
pub const APP_SLUG: &str = "keeper-test";
/// The id of the App's bot user, `keeper-test[bot]`.
pub const APP_USER_ID: u64 = 41_898_282;
pub const APP_KEY: &str = include_str!("../../fixtures/app-key.pem");
/// Its public half, PEM `PUBLIC KEY`.
pub const APP_PUBLIC_KEY: &str = include_str!("../../fixtures/app-key.pub.pem");

/// The action's inputs for this App, plus `extra`; git credentials go to `https://github.com`.
pub fn app_inputs<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut inputs = vec![
        ("app-id", APP_ID),
        ("private-key", APP_KEY),
        ("git-server-url", "https://github.com"),
    ];
    inputs.extend_from_slice(extra);
    inputs
}

/// One installation of the App.
#[derive(Debug, Clone)]
pub struct Installation {
    pub id: u64,
    /// The login (or enterprise slug) as GitHub spells it.
    pub account: String,
    /// An enterprise installation: its account has a `slug`, no `login`, and no repositories.
    pub enterprise: bool,
    pub repos: Vec<String>,
    pub permissions: BTreeMap<String, String>,
}

/// A token the fake issued.
#[derive(Debug, Clone)]
pub struct Issued {
    pub token: String,
    pub installation: u64,
    /// `None`: every repository of the installation.
    pub repos: Option<Vec<String>>,
    pub permissions: BTreeMap<String, String>,
    /// In the fake's clock.
    pub expires_at: i64,
    pub revoked: bool,
}

/// A request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// The request's credentials, as sent: a JWT or a token.
    pub bearer: String,
    pub claims: Option<Value>,
    pub body: Value,
}

/// A scripted answer, which may quote the request's credentials back.
pub type Fault = Box<dyn Fn(&str) -> ResponseTemplate + Send>;

/// Everything the fake knows.
pub struct World {
    pub public_key: Vec<u8>,
    /// The fake's clock minus ours, seconds.
    pub clock_offset: i64,
    pub token_lifetime: Duration,
    pub installations: Vec<Installation>,
    pub issued: Vec<Issued>,
    pub seen: Vec<Seen>,
    /// How many more times to refuse a valid token with 401, as GitHub briefly does after minting.
    pub refuse_new_tokens: u32,
    /// Added to every answer, as a round trip to api.github.com would.
    pub latency: Duration,
    /// Changes the next token answers' bodies after the token is issued (odd answers).
    pub edit_mint_answer: Option<fn(&mut Value)>,
    /// Added to the next token answer only, after the token is issued: a mint on its way.
    pub slow_next_mint: Option<Duration>,
    faults: VecDeque<(String, Fault)>,
}

impl World {
    pub fn now(&self) -> i64 {
        unix_now() + self.clock_offset
    }

    /// Whether `token` is live now and covers `owner/repo`.
    pub fn authorizes(&self, token: &str, owner: &str, repo: &str) -> bool {
        let now = self.now();
        self.issued.iter().any(|t| {
            t.token == token
                && !t.revoked
                && t.expires_at > now
                && self.installations.iter().any(|i| {
                    i.id == t.installation
                        && i.account.eq_ignore_ascii_case(owner)
                        && i.repos.iter().any(|r| r.eq_ignore_ascii_case(repo))
                        && t.repos
                            .as_ref()
                            .is_none_or(|rs| rs.iter().any(|r| r.eq_ignore_ascii_case(repo)))
                })
        })
    }

    pub fn live_tokens(&self) -> Vec<&Issued> {
        let now = self.now();
        self.issued
            .iter()
            .filter(|t| !t.revoked && t.expires_at > now)
            .collect()
    }
}

pub struct FakeGitHub {
    pub server: MockServer,
    world: Arc<Mutex<World>>,
}

impl FakeGitHub {
    /// A fake with three installations: `Octo-Org` (repositories `app` and `lib`), `Other-Org`
    /// (`tools`) and the enterprise `octo-enterprise`.
    pub async fn start() -> Self {
        let server = MockServer::start().await;
        let pair = RsaKeyPair::from_der(&pem_der(APP_KEY)).expect("test key");
        let world = Arc::new(Mutex::new(World {
            public_key: pair.public_key().as_ref().to_vec(),
            clock_offset: 0,
            token_lifetime: Duration::from_secs(3600),
            installations: vec![
                Installation {
                    id: 4242,
                    account: "Octo-Org".into(),
                    enterprise: false,
                    repos: vec!["app".into(), "lib".into()],
                    permissions: BTreeMap::from([
                        ("contents".into(), "write".into()),
                        ("metadata".into(), "read".into()),
                        ("pull_requests".into(), "write".into()),
                    ]),
                },
                Installation {
                    id: 4343,
                    account: "Other-Org".into(),
                    enterprise: false,
                    repos: vec!["tools".into()],
                    permissions: BTreeMap::from([("contents".into(), "write".into())]),
                },
                Installation {
                    id: 4444,
                    account: "octo-enterprise".into(),
                    enterprise: true,
                    repos: Vec::new(),
                    permissions: BTreeMap::from([(
                        "enterprise_organization_installations".into(),
                        "read".into(),
                    )]),
                },
            ],
            issued: Vec::new(),
            seen: Vec::new(),
            refuse_new_tokens: 0,
            latency: Duration::ZERO,
            edit_mint_answer: None,
            slow_next_mint: None,
            faults: VecDeque::new(),
        }));
        Mock::given(wiremock::matchers::any())
            .respond_with(Responder(world.clone()))
            .mount(&server)
            .await;
        Self { server, world }
    }

    pub fn url(&self) -> String {
        self.server.uri()
    }

    pub fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A shared handle, for servers that check tokens (the git server).
    pub fn handle(&self) -> Arc<Mutex<World>> {
        self.world.clone()
    }

    /// Answer the next request whose path starts with `path` with `response` instead.
    pub fn fail_next(&self, path: &str, response: ResponseTemplate) {
        self.answer_next(path, move |_| response.clone());
    }

    /// Answer the next request whose path starts with `path` with what `answer` makes of the
    /// request's credentials (a hostile server quoting them back, say).
    pub fn answer_next(
        &self,
        path: &str,
        answer: impl Fn(&str) -> ResponseTemplate + Send + 'static,
    ) {
        self.world()
            .faults
            .push_back((path.to_owned(), Box::new(answer)));
    }

    /// Forget the faults not yet answered: the server is well again.
    pub fn clear_faults(&self) {
        self.world().faults.clear();
    }

    /// Every credential sent to the fake so far: JWTs and tokens.
    pub fn bearers(&self) -> Vec<String> {
        self.world().seen.iter().map(|s| s.bearer.clone()).collect()
    }

    pub fn seen(&self, method: &str, path_start: &str) -> Vec<Seen> {
        self.world()
            .seen
            .iter()
            .filter(|s| s.method == method && s.path.starts_with(path_start))
            .cloned()
            .collect()
    }

    pub fn mints(&self) -> usize {
        self.world().issued.len()
    }

    /// Every token the fake issued, in order.
    pub fn tokens(&self) -> Vec<String> {
        self.world()
            .issued
            .iter()
            .map(|t| t.token.clone())
            .collect()
    }
}

struct Responder(Arc<Mutex<World>>);

impl Respond for Responder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut world = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // GitHub Enterprise Server serves the same API under `/api/v3`.
        let path = request.url.path();
        let path = path.strip_prefix("/api/v3").unwrap_or(path).to_owned();
        let method = request.method.as_str().to_owned();
        let bearer = request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            // As GitHub: `Bearer` in any case (octokit sends `bearer`), or `token` (gh).
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| {
                scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token")
            })
            .map_or("", |(_, credentials)| credentials)
            .to_owned();
        let claims = jwt_claims(&bearer, &world.public_key);
        world.seen.push(Seen {
            method: method.clone(),
            path: path.clone(),
            bearer: bearer.clone(),
            claims: claims.clone().ok(),
            body: serde_json::from_slice(&request.body).unwrap_or(Value::Null),
        });
        let date = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(world.now() as u64));
        if let Some(at) = world
            .faults
            .iter()
            .position(|(p, _)| path.starts_with(p.as_str()))
        {
            let (_, answer) = world.faults.remove(at).unwrap_or_else(|| unreachable!());
            return answer(&bearer).insert_header("date", date.as_str());
        }
        let minting = method == "POST" && path.ends_with("/access_tokens");
        let response = route(&mut world, &method, &path, &bearer, claims, request);
        let slow = minting.then(|| world.slow_next_mint.take()).flatten();
        let response = response.insert_header("date", date.as_str());
        let delay = world.latency + slow.unwrap_or_default();
        // wiremock sleeps even for a zero delay: until its timer's next millisecond.
        if delay.is_zero() {
            response
        } else {
            response.set_delay(delay)
        }
    }
}

fn route(
    world: &mut World,
    method: &str,
    path: &str,
    bearer: &str,
    claims: Result<Value, String>,
    request: &Request,
) -> ResponseTemplate {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    if method == "DELETE" && path == "/installation/token" {
        let now = world.now();
        return match world
            .issued
            .iter_mut()
            .find(|t| t.token == bearer && !t.revoked && t.expires_at > now)
        {
            Some(token) => {
                token.revoked = true;
                ResponseTemplate::new(204)
            }
            None => message(401, "Bad credentials"),
        };
    }
    let bot = format!("/users/{APP_SLUG}%5Bbot%5D");
    let search = path == "/search/repositories";
    if method == "GET" && (path == "/installation/repositories" || path == bot || search) {
        if world.refuse_new_tokens > 0 {
            world.refuse_new_tokens -= 1;
            return message(401, "Bad credentials");
        }
        let now = world.now();
        if !world
            .issued
            .iter()
            .any(|t| t.token == bearer && !t.revoked && t.expires_at > now)
        {
            return message(401, "Bad credentials");
        }
        if search {
            return ResponseTemplate::new(200).set_body_json(
                json!({"total_count": 0, "incomplete_results": false, "items": []}),
            );
        }
        return if path == bot {
            ResponseTemplate::new(200).set_body_json(
                json!({"login": format!("{APP_SLUG}[bot]"), "id": APP_USER_ID, "type": "Bot"}),
            )
        } else {
            ResponseTemplate::new(200).set_body_json(json!({"total_count": 1, "repositories": []}))
        };
    }
    // Everything else authenticates as the App.
    let claims = match claims {
        Ok(claims) => claims,
        Err(why) => return message(401, &why),
    };
    if let Err(why) = check_times(&claims, world.now()) {
        return message(401, why);
    }
    match (method, parts.as_slice()) {
        ("GET", ["app"]) => ResponseTemplate::new(200).set_body_json(json!({
            "slug": APP_SLUG,
            "html_url": format!("https://github.com/apps/{APP_SLUG}"),
        })),
        ("GET", ["repos", owner, repo, "installation"]) => {
            let found = world.installations.iter().find(|i| {
                i.account.eq_ignore_ascii_case(owner)
                    && i.repos.iter().any(|r| r.eq_ignore_ascii_case(repo))
            });
            installation_answer(found)
        }
        (
            "GET",
            [
                kind @ ("users" | "orgs" | "enterprises"),
                owner,
                "installation",
            ],
        ) => {
            let enterprise = *kind == "enterprises";
            installation_answer(
                world
                    .installations
                    .iter()
                    .find(|i| i.enterprise == enterprise && i.account.eq_ignore_ascii_case(owner)),
            )
        }
        ("POST", ["app", "installations", id, "access_tokens"]) => mint(world, id, request),
        _ => message(404, "Not Found"),
    }
}

fn installation_answer(found: Option<&Installation>) -> ResponseTemplate {
    match found {
        Some(i) => {
            let account = if i.enterprise {
                json!({"slug": i.account, "name": "Octo Enterprise"})
            } else {
                json!({"login": i.account})
            };
            ResponseTemplate::new(200).set_body_json(json!({
                "id": i.id,
                "app_slug": APP_SLUG,
                "account": account,
            }))
        }
        None => message(404, "Not Found"),
    }
}

fn mint(world: &mut World, id: &str, request: &Request) -> ResponseTemplate {
    let Some(installation) = world
        .installations
        .iter()
        .find(|i| i.id.to_string() == id)
        .cloned()
    else {
        return message(404, "Not Found");
    };
    let body: Value = serde_json::from_slice(&request.body).unwrap_or(json!({}));
    let repos: Option<Vec<String>> = body["repositories"].as_array().map(|a| {
        a.iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    });
    if let Some(repos) = &repos
        && !repos
            .iter()
            .all(|r| installation.repos.iter().any(|i| i.eq_ignore_ascii_case(r)))
    {
        return message(
            422,
            "There is at least one repository that does not exist or is not accessible to the parent installation.",
        );
    }
    let mut permissions = installation.permissions.clone();
    if let Some(asked) = body["permissions"].as_object() {
        for (name, level) in asked {
            let level = level.as_str().unwrap_or("");
            let granted = installation.permissions.get(name).map(String::as_str);
            let ok = matches!(
                (granted, level),
                (Some("write"), "read" | "write") | (Some("read"), "read") | (Some("admin"), _)
            );
            if !ok {
                return message(
                    422,
                    "The permissions requested are not granted to this installation.",
                );
            }
        }
        permissions = asked
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
            .collect();
    }
    let token = format!("ghs_{}", random_alnum(36));
    let expires_at = world.now() + world.token_lifetime.as_secs() as i64;
    world.issued.push(Issued {
        token: token.clone(),
        installation: installation.id,
        repos: repos.clone(),
        permissions: permissions.clone(),
        expires_at,
        revoked: false,
    });
    let listed: Vec<Value> = repos
        .unwrap_or_default()
        .iter()
        .map(|r| json!({"name": r, "full_name": format!("{}/{r}", installation.account)}))
        .collect();
    let mut answer = json!({
        "token": token,
        "expires_at": humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(expires_at as u64)).to_string(),
        "permissions": permissions,
        "repository_selection": if listed.is_empty() { "all" } else { "selected" },
        "repositories": listed,
    });
    if let Some(edit) = world.edit_mint_answer {
        edit(&mut answer);
    }
    ResponseTemplate::new(201).set_body_json(answer)
}

/// GitHub's answers about JWT times, as it words them.
fn check_times(claims: &Value, now: i64) -> Result<(), &'static str> {
    let iat = claims["iat"]
        .as_i64()
        .ok_or("'Issued at' claim ('iat') must be an Integer")?;
    let exp = claims["exp"]
        .as_i64()
        .ok_or("'Expiration time' claim ('exp') must be an Integer")?;
    if iat > now + 1 {
        return Err(
            "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued",
        );
    }
    if exp > now + 600 {
        return Err("'Expiration time' claim ('exp') is too far in the future");
    }
    if exp <= now {
        return Err(
            "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires",
        );
    }
    Ok(())
}

/// Verify an RS256 JWT with the App's public key and hand back its claims.
pub fn jwt_claims(jwt: &str, public_key: &[u8]) -> Result<Value, String> {
    let claims = verify_jwt(jwt, public_key)?;
    match claims["iss"].as_str() {
        Some(APP_ID) | Some(CLIENT_ID) => Ok(claims),
        _ => Err("Integration not found".into()),
    }
}

/// Verify an RS256 JWT's signature with `public_key` and hand back its claims.
pub fn verify_jwt(jwt: &str, public_key: &[u8]) -> Result<Value, String> {
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header, claims, signature] = parts.as_slice() else {
        return Err("A JSON web token could not be decoded".into());
    };
    let decode = |part: &str| -> Result<Value, String> {
        let bytes = URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| "A JSON web token could not be decoded".to_owned())?;
        serde_json::from_slice(&bytes)
            .map_err(|_| "A JSON web token could not be decoded".to_owned())
    };
    if decode(header)?["alg"] != "RS256" {
        return Err("'alg' must be RS256".into());
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| "A JSON web token could not be decoded".to_owned())?;
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public_key)
        .verify(format!("{header}.{claims}").as_bytes(), &signature)
        .map_err(|_| "Integration's JWT could not be verified".to_owned())?;
    decode(claims)
}

/// An error answer in GitHub's shape.
pub fn message(status: u16, text: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "message": text,
        "documentation_url": "https://docs.github.com/rest",
    }))
}
