//! AWS KMS built in, against moto's real server: what it signs verifies with the key's public
//! key, every bad key and credential is one clear line, and each source of credentials works.

use std::time::{Duration, Instant};

use ring::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::moto::{Moto, User};

const REGION: &str = "eu-west-1";
const MESSAGE: &[u8] = b"eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiIxIn0";

fn sign(vars: &[(String, String)], key: &str) -> Result<(Vec<u8>, Vec<u8>), String> {
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    token_keeper::kms_sign_for_test(&vars, key, None, MESSAGE)
}

/// `sign` off the async runtime, for tests that serve a fake with wiremock.
async fn sign_beside(
    vars: Vec<(String, String)>,
    key: String,
) -> Result<(Vec<u8>, Vec<u8>), String> {
    tokio::task::spawn_blocking(move || sign(&vars, &key))
        .await
        .unwrap()
}

/// The RSAPublicKey (PKCS#1) inside a DER SubjectPublicKeyInfo.
fn pkcs1_of(spki: &[u8]) -> Vec<u8> {
    fn element(der: &[u8]) -> (u8, &[u8], &[u8]) {
        let tag = der[0];
        let (len, start) = match der[1] {
            n if n < 0x80 => (n as usize, 2),
            n => {
                let bytes = (n & 0x7f) as usize;
                let len = der[2..2 + bytes]
                    .iter()
                    .fold(0usize, |acc, b| acc << 8 | *b as usize);
                (len, 2 + bytes)
            }
        };
        (tag, &der[start..start + len], &der[start + len..])
    }
    let (tag, info, _) = element(spki);
    assert_eq!(tag, 0x30, "a SEQUENCE");
    let (_, _, rest) = element(info);
    let (tag, bits, _) = element(rest);
    assert_eq!(tag, 0x03, "a BIT STRING");
    assert_eq!(bits[0], 0, "no unused bits");
    bits[1..].to_vec()
}

fn assert_verifies((signature, spki): &(Vec<u8>, Vec<u8>)) {
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, pkcs1_of(spki))
        .verify(MESSAGE, signature)
        .expect("the signature verifies with the key's public key");
}

/// The environment of a process with no static keys and no metadata service.
fn keyless_env(moto: &Moto) -> Vec<(String, String)> {
    vec![
        ("AWS_ENDPOINT_URL".into(), moto.url()),
        ("AWS_REGION".into(), REGION.into()),
        ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
    ]
}

fn with_user(mut env: Vec<(String, String)>, user: &User) -> Vec<(String, String)> {
    env.push(("AWS_ACCESS_KEY_ID".into(), user.access_key_id.clone()));
    env.push(("AWS_SECRET_ACCESS_KEY".into(), user.secret.clone()));
    env
}

#[test]
fn what_kms_signs_verifies_with_its_public_key_by_arn_id_and_alias() {
    let moto = Moto::start();
    let arn = moto.create_key(REGION, "RSA_2048", "SIGN_VERIFY");
    let alias = moto.create_alias(REGION, "github-app", &arn);
    let id = arn.rsplit('/').next().unwrap().to_owned();
    for key in [&arn, &id, &alias] {
        let signed = sign(&moto.env(REGION), key).unwrap();
        assert_eq!(signed.0.len(), 256, "an RSA-2048 signature");
        assert_verifies(&signed);
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
    let arn = moto.create_key("us-west-2", "RSA_2048", "SIGN_VERIFY");
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
    assert_verifies(&sign(&env, &arn).unwrap());
}

#[test]
fn a_web_identity_token_file_is_exchanged_at_sts_with_no_static_keys() {
    let moto = Moto::start();
    let arn = moto.create_key(REGION, "RSA_2048", "SIGN_VERIFY");
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("web-identity");
    std::fs::write(&token, "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyZXBvIn0.c2ln\n").unwrap();
    let mut env = keyless_env(&moto);
    env.push((
        "AWS_ROLE_ARN".into(),
        "arn:aws:iam::123456789012:role/keeper".into(),
    ));
    env.push((
        "AWS_WEB_IDENTITY_TOKEN_FILE".into(),
        token.display().to_string(),
    ));
    assert_verifies(&sign(&env, &arn).unwrap());

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
    let moto = Moto::checking_after(4);
    let user = moto.create_user();
    let arn = moto.create_key(REGION, "RSA_2048", "SIGN_VERIFY");
    let env = with_user(keyless_env(&moto), &user);
    assert_verifies(&sign(&env, &arn).unwrap());

    let wrong = User {
        access_key_id: user.access_key_id.clone(),
        secret: format!("{}x", &user.secret[..user.secret.len() - 1]),
    };
    let err = sign(&with_user(keyless_env(&moto), &wrong), &arn).unwrap_err();
    assert_eq!(
        err,
        "AWS does not accept the credentials from `AWS_ACCESS_KEY_ID` (SignatureDoesNotMatch): check the access key id, its secret and the session token that goes with them"
    );
    let unknown = User {
        access_key_id: "AKIAUNKNOWNUNKNOWN00".into(),
        secret: user.secret.clone(),
    };
    let err = sign(&with_user(keyless_env(&moto), &unknown), &arn).unwrap_err();
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
    let moto = Moto::checking_after(4);
    let user = moto.create_user();
    let arn = moto.create_key(REGION, "RSA_2048", "SIGN_VERIFY");
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
    let mut env = keyless_env(&moto);
    env.push((
        "AWS_CONTAINER_CREDENTIALS_FULL_URI".into(),
        format!("{}/v1/credentials", fake.uri()),
    ));
    env.push((
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE".into(),
        token.display().to_string(),
    ));
    assert_verifies(&sign_beside(env, arn).await.unwrap());
}

#[tokio::test]
async fn ec2s_instance_metadata_is_asked_with_a_session_token() {
    let moto = Moto::checking_after(4);
    let user = moto.create_user();
    let arn = moto.create_key(REGION, "RSA_2048", "SIGN_VERIFY");
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
    let mut env = keyless_env(&moto);
    env.retain(|(name, _)| name != "AWS_EC2_METADATA_DISABLED");
    env.push(("AWS_EC2_METADATA_SERVICE_ENDPOINT".into(), fake.uri()));
    assert_verifies(&sign_beside(env, arn).await.unwrap());
}

#[tokio::test]
async fn a_metadata_service_that_does_not_answer_fails_fast_with_what_was_tried() {
    let moto = Moto::start();
    let arn = moto.create_key(REGION, "RSA_2048", "SIGN_VERIFY");
    // A listener that never answers: a connection is accepted by the kernel and left waiting.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut env = keyless_env(&moto);
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

    let mut env = keyless_env(&moto);
    env.push(("AWS_ACCESS_KEY_ID".into(), "AKIDONLY".into()));
    let err = sign_beside(env, arn).await.unwrap_err();
    assert_eq!(
        err,
        "`AWS_ACCESS_KEY_ID` is set but `AWS_SECRET_ACCESS_KEY` is not: give both"
    );
}
