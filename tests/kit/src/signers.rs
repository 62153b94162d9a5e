//! Real signers for the signer command: a SoftHSM token holding the App's key, signed with
//! OpenSC's `pkcs11-tool`, and a key in moto's AWS KMS, signed with the AWS CLI.
//!
//! Each has private state (a token folder of its own, a server on a free port) and gives the
//! variables its CLI needs and the exact command a workflow would use. moto makes its own keys
//! (it cannot import one), so the fake GitHub is told to trust moto's key instead of the App's.

use std::fs;
use std::process::Command;

use tempfile::TempDir;

use crate::moto::{Moto, pkcs1_of};
use crate::runner::require;

/// The region of moto's key.
const REGION: &str = "us-east-1";

/// Debian's path of SoftHSM's PKCS#11 module.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const TOKEN: &str = "tk";
const PIN: &str = "1234";

/// The App's key as PKCS#8, which SoftHSM's import takes.
const APP_KEY_PKCS8: &str = "tests/fixtures/app-key.pkcs8.pem";

/// A SoftHSM token of its own, with the App's key imported as object `01`.
pub struct SoftHsm {
    dir: TempDir,
}

impl SoftHsm {
    pub fn start() -> Self {
        require(
            "softhsm2-util",
            &["--version"],
            "SoftHSM (Debian's softhsm2)",
        );
        // Its `--help` exits 1.
        require(
            "sh",
            &["-c", "command -v pkcs11-tool"],
            "OpenSC's pkcs11-tool (Debian's opensc)",
        );
        let dir = tempfile::Builder::new().prefix("tk-hsm").tempdir().unwrap();
        fs::create_dir(dir.path().join("tokens")).unwrap();
        fs::write(
            dir.path().join("softhsm2.conf"),
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                dir.path().join("tokens").display()
            ),
        )
        .unwrap();
        let hsm = Self { dir };
        let key = crate::native_entry::root().join(APP_KEY_PKCS8);
        for args in [
            vec![
                "--init-token",
                "--free",
                "--label",
                TOKEN,
                "--pin",
                PIN,
                "--so-pin",
                "5678",
            ],
            vec![
                "--import",
                key.to_str().unwrap(),
                "--token",
                TOKEN,
                "--label",
                "app",
                "--id",
                "01",
                "--pin",
                PIN,
            ],
        ] {
            let out = Command::new("softhsm2-util")
                .args(&args)
                .envs(hsm.env())
                .output()
                .unwrap();
            crate::assert_success(&format!("softhsm2-util {args:?}"), &out);
        }
        hsm
    }

    /// What every step of the job gets: the token's private configuration, and its PIN, which
    /// the command reads from the environment so the stored command does not hold it.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "SOFTHSM2_CONF".into(),
                self.dir.path().join("softhsm2.conf").display().to_string(),
            ),
            ("HSM_PIN".into(), PIN.into()),
        ]
    }

    /// The signer command, as the README gives it: the token hashes and signs the message, and
    /// writes the raw signature to the file named for it.
    pub fn command() -> String {
        format!(
            r#"pkcs11-tool --module {SOFTHSM_MODULE} --token-label {TOKEN} --login --pin "$HSM_PIN" --sign --mechanism SHA256-RSA-PKCS --id 01 --input-file "$TOKEN_KEEPER_SIGN_INPUT" --output-file "$TOKEN_KEEPER_SIGN_OUTPUT""#
        )
    }
}

/// An RSA-2048 signing key in moto's KMS, signed with by the AWS CLI.
pub struct KmsKey {
    pub moto: Moto,
    pub arn: String,
    /// The key's public half: DER SubjectPublicKeyInfo, as `GetPublicKey` gives it.
    pub spki: Vec<u8>,
}

impl KmsKey {
    pub fn start() -> Self {
        require("aws", &["--version"], "the AWS CLI (PyPI awscli)");
        let moto = Moto::start();
        let arn = moto.create_key(REGION, "RSA_2048", "SIGN_VERIFY");
        let spki = moto.public_key(REGION, &arn);
        Self { moto, arn, spki }
    }

    /// The variables the AWS CLI needs against the server: v1 reads the region from
    /// `AWS_DEFAULT_REGION` only, and no configuration file of the machine's.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = self.moto.env(REGION);
        env.extend(
            [
                ("AWS_DEFAULT_REGION", REGION),
                ("AWS_CONFIG_FILE", "/dev/null"),
                ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        env
    }

    /// The signer command, as the README gives it.
    pub fn command(&self) -> String {
        format!(
            r#"aws kms sign --key-id {} --message "fileb://$TOKEN_KEEPER_SIGN_INPUT" --message-type RAW --signing-algorithm RSASSA_PKCS1_V1_5_SHA_256 --output text --query Signature"#,
            self.arn
        )
    }

    /// The key's `RSAPublicKey`, which the fake GitHub verifies with.
    pub fn pkcs1(&self) -> Vec<u8> {
        pkcs1_of(&self.spki)
    }
}
