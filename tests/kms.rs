//! AWS KMS built in, against moto's real server: what it signs verifies with the key's public
//! key, every bad key and credential is one clear line, and each source of credentials works.

use std::time::{Duration, Instant};

use ring::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use testkit::assert_success;
use testkit::ci::{CiJob, assert_nothing_left};
use testkit::engine;
use testkit::fake_github::FakeGitHub;
use testkit::logs::text;
use testkit::moto::{Moto, SECRET, User, pkcs1_of};
use testkit::runner::{LaterStep, View};
use testkit::scene::{Scene, assert_no_key_material};
use testkit::sts::Issuer;

const REGION: &str = "eu-west-1";
const MESSAGE: &[u8] = b"eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiIxIn0";

fn sign(vars: &[(String, String)], key: &str) -> Result<Vec<u8>, String> {
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    token_keeper::kms_sign_for_test(&vars, key, None, MESSAGE)
}

/// `sign` off the async runtime, for tests that serve a fake with wiremock.
async fn sign_beside(vars: Vec<(String, String)>, key: String) -> Result<Vec<u8>, String> {
    tokio::task::spawn_blocking(move || sign(&vars, &key))
        .await
        .unwrap()
}

/// A new RSA signing key in `region`: its ARN, and its public key as moto gives it, asked
/// apart from the signer under test.
fn rsa_key(moto: &Moto, region: &str) -> (String, Vec<u8>) {
    let arn = moto.create_key(region, "RSA_2048", "SIGN_VERIFY");
    let public = pkcs1_of(&moto.public_key(region, &arn));
    (arn, public)
}

#[track_caller]
fn assert_verifies(signature: &[u8], public: &[u8]) {
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public)
        .verify(MESSAGE, signature)
        .expect("the signature verifies with the key's public key");
}

fn with_user(mut env: Vec<(String, String)>, user: &User) -> Vec<(String, String)> {
    env.push(("AWS_ACCESS_KEY_ID".into(), user.access_key_id.clone()));
    env.push(("AWS_SECRET_ACCESS_KEY".into(), user.secret.clone()));
    env
}

#[test]
fn what_kms_signs_verifies_with_its_public_key_by_arn_id_and_alias() {
    let moto = Moto::start();
    let (arn, public) = rsa_key(&moto, REGION);
    let alias = moto.create_alias(REGION, "github-app", &arn);
    let id = arn.rsplit('/').next().unwrap().to_owned();
    for key in [&arn, &id, &alias] {
        let signed = sign(&moto.env(REGION), key).unwrap();
        assert_eq!(signed.len(), 256, "an RSA-2048 signature");
        assert_verifies(&signed, &public);
    }
}

#[test]
fn an_ecc_key_is_refused_for_its_type() {
    let moto = Moto::start();
    let arn = moto.create_key(REGION, "ECC_NIST_P256", "SIGN_VERIFY");
    let err = sign(&moto.env(REGION), &arn).unwrap_err();
    assert_eq!(
        err,
        format!(
            "the KMS key `{arn}` cannot sign the App's JWT: it is a `ECC_NIST_P256` key, and only RSA keys sign RS256; it must be an RSA key (`RSA_2048` or larger) with key usage `SIGN_VERIFY`"
        )
    );
}

#[test]
fn an_encryption_key_is_refused_for_its_usage() {
    let moto = Moto::start();
    let arn = moto.create_key(REGION, "RSA_2048", "ENCRYPT_DECRYPT");
    let err = sign(&moto.env(REGION), &arn).unwrap_err();
    assert!(
        err.contains("cannot sign the App's JWT: its key usage is `ENCRYPT_DECRYPT`"),
        "{err}"
    );
}

#[test]
fn an_unknown_key_is_not_found_in_the_region() {
    let moto = Moto::start();
    let err = sign(&moto.env(REGION), "alias/no-such-key").unwrap_err();
    assert_eq!(
        err,
        "the KMS key `alias/no-such-key` is not found in `eu-west-1`: check the key id, alias or ARN, and the region (a key id or an alias is looked up in the region in use)"
    );
}

#[test]
fn a_key_of_another_region_is_a_mismatch_or_not_found() {
    let moto = Moto::start();
    let (arn, public) = rsa_key(&moto, "us-west-2");
    let alias = moto.create_alias("us-west-2", "west", &arn);
    let err = sign(&moto.env(REGION), &arn).unwrap_err();
    assert_eq!(
        err,
        format!(
            "the KMS key `{arn}` is in `us-west-2`, but the region in use is `eu-west-1`: set the AWS region to `us-west-2`, or name a key of `eu-west-1`"
        )
    );
    // An alias says no region: KMS looks it up where it is asked.
    let err = sign(&moto.env(REGION), &alias).unwrap_err();
    assert!(
        err.starts_with("the KMS key `alias/west` is not found in `eu-west-1`"),
        "{err}"
    );
    // With no region given, an ARN's is used.
    let mut env = moto.env(REGION);
    env.retain(|(name, _)| name != "AWS_REGION");
    assert_verifies(&sign(&env, &arn).unwrap(), &public);
}

#[test]
fn a_web_identity_token_file_is_exchanged_at_sts_with_no_static_keys() {
    let moto = Moto::start();
    let (arn, public) = rsa_key(&moto, REGION);
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("web-identity");
    std::fs::write(&token, "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyZXBvIn0.c2ln\n").unwrap();
    let mut env = moto.web_identity_env(REGION);
    env.push((
        "AWS_WEB_IDENTITY_TOKEN_FILE".into(),
        token.display().to_string(),
    ));
    assert_verifies(&sign(&env, &arn).unwrap(), &public);

    std::fs::remove_file(&token).unwrap();
    let err = sign(&env, &arn).unwrap_err();
    assert!(
        err.starts_with("cannot read `AWS_WEB_IDENTITY_TOKEN_FILE`'s file"),
        "{err}"
    );
    env.retain(|(name, _)| name != "AWS_WEB_IDENTITY_TOKEN_FILE");
    let err = sign(&env, &arn).unwrap_err();
    assert!(err.contains("there is no web identity"), "{err}");
}

#[test]
fn a_wrong_secret_is_refused_in_one_line_that_shows_no_secret() {
    let moto = Moto::checking_after(5);
    let user = moto.create_user();
    let (arn, public) = rsa_key(&moto, REGION);
    let env = with_user(moto.env_without_credentials(REGION), &user);
    assert_verifies(&sign(&env, &arn).unwrap(), &public);

    let wrong = User {
        access_key_id: user.access_key_id.clone(),
        secret: format!("{}x", &user.secret[..user.secret.len() - 1]),
    };
    let err = sign(
        &with_user(moto.env_without_credentials(REGION), &wrong),
        &arn,
    )
    .unwrap_err();
    assert_eq!(
        err,
        "AWS does not accept the credentials from `AWS_ACCESS_KEY_ID` (SignatureDoesNotMatch): check the access key id, its secret and the session token that goes with them"
    );
    let unknown = User {
        access_key_id: "AKIAUNKNOWNUNKNOWN00".into(),
        secret: user.secret.clone(),
    };
    let err = sign(
        &with_user(moto.env_without_credentials(REGION), &unknown),
        &arn,
    )
    .unwrap_err();
    assert!(
        err.starts_with("AWS does not accept the credentials"),
        "{err}"
    );
    assert!(!err.contains(&user.secret), "{err}");
}

fn served(user: &User) -> serde_json::Value {
    serde_json::json!({
        "Code": "Success",
        "AccessKeyId": user.access_key_id,
        "SecretAccessKey": user.secret,
        "Expiration": "2099-01-01T00:00:00Z",
    })
}

#[tokio::test]
async fn the_containers_credentials_service_is_asked_with_its_token_file() {
    let moto = Moto::checking_after(5);
    let user = moto.create_user();
    let (arn, public) = rsa_key(&moto, REGION);
    let fake = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/credentials"))
        .and(header("authorization", "pod-identity-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(served(&user)))
        .expect(1)
        .mount(&fake)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "pod-identity-token\n").unwrap();
    let mut env = moto.env_without_credentials(REGION);
    env.push((
        "AWS_CONTAINER_CREDENTIALS_FULL_URI".into(),
        format!("{}/v1/credentials", fake.uri()),
    ));
    env.push((
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE".into(),
        token.display().to_string(),
    ));
    assert_verifies(&sign_beside(env, arn).await.unwrap(), &public);
}

#[tokio::test]
async fn ec2s_instance_metadata_is_asked_with_a_session_token() {
    let moto = Moto::checking_after(5);
    let user = moto.create_user();
    let (arn, public) = rsa_key(&moto, REGION);
    let fake = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path("/latest/api/token"))
        .and(header("x-aws-ec2-metadata-token-ttl-seconds", "300"))
        .respond_with(ResponseTemplate::new(200).set_body_string("imds-session"))
        .mount(&fake)
        .await;
    Mock::given(method("GET"))
        .and(path("/latest/meta-data/iam/security-credentials/"))
        .and(header("x-aws-ec2-metadata-token", "imds-session"))
        .respond_with(ResponseTemplate::new(200).set_body_string("runner-role\n"))
        .mount(&fake)
        .await;
    Mock::given(method("GET"))
        .and(path(
            "/latest/meta-data/iam/security-credentials/runner-role",
        ))
        .and(header("x-aws-ec2-metadata-token", "imds-session"))
        .respond_with(ResponseTemplate::new(200).set_body_json(served(&user)))
        .mount(&fake)
        .await;
    let mut env = moto.env_without_credentials(REGION);
    env.retain(|(name, _)| name != "AWS_EC2_METADATA_DISABLED");
    env.push(("AWS_EC2_METADATA_SERVICE_ENDPOINT".into(), fake.uri()));
    assert_verifies(&sign_beside(env, arn).await.unwrap(), &public);
}

#[tokio::test]
async fn a_metadata_service_that_does_not_answer_fails_fast_with_what_was_tried() {
    let moto = Moto::start();
    let arn = moto.create_key(REGION, "RSA_2048", "SIGN_VERIFY");
    // A listener that never answers: a connection is accepted by the kernel and left waiting.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut env = moto.env_without_credentials(REGION);
    env.retain(|(name, _)| name != "AWS_EC2_METADATA_DISABLED");
    env.push((
        "AWS_EC2_METADATA_SERVICE_ENDPOINT".into(),
        format!("http://{}", silent.local_addr().unwrap()),
    ));
    let started = Instant::now();
    let err = sign_beside(env, arn.clone()).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        err.starts_with("no AWS credentials found (tried `AWS_ACCESS_KEY_ID`"),
        "{err}"
    );
    assert!(
        err.contains("EC2's instance metadata at http://127.0.0.1:"),
        "{err}"
    );

    let mut env = moto.env_without_credentials(REGION);
    env.push(("AWS_ACCESS_KEY_ID".into(), "AKIDONLY".into()));
    let err = sign_beside(env, arn).await.unwrap_err();
    assert_eq!(
        err,
        "`AWS_ACCESS_KEY_ID` is set but `AWS_SECRET_ACCESS_KEY` is not: give both"
    );
}

/// A scene whose fake GitHub knows the App by the public key of a new key in `moto`: every JWT
/// it takes was signed in KMS. The key's ARN.
async fn scene_in_kms(moto: &Moto) -> (Scene, String) {
    let scene = Scene::start(Duration::from_secs(3)).await;
    let (arn, public) = rsa_key(moto, REGION);
    scene.github.world().public_key = public;
    (scene, arn)
}

/// Every JWT the fake saw verified with the App's public key: each mint was KMS's.
#[track_caller]
fn assert_every_jwt_verified(github: &FakeGitHub) {
    let posts = github.seen("POST", "/app/installations/");
    assert!(posts.len() >= 2, "{posts:?}");
    assert!(posts.iter().all(|seen| seen.claims.is_some()), "{posts:?}");
}

#[tokio::test]
async fn setup_signs_in_kms_and_pushes_after_the_first_token_expired_keeping_no_secret() {
    let moto = Moto::start();
    let (scene, arn) = scene_in_kms(&moto).await;
    let job = CiJob::new(&[("CI_JOB_ID", "4242")]);
    let script = format!(
        r#"eval "$({setup})"
{push}
grep -rqF -e '{arn}' "$TMPDIR"
if grep -rqF -e "$AWS_SECRET_ACCESS_KEY" -e "$AWS_ACCESS_KEY_ID" "$TMPDIR"; then exit 1; fi
test -z "$(find "$TMPDIR" -name key.pem)"
token-keeper revoke"#,
        setup = CiJob::setup_with(
            &scene,
            &format!("--aws-kms-key '{arn}' --owner Octo-Org --repositories app")
        ),
        push = CiJob::late_push(&scene),
    );
    let env = moto.env(REGION);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let out = job.shell(&script, &env);
    assert_success("the job", &out);
    assert!(scene.github.mints() >= 2, "the push re-minted");
    assert_every_jwt_verified(&scene.github);
    assert!(scene.github.world().live_tokens().is_empty(), "all revoked");
    assert_nothing_left(&job);
    let log = text(&out);
    assert!(!log.contains(SECRET), "{log}");
    for token in scene.github.tokens() {
        assert!(!log.contains(&token), "a token shown: {log}");
    }
}

/// The App's inputs with the KMS key in place of the private key.
fn kms_inputs<'a>(scene: &'a Scene, arn: &'a str) -> Vec<(&'a str, &'a str)> {
    let mut inputs = scene.inputs(&[("aws-kms-key", arn)]);
    inputs.retain(|(name, _)| *name != "private-key");
    inputs
}

#[tokio::test]
#[cfg_attr(
    wine,
    ignore = "needs git, which has no Windows build here: Windows' runners run it"
)]
async fn the_native_entry_signs_in_kms_as_the_jobs_web_identity_at_every_mint() {
    let moto = Moto::start();
    let (mut s, arn) = scene_in_kms(&moto).await;
    let issuer = Issuer::start().await;
    let aws = moto.web_identity_env(REGION);
    s.job.extra_env.extend(aws.clone());
    s.job.extra_env.extend(issuer.env());
    let main = s.job.main(&kms_inputs(&s, &arn), View::Native);
    main.assert_ok();

    let mut step = LaterStep::after(&s.job, &main);
    step.env.extend(aws);
    step.env.extend(issuer.env());
    assert_success("git", &s.push_late(&step, Duration::from_millis(3500)));
    assert!(s.github.mints() >= 2, "the push re-minted");
    assert_every_jwt_verified(&s.github);
    // The job's identity was asked for AWS again at the re-mint: nothing of it was kept.
    let asked = issuer.server.received_requests().await.unwrap_or_default();
    let for_sts = asked
        .iter()
        .filter(|r| {
            r.url
                .query()
                .is_some_and(|q| q.contains("audience=sts.amazonaws.com"))
        })
        .count();
    assert!(for_sts >= 2, "asked {for_sts} times");
    assert_no_key_material(&s.job.temp);

    let post = s.job.post(&kms_inputs(&s, &arn), &main.state, View::Native);
    post.assert_ok();
    assert!(s.github.world().live_tokens().is_empty(), "{}", post.log());
}

#[tokio::test]
async fn the_built_image_signs_in_kms_with_the_steps_aws_variables_and_a_later_push_re_mints() {
    let Some(image) = engine::image() else {
        return;
    };
    let moto = Moto::start();
    let (mut s, arn) = scene_in_kms(&moto).await;
    s.job.extra_env.extend(moto.env(REGION));
    let view = View::Engine {
        image,
        runner_temp: true,
    };
    let main = s.job.main(&kms_inputs(&s, &arn), view);
    main.assert_ok();
    assert!(main.outputs["token"].starts_with("ghs_"));
    // The step's AWS secret is masked before anything uses it, and shown nowhere else.
    let log = main.log();
    let shown: Vec<&str> = log.lines().filter(|l| l.contains(SECRET)).collect();
    assert_eq!(shown, [format!("::add-mask::{SECRET}")], "{log}");

    // Later steps sign on the host, with the binary the container copied out.
    let mut step = LaterStep::after(&s.job, &main);
    step.env.extend(moto.env(REGION));
    let (mints, calls) = (s.github.mints(), moto.requests());
    assert_success("git", &s.push_late(&step, Duration::from_millis(3500)));
    let remints = s.github.mints() - mints;
    assert!(remints >= 1, "the push re-minted");
    // Each helper process asks for the key's public key once, then signs once per JWT.
    assert_eq!(
        moto.requests() - calls,
        2 * remints,
        "KMS calls per re-mint"
    );
    assert_every_jwt_verified(&s.github);
    assert_no_key_material(&s.job.temp);

    let post = s.job.post(&kms_inputs(&s, &arn), &main.state, view);
    post.assert_ok();
    assert!(s.github.world().live_tokens().is_empty(), "{}", post.log());
}
