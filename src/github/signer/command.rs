//! A signer command: a KMS's or an HSM's own CLI, run by the platform's shell at every mint.
//!
//! Tools differ in what they sign and how they take it (a file of the message, a digest in
//! base64), so the command gets both, as files in a folder only we can read and as variables,
//! and nothing on its command line. It prints the signature, or writes it to the file
//! `TOKEN_KEEPER_SIGN_OUTPUT` names, for tools that write one (`pkcs11-tool`, `gcloud`). Its time
//! and what it prints are bounded, and its whole tree ended at the bounds (`process::run`); the
//! folder is removed when it is done.

use std::io::Read;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::digest::{SHA256, digest};

use super::{PublicKey, SignError, check};
use crate::messages;
use crate::process::{self, Limits, Stopped};

/// The variables the command is given: the message's file, the raw SHA-256 digest's file, the
/// digest in standard base64, and the file it may write the signature to.
pub(crate) const INPUT: &str = "TOKEN_KEEPER_SIGN_INPUT";
pub(crate) const DIGEST: &str = "TOKEN_KEEPER_SIGN_DIGEST";
pub(crate) const DIGEST_B64: &str = "TOKEN_KEEPER_SIGN_DIGEST_B64";
pub(crate) const OUTPUT: &str = "TOKEN_KEEPER_SIGN_OUTPUT";

/// A signature is at most 512 bytes, in base64 under 1 KiB; a CLI starts in a second or two,
/// and the call a re-mint serves waits for git, so the bound is well below git's patience.
pub(crate) const LIMITS: Limits = Limits {
    stdout: 64 << 10,
    stderr: 4 << 10,
    time: Duration::from_secs(15),
};

/// A command that signs, and the App's public key to check it with, when given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SignerCommand {
    pub(crate) command: String,
    pub(crate) public: Option<PublicKey>,
}

impl SignerCommand {
    /// Run the command over `message` within `limits`, and check what it gave.
    pub(crate) async fn sign(&self, message: &[u8], limits: Limits) -> Result<Vec<u8>, SignError> {
        let named = || messages::short(&self.command);
        let too_long = || SignError::TooLong {
            command: named(),
            kib: limits.stdout >> 10,
        };
        let setup = |e: std::io::Error| SignError::Setup(format!("cannot write its files: {e}"));
        let mut private = tempfile::Builder::new();
        private.prefix("token-keeper-sign-");
        // Windows keeps each user's temporary folder to them already.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            private.permissions(std::fs::Permissions::from_mode(0o700));
        }
        let dir = private.tempdir().map_err(setup)?;
        let input = dir.path().join("message");
        let digest_file = dir.path().join("digest");
        let output = dir.path().join("signature");
        let hashed = digest(&SHA256, message);
        std::fs::write(&input, message).map_err(setup)?;
        std::fs::write(&digest_file, hashed.as_ref()).map_err(setup)?;
        let mut shell = process::shell(&self.command);
        shell
            .env(INPUT, &input)
            .env(DIGEST, &digest_file)
            .env(DIGEST_B64, STANDARD.encode(hashed.as_ref()))
            .env(OUTPUT, &output);
        let ran = tokio::task::spawn_blocking(move || process::run(shell, &limits))
            .await
            .map_err(|e| SignError::Setup(format!("cannot wait for it: {e}")))?;
        let printed = match ran {
            Ok(printed) => printed,
            Err(Stopped::Failed(cause)) => {
                return Err(SignError::CannotRun {
                    command: named(),
                    cause: cause.to_string(),
                });
            }
            Err(Stopped::Late) => {
                return Err(SignError::Late {
                    command: named(),
                    seconds: limits.time.as_secs(),
                });
            }
            Err(Stopped::TooLong) => return Err(too_long()),
        };
        if !printed.status.success() {
            let said = String::from_utf8_lossy(&printed.stderr);
            let said = said.lines().map(str::trim).find(|l| !l.is_empty());
            return Err(SignError::Failed {
                command: named(),
                status: printed.status.to_string(),
                said: messages::foreign(said.unwrap_or("")),
            });
        }
        let signature = match written(&output, limits.stdout)? {
            Written::Nothing => printed.stdout,
            Written::Signature(bytes) => bytes,
            Written::TooLong => return Err(too_long()),
        };
        check(message, &signature, self.public.as_ref())
    }
}

/// What the command wrote to `TOKEN_KEEPER_SIGN_OUTPUT`.
enum Written {
    /// No file, or an empty one: the signature is on stdout.
    Nothing,
    Signature(Vec<u8>),
    /// More than stdout may hold.
    TooLong,
}

/// The file at `path`, read up to `bound` bytes.
fn written(path: &std::path::Path, bound: usize) -> Result<Written, SignError> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Written::Nothing),
        Err(e) => {
            return Err(SignError::Setup(format!(
                "cannot read the signature's file: {e}"
            )));
        }
    };
    let mut bytes = Vec::new();
    file.take(bound as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| SignError::Setup(format!("cannot read the signature's file: {e}")))?;
    Ok(match bytes.len() {
        0 => Written::Nothing,
        len if len > bound => Written::TooLong,
        _ => Written::Signature(bytes),
    })
}

#[cfg(all(test, unix))]
mod tests {
    use ring::rand::SystemRandom;
    use ring::signature::RSA_PKCS1_SHA256;

    use super::*;
    use crate::github::PrivateKey;

    const MESSAGE: &[u8] = b"eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiIxIn0";

    fn signature() -> Vec<u8> {
        let key = PrivateKey::parse(include_str!("../../../tests/fixtures/app-key.pem")).unwrap();
        let mut signature = vec![0; 256];
        key.pair()
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                MESSAGE,
                &mut signature,
            )
            .unwrap();
        signature
    }

    fn public() -> PublicKey {
        PublicKey::parse(include_bytes!("../../../tests/fixtures/app-key.pub.pem")).unwrap()
    }

    async fn sign(command: String) -> Result<Vec<u8>, SignError> {
        let limits = Limits {
            time: Duration::from_secs(2),
            ..LIMITS
        };
        SignerCommand {
            command,
            public: Some(public()),
        }
        .sign(MESSAGE, limits)
        .await
    }

    #[tokio::test]
    async fn the_command_gets_the_message_and_its_digest_in_a_private_folder_it_does_not_outlive() {
        let seen = tempfile::tempdir().unwrap();
        let noted = seen.path().join("folder");
        let b64 = STANDARD.encode(signature());
        let command = format!(
            r#"set -e
printf %s '{message}' | cmp - "$TOKEN_KEEPER_SIGN_INPUT"
printf %s "$TOKEN_KEEPER_SIGN_DIGEST_B64" | base64 -d | cmp - "$TOKEN_KEEPER_SIGN_DIGEST"
test "$(stat -c %a "$(dirname "$TOKEN_KEEPER_SIGN_INPUT")")" = 700
dirname "$TOKEN_KEEPER_SIGN_INPUT" > '{noted}'
echo '{b64}'"#,
            message = std::str::from_utf8(MESSAGE).unwrap(),
            noted = noted.display()
        );
        assert_eq!(sign(command).await, Ok(signature()));
        let folder = std::fs::read_to_string(&noted).unwrap();
        assert!(!std::path::Path::new(folder.trim()).exists(), "{folder}");
        let digest = digest(&SHA256, MESSAGE);
        assert_eq!(
            sign(format!(
                "test \"$TOKEN_KEEPER_SIGN_DIGEST_B64\" = '{}' && echo '{b64}'",
                STANDARD.encode(digest.as_ref())
            ))
            .await,
            Ok(signature())
        );
    }

    #[tokio::test]
    async fn a_signature_written_to_the_output_file_wins_over_stdout() {
        let b64 = STANDARD.encode(signature());
        let command =
            format!("echo '{b64}' | base64 -d > \"$TOKEN_KEEPER_SIGN_OUTPUT\"; echo Using slot 0");
        assert_eq!(sign(command).await, Ok(signature()));
        let huge = "head -c 100000 /dev/zero > \"$TOKEN_KEEPER_SIGN_OUTPUT\"".to_owned();
        assert!(matches!(sign(huge).await, Err(SignError::TooLong { .. })));
    }

    #[tokio::test]
    async fn each_way_a_command_fails_has_its_own_line() {
        let said = |command: &str| {
            let command = command.to_owned();
            async move { sign(command).await.unwrap_err().to_string() }
        };
        assert_eq!(
            said("sleep 10").await,
            "the signer command `sleep 10` gave no signature within 2s: check that it reaches its KMS or HSM, and asks nothing on a terminal"
        );
        assert_eq!(
            said("echo 'AccessDenied for AKIAIOSFODNN7EXAMPLEKEY0123' >&2; exit 3").await,
            "the signer command `echo 'AccessDenied for AKIAIOSFODNN7EXAMPLEKEY0123' >&2; exit 3` failed (exit status: 3): AccessDenied for […]"
        );
        assert!(
            said("head -c 1048576 /dev/zero")
                .await
                .contains("printed more than 64 KiB")
        );
        assert!(
            said("echo no signature here")
                .await
                .starts_with("the signer gave text that is not base64")
        );
        assert!(said("head -c 100 /dev/zero | base64").await.starts_with(
            "the signer's signature is 100 bytes long, and the App's 2048-bit key signs 256 bytes"
        ));
        let other = STANDARD.encode(vec![7; 256]);
        assert!(
            said(&format!("echo {other}"))
                .await
                .contains("does not verify")
        );
    }
}
