//! Keyless minting's two services on loopback: an OIDC issuer standing in for the runner's
//! identity service, and a token exchange service speaking Octo STS's protocol, which checks the
//! identity against its trust policies and mints at the fake GitHub.

use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use serde_json::{Value, json};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::fake_github::{FakeGitHub, Issued, World, verify_jwt};
use crate::{pem_der, random_alnum, unix_now};

/// The issuer signs with a key of its own, not the App's.
const ISSUER_KEY: &str = include_str!("../../fixtures/other-key.pem");
/// The repository the job runs in, as its identity token says.
pub const JOB_REPOSITORY: &str = "Octo-Org/app";

/// The runner's identity service for one job.
pub struct Issuer {
    pub server: MockServer,
    request_token: String,
}

impl Issuer {
    pub async fn start() -> Self {
        let server = MockServer::start().await;
        let request_token = format!("request-{}", random_alnum(24));
        let pair = Arc::new(RsaKeyPair::from_der(&pem_der(ISSUER_KEY)).expect("issuer key"));
        Mock::given(wiremock::matchers::path("/token"))
            .respond_with(IssuerResponder {
                pair,
                request_token: request_token.clone(),
                url: server.uri(),
            })
            .mount(&server)
            .await;
        Self {
            server,
            request_token,
        }
    }

    /// The two variables the runner gives every step of a job with `id-token: write`.
    pub fn env(&self) -> [(String, String); 2] {
        [
            (
                "ACTIONS_ID_TOKEN_REQUEST_URL".into(),
                format!("{}/token?api-version=2.0", self.server.uri()),
            ),
            (
                "ACTIONS_ID_TOKEN_REQUEST_TOKEN".into(),
                self.request_token.clone(),
            ),
        ]
    }

    /// An identity token of the job for `audience`, as another CI hands it to a job (GitLab's
    /// `id_tokens:`): the same claims the runner's service signs.
    pub fn identity_token(&self, audience: &str) -> String {
        let pair = RsaKeyPair::from_der(&pem_der(ISSUER_KEY)).expect("issuer key");
        sign(&pair, &claims(&self.server.uri(), audience))
    }

    /// The public key the exchange service trusts.
    pub fn public_key() -> Vec<u8> {
        let pair = RsaKeyPair::from_der(&pem_der(ISSUER_KEY)).expect("issuer key");
        pair.public_key().as_ref().to_vec()
    }
}

struct IssuerResponder {
    pair: Arc<RsaKeyPair>,
    request_token: String,
    url: String,
}

impl Respond for IssuerResponder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if bearer(request) != self.request_token {
            return ResponseTemplate::new(401)
                .set_body_json(json!({"message": "bad request token"}));
        }
        let Some((_, audience)) = request.url.query_pairs().find(|(k, _)| k == "audience") else {
            return ResponseTemplate::new(400).set_body_json(json!({"message": "no audience"}));
        };
        let claims = claims(&self.url, &audience);
        ResponseTemplate::new(200).set_body_json(json!({"value": sign(&self.pair, &claims)}))
    }
}

/// The job's identity claims, from `issuer` for `audience`, for five minutes.
fn claims(issuer: &str, audience: &str) -> Value {
    let now = unix_now();
    json!({
        "iss": issuer,
        "aud": audience,
        "sub": format!("repo:{JOB_REPOSITORY}:ref:refs/heads/main"),
        "repository": JOB_REPOSITORY,
        "iat": now,
        "exp": now + 300,
    })
}

/// The credentials of a request's `Authorization` header, whatever its scheme.
fn bearer(request: &Request) -> &str {
    request
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .map_or("", |(_, t)| t)
}

fn sign(pair: &RsaKeyPair, claims: &Value) -> String {
    let mut jwt = URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT"}"#);
    jwt.push('.');
    jwt.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
    let mut signature = vec![0; pair.public().modulus_len()];
    pair.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        jwt.as_bytes(),
        &mut signature,
    )
    .expect("sign");
    jwt.push('.');
    jwt.push_str(&URL_SAFE_NO_PAD.encode(signature));
    jwt
}

/// A trust policy: which job may get a token for a scope, and what that token reaches.
#[derive(Debug, Clone)]
pub struct Policy {
    pub scope: String,
    pub identity: String,
    /// The repository whose workflows may use it.
    pub allows: String,
    /// The repositories the token covers; `None` for all the installation reaches.
    pub repos: Option<Vec<String>>,
}

/// What the exchange service knows and has done.
#[derive(Default)]
pub struct StsWorld {
    pub policies: Vec<Policy>,
    pub exchanges: usize,
    /// Answer every exchange with 503.
    pub down: bool,
    /// Every identity token presented.
    pub identities: Vec<String>,
    /// Answer the next exchange with what this makes of the identity token (a broken service).
    pub answer_next: Option<crate::fake_github::Fault>,
}

/// A token exchange service on loopback.
pub struct Sts {
    pub server: MockServer,
    world: Arc<Mutex<StsWorld>>,
}

impl Sts {
    /// A service that trusts `Issuer`'s tokens and mints at `github`; one policy, `release`, lets
    /// the job's repository get a token for `Octo-Org/app`.
    pub async fn start(github: &FakeGitHub) -> Self {
        let server = MockServer::start().await;
        let world = Arc::new(Mutex::new(StsWorld {
            policies: vec![Policy {
                scope: JOB_REPOSITORY.into(),
                identity: "release".into(),
                allows: JOB_REPOSITORY.into(),
                repos: Some(vec!["app".into()]),
            }],
            ..StsWorld::default()
        }));
        let audience = server.address().to_string();
        Mock::given(wiremock::matchers::path("/sts/exchange"))
            .respond_with(StsResponder {
                world: world.clone(),
                github: github.handle(),
                audience,
            })
            .mount(&server)
            .await;
        Self { server, world }
    }

    pub fn world(&self) -> MutexGuard<'_, StsWorld> {
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn url(&self) -> String {
        self.server.uri()
    }
}

struct StsResponder {
    world: Arc<Mutex<StsWorld>>,
    github: Arc<Mutex<World>>,
    audience: String,
}

fn refuse(status: u16, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({"message": message}))
}

impl Respond for StsResponder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut sts = self.world.lock().unwrap_or_else(|e| e.into_inner());
        sts.identities.push(bearer(request).to_owned());
        if let Some(answer) = sts.answer_next.take() {
            return answer(bearer(request));
        }
        if sts.down {
            return refuse(503, "unavailable");
        }
        let query = |name: &str| {
            request
                .url
                .query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let (scope, identity) = (query("scope"), query("identity"));
        let claims = match verify_jwt(bearer(request), &Issuer::public_key()) {
            Ok(claims) => claims,
            Err(_) => return refuse(401, "invalid identity token"),
        };
        if claims["aud"] != self.audience.as_str() || claims["exp"].as_i64() < Some(unix_now()) {
            return refuse(401, "identity token for another audience, or expired");
        }
        let Some(policy) = sts
            .policies
            .iter()
            .find(|p| p.scope.eq_ignore_ascii_case(&scope) && p.identity == identity)
            .cloned()
        else {
            return refuse(
                404,
                &format!("trust policy `{identity}` not found in `{scope}`"),
            );
        };
        if claims["repository"] != policy.allows.as_str() {
            return refuse(403, "the trust policy does not allow this workflow");
        }
        sts.exchanges += 1;
        let mut github = self.github.lock().unwrap_or_else(|e| e.into_inner());
        let owner = scope.split('/').next().unwrap_or_default();
        let Some(installation) = github
            .installations
            .iter()
            .find(|i| i.account.eq_ignore_ascii_case(owner))
            .cloned()
        else {
            return refuse(404, "the App is not installed there");
        };
        let token = format!("ghs_{}", random_alnum(36));
        let expires_at = github.now() + github.token_lifetime.as_secs() as i64;
        github.issued.push(Issued {
            token: token.clone(),
            installation: installation.id,
            repos: policy.repos.clone(),
            permissions: installation.permissions.clone(),
            expires_at,
            revoked: false,
        });
        ResponseTemplate::new(200).set_body_json(json!({"token": token}))
    }
}
